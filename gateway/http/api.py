"""The HTTP API: the aiohttp application, its handlers, and its life inside the daemon.

Owns `HttpApi` (handlers for `/v1/messages`, `/v1/otp`, `/openapi.json`, `/docs`; the
middlewares that authenticate, rate-limit and turn every error into problem+json) and
`start_http_api(gateway)`, which the daemon calls when `[http] enabled` is true.

Every MT goes through `gateway.intake` (numbers, routes, policies, parts, durable store) and
every OTP through `gateway.otp.OtpService`; handlers only translate HTTP to those calls and
back. An answer 202/201 is given only after the intake returned, i.e. after the store commit.

Never does: protocol or routing decisions, SQL, or sending.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from json.encoder import encode_basestring
from typing import TYPE_CHECKING, Any

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from pydantic import BaseModel, ValidationError

from dlr.status import MessageStatus, StatusSource
from gateway.egress import EgressPolicy
from gateway.http import models
from gateway.http.admin import STATUS_PAGE_PATH, add_admin_routes
from gateway.http.admin_token import (
    ADMIN_PREFIX,
    admin_credentials_match,
    admin_token_path,
    load_or_create_admin_token,
)
from gateway.http.auth_limits import FailedAuthLimits, FailedAuthStats
from gateway.http.client_address import ClientAddresses
from gateway.http.idempotency import HEADER as IDEMPOTENCY_HEADER
from gateway.http.idempotency import REPLAYED_HEADER, Answer, Idempotency, fingerprint
from gateway.http.inbound import add_inbound_routes
from gateway.http.limits import KeyLimits, SharedAllowances
from gateway.http.openapi import docs_page, openapi_document
from gateway.http.optouts import add_optout_routes
from gateway.http.problems import (
    Problem,
    from_intake_refusal,
    from_otp_refusal,
    from_validation_error,
    problem_response,
)
from gateway.http.reload import add_reload_route
from gateway.http.route_host import API_KEY, Model
from gateway.http.server_limits import (
    ConnectionGuard,
    ConnectionLimits,
    ConnectionStats,
    GuardedSite,
)
from gateway.http.sim_admin import add_sim_routes
from gateway.intake import IntakeRefusal, MessageRequest, Prepared
from gateway.keys import ApiKey, KeyRing
from gateway.messages import Channel, MessageKind, Tenant
from gateway.metrics import add_routes as add_metrics_routes
from gateway.otp import (
    CodeHasher,
    OtpRefusal,
    OtpService,
    OtpStatus,
    attempts_left,
    current_status,
)
from gateway.store.base import MessageRecord, OtpRecord, StatusChange
from gateway.store.postgres import PostgresMessageStore
from gateway.tasks import cancel_and_wait
from routing import InvalidNumber, explain_route
from smpp.segmentation import Concatenation, describe_text, split_bytes
from smpp.text import DATA_CODING_OF, TextEncodingError

if TYPE_CHECKING:
    from gateway.callbacks import CallbackSender
    from gateway.config import TandemConfig
    from gateway.services import GatewayServices

log = logging.getLogger("tandem.http")

JSON = "application/json"
_MESSAGE_ID = re.compile(r"^[0-9a-f]{20}$")
_OTP_ID = re.compile(r"^otp_[0-9a-f]{20}$")
_ALIASES = {"from_": "from"}
_ENCODING_OF_DATA_CODING = {int(dc): enc.value for enc, dc in DATA_CODING_OF.items()}
_UNSENT = (MessageStatus.ACCEPTED, MessageStatus.QUEUED)
_KINDS = {kind.value: kind for kind in MessageKind}  # a dict lookup, not an Enum call per request
_CHALLENGE = 'Bearer realm="tandem"'
_ADMIN_CHALLENGE = 'Bearer realm="tandem-admin"'
_PAGE_CHALLENGE = 'Basic realm="tandem-admin", charset="UTF-8"'
# Copied into each answer by aiohttp; one mapping each instead of a dict and a content type.
_JSON_HEADERS = CIMultiDictProxy(CIMultiDict({"Content-Type": JSON}))
_JSON_REPLAYED = CIMultiDictProxy(CIMultiDict({"Content-Type": JSON, REPLAYED_HEADER: "true"}))
SWEEP_SECONDS = 30.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(slots=True)
class HttpStats:
    """Counters for the metrics exporter."""

    requests: int = 0
    problems: int = 0
    rate_limited: int = 0
    messages_accepted: int = 0
    server_errors: int = 0
    # Answers by (route template, or "other" where no route matched; status code).
    by_route: dict[tuple[str, int], int] = field(default_factory=dict)
    connections: ConnectionStats = field(default_factory=ConnectionStats)
    failed_auth: FailedAuthStats = field(default_factory=FailedAuthStats)


def _at(unix_time: float) -> datetime:
    return datetime.fromtimestamp(unix_time, UTC)


def _at_or_none(unix_time: float | None) -> datetime | None:
    return None if unix_time is None else datetime.fromtimestamp(unix_time, UTC)


def _json(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(
        status=status, body=model.model_dump_json(by_alias=True).encode(), content_type=JSON
    )


class HttpApi:
    """The HTTP channel of one daemon."""

    def __init__(self, gateway: GatewayServices, *, clock: Callable[[], float] = time.time) -> None:
        self.gateway = gateway
        self.config = gateway.config.http
        self.clock = clock
        store: Any = gateway.message_store  # implements the key, idempotency and OTP stores
        self.keys = KeyRing(
            store,
            default_requests_per_second=self.config.requests_per_second,
            default_messages_per_second=self.config.messages_per_second,
            cache_seconds=self.config.key_cache_seconds,
        )
        self.limits = KeyLimits()
        # Several nodes on one database: each key's limits are counted there too, so that
        # together they let a key through at its rate (gateway.http.limits).
        self.shared_limits: SharedAllowances | None = (
            SharedAllowances(store) if isinstance(store, PostgresMessageStore) else None
        )
        self.idempotency = Idempotency(store, keep_seconds=self.config.idempotency_seconds)
        self.otp = OtpService(
            gateway.config.otp,
            intake=gateway.intake,
            numbers=gateway.numbers,
            store=store,
            hasher=CodeHasher.from_file(gateway.config.data_dir / "otp.key"),
            redactor=store,
        )
        self.admin_token = load_or_create_admin_token(admin_token_path(gateway.config))
        self.callbacks: CallbackSender | None = None
        self.egress_config = gateway.config.egress
        self.egress = EgressPolicy.from_config(gateway.config.egress)
        self.stats = HttpStats()
        self.client_addresses = ClientAddresses(self.config.trusted_proxies)
        self.failed_auth = FailedAuthLimits(
            self.config.auth_failures_per_second,
            self.config.auth_failures_burst,
            stats=self.stats.failed_auth,
        )
        self.app = self._build_app()
        self._runner: web.AppRunner | None = None
        self._housekeeping: asyncio.Task[None] | None = None
        self._openapi_body = b""
        self._docs_body = b""

    # --- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        guard = ConnectionGuard(ConnectionLimits.from_config(self.config), self.stats.connections)
        site = GuardedSite(self._runner, self.config.host, self.config.port, guard=guard)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            raise OSError(
                exc.errno,
                f"the HTTP API cannot listen on {self.config.host}:{self.config.port}: "
                f"{exc.strerror or exc}",
            ) from None
        self._housekeeping = asyncio.create_task(self._housekeep(), name="http-housekeeping")
        log.info("HTTP API on %s", self.url)

    async def stop(self) -> None:
        if self._housekeeping is not None:
            await cancel_and_wait(self._housekeeping)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.callbacks is not None:
            await self.callbacks.stop()

    @property
    def port(self) -> int:
        assert self._runner is not None, "not started"
        address = self._runner.addresses[0]
        return int(address[1])

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    def reconfigure(self, config: TandemConfig) -> list[str]:
        """A reload (`Gateway.add_reconfigure_hook`): keys' default limits, per-request
        settings, the egress rule and the callbacks' settings. The listener and its limits
        stay until a restart (`gateway.reload.HTTP_RELOADED` says which fields follow)."""
        changes: list[str] = []
        if config.http != self.config:
            changes.append("http settings")
        self.config = config.http
        self.keys.set_defaults(
            default_requests_per_second=config.http.requests_per_second,
            default_messages_per_second=config.http.messages_per_second,
            cache_seconds=config.http.key_cache_seconds,
        )
        if config.egress != self.egress_config:
            changes.append("egress rule")
            self.egress_config = config.egress
            self.egress = EgressPolicy.from_config(config.egress)
        if self.callbacks is not None:
            self.callbacks.reconfigure(config.http, self.egress)
        return changes

    async def _housekeep(self) -> None:
        # Idempotency answers past `[http] idempotency_seconds` leave the store with the
        # retention purge (gateway.store.retention), not here.
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            try:
                self.otp.sweep()
            except Exception:
                log.exception("HTTP housekeeping failed")

    # --- the application ------------------------------------------------------------------------

    def _build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/openapi.json", self.openapi)
        app.router.add_get("/docs", self.docs)
        app.router.add_post("/v1/messages", self.send_messages)
        app.router.add_post("/v1/messages/preview", self.preview_message)
        app.router.add_get("/v1/messages/{id}", self.get_message)
        app.router.add_delete("/v1/messages/{id}", self.cancel_message)
        app.router.add_post("/v1/otp", self.send_otp)
        app.router.add_get("/v1/otp/{id}", self.get_otp)
        app.router.add_post("/v1/otp/{id}/check", self.check_otp)
        app.router.add_post("/v1/otp/{id}/cancel", self.cancel_otp)
        add_optout_routes(app, self)  # /v1/optouts: the opt-out list, scope `optouts`
        add_inbound_routes(app, self)  # /v1/inbound: the MOs kept, scope `inbound`
        exporter = getattr(self.gateway, "metrics", None)
        if exporter is not None:  # GET /metrics (metrics token), /healthz, /readyz (none)
            add_metrics_routes(app, exporter, token=True)
        add_admin_routes(app, self.gateway)  # GET /admin/links: admin token, read-only
        add_reload_route(app, self.gateway)  # POST /admin/reload: admin token
        add_sim_routes(app, self.gateway)  # POST /admin/sim/mo: admin token
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Authenticates and rate-limits `/v1`, turns every error into problem+json, and counts
        answers by route template and code (one middleware: each layer costs a coroutine per
        request)."""
        self.stats.requests += 1
        response: web.StreamResponse
        try:
            if request.path.startswith("/v1/"):
                await self._authenticate(request)
            elif request.path.startswith(ADMIN_PREFIX) or request.path == STATUS_PAGE_PATH:
                self._require_admin(request)
            response = await handler(request)
        except Problem as problem:
            self.stats.problems += 1
            response = problem_response(problem)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            self.stats.problems += 1
            code = exc.reason.lower().replace(" ", "_")
            headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else {}
            detail = {
                404: "There is nothing at this path.",
                405: f"{request.method} is not allowed here.",
                413: "The request body is too large.",
            }.get(exc.status, exc.reason + ".")
            response = problem_response(Problem(exc.status, code, detail, headers=headers))
        except (ConnectionResetError, web.RequestPayloadError):
            # The body broke off or was framed wrongly (gateway.http.server_limits may close a
            # connection whose body stalls): the client's fault, and not logged, since a payload
            # error quotes the bytes it read.
            self.stats.problems += 1
            response = problem_response(
                Problem(400, "incomplete_body", "The request body did not arrive whole.")
            )
        except Exception:
            self.stats.server_errors += 1
            log.exception("%s %s failed", request.method, request.path)
            response = problem_response(
                Problem(500, "internal_error", "The server failed; the failure is logged.")
            )
        # By the route's template (/v1/messages/{id}), never the path: a bounded set of keys.
        resource = request.match_info.route.resource
        key = (resource.canonical if resource is not None else "other", response.status)
        by_route = self.stats.by_route
        by_route[key] = by_route.get(key, 0) + 1
        return response

    async def _authenticate(self, request: web.Request) -> None:
        header = request.headers.get("Authorization", "")
        scheme, _, bearer = header.partition(" ")
        bearer = bearer.strip()
        if scheme.lower() != "bearer" or not bearer:
            raise Problem(
                401,
                "unauthorized",
                "Send an API key as 'Authorization: Bearer <key>'.",
                field="Authorization",
                headers={"WWW-Authenticate": _CHALLENGE},
            )
        key = self.keys.cached(bearer) or await self._look_up(request, bearer)
        if key is None:
            raise Problem(
                401,
                "invalid_key",
                "The API key is unknown or revoked.",
                field="Authorization",
                headers={"WWW-Authenticate": _CHALLENGE},
            )
        wait = self.limits.request(
            key.id, key.requests_per_second, key.messages_per_second, time.monotonic()
        )
        if not wait and self.shared_limits is not None:
            wait = await self.shared_limits.wait(key.id, "r", key.requests_per_second, 1)
        if wait:
            self.stats.rate_limited += 1
            raise Problem(
                429,
                "rate_limited",
                f"This key may make {key.requests_per_second:g} requests per second.",
                retry_after=wait,
            )
        request[API_KEY] = key

    def _require_admin(self, request: web.Request) -> None:
        """`/admin/` needs the admin token, wherever the request comes from (a reverse proxy on
        this host forwards from loopback)."""
        now = time.monotonic()
        client = self._client(request)
        if admin_credentials_match(self.admin_token, request.headers.get("Authorization", "")):
            return
        wait = self.failed_auth.wait(client, now)
        if not wait:
            self.failed_auth.failed(client, now)
        raise Problem(
            429 if wait else 401,
            "rate_limited" if wait else "unauthorized",
            "Too many wrong tokens from this address."
            if wait
            else "This path needs the admin token: 'Authorization: Bearer <token>' (the token is "
            "in the file [http] admin_token_file names, by default <data_dir>/admin.token).",
            field="Authorization",
            retry_after=wait or None,
            # A browser asks for Basic credentials (the token as the password) on the page.
            headers={
                "WWW-Authenticate": _PAGE_CHALLENGE
                if request.path == STATUS_PAGE_PATH
                else _ADMIN_CHALLENGE
            },
        )

    async def _look_up(self, request: web.Request, bearer: str) -> ApiKey | None:
        """A bearer value the ring does not hold fresh: looked up unless its address failed too
        often (a key the ring held before is looked up again regardless)."""
        wait = 0.0
        client = self._client(request)
        if not self.keys.was_valid(bearer):
            wait = self.failed_auth.wait(client, time.monotonic())
        if wait:
            raise Problem(
                429,
                "rate_limited",
                "Too many unknown API keys from this address.",
                field="Authorization",
                retry_after=wait,
            )
        key = await self.keys.authenticate(bearer)
        if key is None:
            self.failed_auth.failed(client, time.monotonic())
        return key

    def _client(self, request: web.Request) -> str | None:
        return self.client_addresses.of(request.remote, request.headers.get("X-Forwarded-For"))

    # --- helpers --------------------------------------------------------------------------------

    async def parse_body(self, request: web.Request, model: type[Model]) -> Model:
        body = await request.read()
        try:
            return model.model_validate_json(body)
        except ValidationError as exc:
            raise from_validation_error(exc, _ALIASES) from None

    @staticmethod
    def _require_scope(key: ApiKey, scope: str) -> None:
        if not key.allows_scope(scope):
            raise Problem(403, "insufficient_scope", f"This key does not have the '{scope}' scope.")

    @staticmethod
    def _require_sender(key: ApiKey, sender: str) -> None:
        if not key.allows_sender(sender):
            raise Problem(
                403,
                "sender_not_allowed",
                f"This key may not send from {sender!r}." if sender else "This key must give from.",
                field="from",
            )

    async def _take_messages(self, key: ApiKey, count: int) -> None:
        wait = self.limits.messages(
            key.id, key.requests_per_second, key.messages_per_second, count, time.monotonic()
        )
        if not wait and self.shared_limits is not None:
            wait = await self.shared_limits.wait(key.id, "m", key.messages_per_second, count)
        if wait:
            self.stats.rate_limited += 1
            raise Problem(
                429,
                "rate_limited",
                f"This key may send {key.messages_per_second:g} messages per second.",
                retry_after=wait,
            )

    async def _idempotent(
        self, request: web.Request, key: ApiKey, work: Callable[[], Awaitable[Answer]]
    ) -> web.Response:
        idempotency_key = request.headers.get(IDEMPOTENCY_HEADER)
        if idempotency_key is None:
            answer = await work()
        else:
            Idempotency.validate_key(idempotency_key)
            body = await request.read()
            answer = await self.idempotency.run(
                key.id,
                idempotency_key,
                fingerprint(request.method, request.path, body),
                work,
            )
        return web.Response(
            status=answer.status,
            body=answer.body,
            headers=_JSON_REPLAYED if answer.replayed else _JSON_HEADERS,
        )

    @staticmethod
    def _path_id(request: web.Request, pattern: re.Pattern[str], what: str) -> str:
        value = request.match_info["id"]
        if not pattern.match(value):
            raise Problem(404, "not_found", f"No {what} has the id {value!r}.", field="id")
        return value

    # --- documents ------------------------------------------------------------------------------

    async def openapi(self, request: web.Request) -> web.Response:
        if not self._openapi_body:
            self._openapi_body = json.dumps(openapi_document(), indent=1).encode()
        return web.Response(body=self._openapi_body, content_type=JSON)

    async def docs(self, request: web.Request) -> web.Response:
        if not self._docs_body:
            self._docs_body = docs_page(openapi_document()).encode()
        return web.Response(body=self._docs_body, content_type="text/html", charset="utf-8")

    # --- messages -------------------------------------------------------------------------------

    async def send_messages(self, request: web.Request) -> web.Response:
        key = request[API_KEY]
        self._require_scope(key, "messages")
        body = await self.parse_body(request, models.SendMessageRequest)
        if (error := body.content_error()) is not None:
            raise Problem(422, error.code, error.sentence, field=error.field)
        recipients = body.recipients()
        if len(recipients) > self.config.max_recipients:
            raise Problem(
                422,
                "too_many_items",
                f"At most {self.config.max_recipients} recipients per request.",
                field="to",
            )
        if body.callback_url is not None:
            self._require_callback_destination(body.callback_url)
        sender = body.from_ or self.config.default_sender or ""
        self._require_sender(key, sender)
        if key.record.countries is not None:
            self._require_countries(key, recipients, many=not isinstance(body.to, str))
        await self._take_messages(key, len(recipients))
        send_at = None if body.send_at is None else body.send_at.timestamp()
        # Validity counts from the scheduled time: a message scheduled for tomorrow with one
        # hour of validity may be delivered until tomorrow plus one hour.
        starts_at = max(self.clock(), send_at or 0.0)
        validity_at = None if body.validity is None else starts_at + body.validity
        payload = body.body_bytes()
        kind = _KINDS[body.kind]
        requests = [
            MessageRequest(
                account=key.name,
                channel=Channel.HTTP,
                to=recipient,
                sender=sender,
                text=body.text,
                body=payload,
                data_coding=body.data_coding,
                encoding=body.encoding,
                kind=kind,
                validity_at=validity_at,
                send_at=send_at,
                # The URL in effect when it was sent (the key's, unless it names its own):
                # the store keeps the callback owed until it is delivered or given up.
                callback_url=body.callback_url or key.record.callback_url,
                reference=body.reference,
            )
            for recipient in recipients
        ]

        async def work() -> Answer:
            try:
                prepared = await self.gateway.intake.accept(requests)
            except IntakeRefusal as refusal:
                many = not isinstance(body.to, str)
                raise self._locate_refusal(refusal, requests, many=many) from None
            self.stats.messages_accepted += len(prepared)
            return Answer(202, accepted_body(prepared, single=isinstance(body.to, str)))

        return await self._idempotent(request, key, work)

    def _require_callback_destination(self, url: str) -> None:
        refusal = self.egress.url_refusal(url)
        if refusal is not None:
            raise Problem(
                422,
                "callback_url_refused",
                f"callback_url cannot be used: {refusal} (callbacks go to public addresses only).",
                field="callback_url",
            )

    def _require_countries(self, key: ApiKey, recipients: list[str], *, many: bool) -> None:
        for index, recipient in enumerate(recipients):
            try:
                region = self.gateway.numbers.normalise(recipient).region
            except InvalidNumber:
                continue  # the intake words this refusal
            if not key.allows_country(region):
                raise Problem(
                    403,
                    "country_not_allowed",
                    f"This key may not send to {region or 'that country'}.",
                    field=f"to[{index}]" if many else "to",
                )

    def _locate_refusal(
        self, refusal: IntakeRefusal, requests: list[MessageRequest], *, many: bool
    ) -> Problem:
        """Name the recipient at fault in a batch (`to[3]`): the intake refuses the whole
        batch at its first bad request without saying which one it was."""
        if many and refusal.field == "to" and refusal.retry_after is None:
            for index, item in enumerate(requests):
                try:
                    self.gateway.intake.prepare(item)
                except IntakeRefusal as own:
                    return from_intake_refusal(own, field_prefix=f"to[{index}]")
        return from_intake_refusal(refusal)

    async def _own_message(self, request: web.Request) -> MessageRecord:
        key = request[API_KEY]
        self._require_scope(key, "messages")
        message_id = self._path_id(request, _MESSAGE_ID, "message")
        record = await self.gateway.message_store.get(message_id)
        if record is None or record.message.tenant != Tenant(Channel.HTTP, key.name):
            raise Problem(404, "not_found", f"No message has the id {message_id!r}.", field="id")
        return record

    async def get_message(self, request: web.Request) -> web.Response:
        record = await self._own_message(request)
        return _json(message_details(record))

    async def cancel_message(self, request: web.Request) -> web.Response:
        record = await self._own_message(request)
        message = record.message
        if message.status not in _UNSENT or not self.gateway.queue.remove(message.id):
            raise Problem(
                409,
                "not_cancellable",
                f"The message is {message.status.value}; only a message still waiting in the "
                "queue can be canceled.",
                field="id",
            )
        self.gateway.dispatcher.forget(message.id)
        change = await self.gateway.message_store.cancel(
            message.id, at=self.gateway.clock(), source=StatusSource.OPERATOR
        )
        self._notify(change)
        refreshed = await self.gateway.message_store.get(message.id)
        return _json(message_details(refreshed or record))

    def _notify(self, change: StatusChange) -> None:
        self.gateway.notify_status(change)

    async def preview_message(self, request: web.Request) -> web.Response:
        key = request[API_KEY]
        self._require_scope(key, "messages")
        body = await self.parse_body(request, models.PreviewRequest)
        if (error := body.content_error()) is not None:
            raise Problem(422, error.code, error.sentence, field=error.field)
        explanation = explain_route(
            body.to,
            self.gateway.numbers,
            self.gateway.routes,
            now=self.gateway.clock(),
            link_states=self.gateway.link_states,
            sender=body.from_,
            account=key.name,
            kind=MessageKind(body.kind),
        )
        link = explanation.next_target or (
            explanation.targets[0].link if explanation.targets else None
        )
        concatenation = Concatenation.UDH8
        if link is not None:
            with contextlib.suppress(KeyError):
                concatenation = self.gateway.config.link(link).concatenation
        try:
            if body.text is not None:
                info = describe_text(body.text, body.encoding, concatenation=concatenation)
                encoding, characters, units = info.encoding.value, info.characters, info.units
                parts, per_part = info.segments, info.units_per_segment
            else:
                payload = body.body_bytes() or b""
                data_coding = body.data_coding if body.data_coding is not None else 4
                encoding = _ENCODING_OF_DATA_CODING.get(data_coding, "binary")
                characters, units, per_part = None, len(payload), None
                parts = len(split_bytes(payload, data_coding, max_parts=255))
        except TextEncodingError as exc:
            raise Problem(422, "unencodable_text", str(exc), field="text") from None
        route = models.RoutePreview(
            route=explanation.chosen_route,
            targets=[target.link for target in explanation.targets],
            next_target=explanation.next_target,
            sender=explanation.rewritten_sender or body.from_,
            country=explanation.country,
            mno=explanation.mno,
            refusal_code=explanation.refusal_code,
            refusal_reason=explanation.refusal_reason,
        )
        return _json(
            models.PreviewResponse(
                to=explanation.number,
                encoding=encoding,
                characters=characters,
                units=units,
                parts=parts,
                units_per_part=per_part,
                route=route,
            )
        )

    # --- OTP --------------------------------------------------------------------------------

    async def send_otp(self, request: web.Request) -> web.Response:
        key = request[API_KEY]
        self._require_scope(key, "otp")
        body = await self.parse_body(request, models.OtpSendRequest)
        self._require_sender(key, body.from_ or self.gateway.config.otp.default_sender)
        await self._take_messages(key, 1)

        async def work() -> Answer:
            try:
                result = await self.otp.send(
                    key,
                    to=body.to,
                    sender=body.from_,
                    template=body.template,
                    code_length=body.code_length,
                    ttl=body.ttl,
                    locale=body.locale,
                    code=body.code,
                )
            except OtpRefusal as refusal:
                raise from_otp_refusal(refusal) from None
            except IntakeRefusal as refusal:
                raise from_intake_refusal(refusal) from None
            view = self._otp_view(result.record)
            return Answer(201, view.model_dump_json(by_alias=True).encode())

        return await self._idempotent(request, key, work)

    def _otp_view(self, record: OtpRecord) -> models.OtpView:
        return models.OtpView(
            id=record.id,
            to=record.to,
            status=current_status(record, self.otp.clock()).value,
            expires_at=_at(record.expires_at),
            message_id=record.message_id,
            sends=record.sends,
            attempts_left=attempts_left(record),
            created_at=_at(record.created_at),
        )

    async def _own_otp(self, request: web.Request) -> tuple[ApiKey, str]:
        key = request[API_KEY]
        self._require_scope(key, "otp")
        return key, self._path_id(request, _OTP_ID, "verification")

    async def get_otp(self, request: web.Request) -> web.Response:
        key, otp_id = await self._own_otp(request)
        record = await self.otp.get(key, otp_id)
        if record is None:
            raise Problem(404, "not_found", f"No verification has the id {otp_id!r}.", field="id")
        return _json(self._otp_view(record))

    async def check_otp(self, request: web.Request) -> web.Response:
        key, otp_id = await self._own_otp(request)
        body = await self.parse_body(request, models.OtpCheckRequest)
        try:
            record, outcome = await self.otp.check(key, otp_id, body.code)
        except OtpRefusal as refusal:
            raise from_otp_refusal(refusal) from None
        if outcome.status is OtpStatus.PENDING or (
            outcome.status is OtpStatus.APPROVED and outcome.changed
        ):
            return _json(
                models.OtpCheckResponse(
                    id=record.id,
                    status=outcome.status.value,  # type: ignore[arg-type]
                    attempts_left=outcome.attempts_left,
                )
            )
        status, code, detail = {
            OtpStatus.APPROVED: (409, "already_approved", "The code was already approved."),
            OtpStatus.EXPIRED: (410, "expired", "The code has expired; request a new one."),
            OtpStatus.CANCELED: (409, "canceled", "The verification was canceled."),
            OtpStatus.MAX_ATTEMPTS_REACHED: (
                429,
                "max_attempts_reached",
                "Too many wrong codes; request a new one.",
            ),
        }[outcome.status]
        raise Problem(
            status,
            code,
            detail,
            field="code" if outcome.status is OtpStatus.MAX_ATTEMPTS_REACHED else "id",
            extra={"otp_status": outcome.status.value, "attempts_left": outcome.attempts_left},
        )

    async def cancel_otp(self, request: web.Request) -> web.Response:
        key, otp_id = await self._own_otp(request)
        try:
            record = await self.otp.cancel(key, otp_id)
        except OtpRefusal as refusal:
            raise from_otp_refusal(refusal) from None
        return _json(self._otp_view(record))


def accepted_body(prepared: list[Prepared], *, single: bool) -> bytes:
    """The 202 answer: one `MessageAccepted`, or a `MessageBatchAccepted` for a list `to`."""
    if single:
        return accepted_json(prepared[0]).encode()
    return ('{"messages":[' + ",".join(map(accepted_json, prepared)) + "]}").encode()


def accepted_json(item: Prepared) -> str:
    """`models.MessageAccepted` of `item` as its `model_dump_json(by_alias=True)` words it,
    written out: building and dumping the model was a tenth of a request's own cost."""
    message = item.message
    route = item.decision.route
    reference = message.reference
    return (
        '{"id":'
        + encode_basestring(message.id)
        + ',"status":'
        + encode_basestring(message.status.value)
        + ',"to":'
        + encode_basestring("+" + message.destination)
        + ',"parts":'
        + int.__repr__(item.parts)
        + ',"encoding":'
        + encode_basestring(item.encoding)
        + ',"route":'
        + ("null" if route is None else encode_basestring(route))
        + ',"reference":'
        + ("null" if reference is None else encode_basestring(reference))
        + "}"
    )


def message_details(record: MessageRecord) -> models.MessageDetails:
    message = record.message
    return models.MessageDetails(
        id=message.id,
        status=message.status.value,
        to="+" + message.destination,
        from_=message.source_addr,  # type: ignore[call-arg]  # populated by name
        kind=message.kind.value,
        encoding=_ENCODING_OF_DATA_CODING.get(message.data_coding, "binary"),
        route=message.route,
        link=message.link,
        reference=message.reference,
        callback_url=message.callback_url,
        attempts=message.attempts,
        error=message.last_error,
        created_at=_at(message.created_at),
        updated_at=_at(message.updated_at),
        send_at=_at_or_none(message.send_at),
        validity_at=_at_or_none(message.validity_at),
        segments=[
            models.SegmentView(
                index=segment.index,
                total=segment.total,
                status=segment.status.value,
                link=segment.link,
                carrier_id=segment.carrier_id,
                submitted_at=_at_or_none(segment.submitted_at),
                done_at=_at_or_none(segment.done_at),
                error=segment.error,
                network_error=segment.network_error,
            )
            for segment in record.segments
        ],
        history=[
            models.HistoryView(
                at=_at(entry.event.at),
                status=entry.event.status.value,
                source=entry.event.source.value,
                detail=entry.event.detail,
                changed=entry.event.changed,
                segment=entry.segment_index,
            )
            for entry in record.history
        ],
    )


async def start_http_api(gateway: GatewayServices) -> HttpApi:
    """Start the HTTP API and the receipt callbacks on the daemon's loop; stops with it."""
    from gateway.callbacks import CallbackSender

    api = HttpApi(gateway)
    api.callbacks = CallbackSender.from_config(
        gateway.config.http, store=gateway.message_store, keys=api.keys, egress=api.egress
    )
    gateway.status_listeners.append(api.callbacks)
    gateway.status_listeners.append(api.otp)  # wipes the code from finished OTP messages
    api.callbacks.restore()
    gateway.add_stop_hook(api.stop)  # first: a start cut short (a busy port) is undone too
    gateway.add_reconfigure_hook(api.reconfigure)
    await api.start()
    return api
