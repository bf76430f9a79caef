"""`/v1/optouts`: the opt-out list over HTTP, for keys with the `optouts` scope.

Owns the handlers of `GET /v1/optouts` (filter by number, sender, group, scope; paginated),
`PUT /v1/optouts/{number}`, `DELETE /v1/optouts/{number}` and `GET
/v1/optouts/{number}/history`, and turning registry entries and audit rows into the models of
`gateway.http.models`. Changes go through the daemon's `OptOutRegistry`, so they block (or stop
blocking) in this daemon at once and are audited as `api` with the key's name as the source.

A key limited to some senders (`tandem keys create --senders`) sees and changes the opt-outs
of those senders only: it must name `sender`, and group or all-sender opt-outs are refused.

Never does: SQL (the store), or deciding scopes of keywords (the registry).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from gateway.http import models
from gateway.http.paging import (
    MAX_PAGE,
    decode_cursor,
    decode_row_id_cursor,
    encode_cursor,
    page_limit,
)
from gateway.http.problems import Problem
from gateway.http.route_host import API_KEY, ApiHost
from gateway.keys import ApiKey
from gateway.optouts.senders import resolve_number, sender_key
from gateway.store.base import (
    OptOutAuditRecord,
    OptOutEntry,
    OptOutScope,
    OptOutStore,
    OptOutVia,
)
from routing import InvalidNumber

SCOPE = "optouts"


def add_optout_routes(app: web.Application, api: ApiHost) -> None:
    handlers = OptOutHandlers(api)
    app.router.add_get("/v1/optouts", handlers.list)
    app.router.add_put("/v1/optouts/{number}", handlers.put)
    app.router.add_delete("/v1/optouts/{number}", handlers.delete)
    app.router.add_get("/v1/optouts/{number}/history", handlers.history)


def _at(unix_time: float) -> datetime:
    return datetime.fromtimestamp(unix_time, UTC)


def _json(model: Any, status: int = 200) -> web.Response:
    return web.Response(
        status=status,
        body=model.model_dump_json(by_alias=True).encode(),
        content_type="application/json",
    )


def entry_view(entry: OptOutEntry) -> models.OptOutView:
    return models.OptOutView(
        number="+" + entry.number,
        scope=entry.scope.value,
        sender=entry.target if entry.scope is OptOutScope.SENDER else None,
        group=entry.target if entry.scope is OptOutScope.GROUP else None,
        created_at=_at(entry.created_at),
        via=entry.via.value,
        keyword=entry.keyword,
        source=entry.source,
        reason=entry.reason,
    )


def history_view(record: OptOutAuditRecord) -> models.OptOutHistoryEntry:
    return models.OptOutHistoryEntry(
        id=record.id,
        action=record.action.value,
        scope=record.scope.value,
        sender=record.target if record.scope is OptOutScope.SENDER else None,
        group=record.target if record.scope is OptOutScope.GROUP else None,
        via=record.via.value,
        keyword=record.keyword,
        lenient=record.lenient,
        source=record.source,
        reason=record.reason,
        changed=record.changed,
        at=_at(record.at),
    )


class OptOutHandlers:
    def __init__(self, api: ApiHost) -> None:
        self.api = api
        self.gateway = api.gateway

    @property
    def store(self) -> OptOutStore:
        store: Any = self.gateway.message_store
        return store  # type: ignore[no-any-return]

    # --- helpers ----------------------------------------------------------------------------
    def _key(self, request: web.Request) -> ApiKey:
        key: ApiKey = request[API_KEY]
        if not key.allows_scope(SCOPE):
            raise Problem(403, "insufficient_scope", f"This key does not have the '{SCOPE}' scope.")
        return key

    def _number(self, raw: str, field: str = "number") -> str:
        try:
            return resolve_number(self.gateway.numbers, raw)
        except InvalidNumber as exc:
            raise Problem(422, "invalid_number", exc.reason, field=field) from None

    def _group(self, name: str, field: str = "group") -> str:
        if name not in self.gateway.optouts.groups.groups:
            raise Problem(422, "unknown_group", f"No sender group is named {name!r}.", field=field)
        return name

    @staticmethod
    def _restricted(key: ApiKey) -> bool:
        return key.sender_rule is not None

    def _require_sender_allowed(self, key: ApiKey, sender: str | None, scope: str) -> None:
        if not self._restricted(key):
            return
        if scope != "sender" or sender is None:
            raise Problem(
                403,
                "sender_not_allowed",
                "This key is limited to some senders: it must name a sender it may send from.",
                field="sender",
            )
        if not key.allows_sender(sender):
            raise Problem(
                403, "sender_not_allowed", f"This key may not use {sender!r}.", field="sender"
            )

    @staticmethod
    def _scope(raw: str | None, field: str = "scope") -> OptOutScope | None:
        if raw is None:
            return None
        try:
            return OptOutScope(raw)
        except ValueError:
            raise Problem(
                422, "invalid_scope", "scope is one of sender, group, all.", field=field
            ) from None

    # --- handlers ---------------------------------------------------------------------------
    async def list(self, request: web.Request) -> web.Response:
        key = self._key(request)
        query = request.query
        number = self._number(query["number"]) if "number" in query else None
        scope = self._scope(query.get("scope"))
        sender = query.get("sender")
        group = query.get("group")
        if sender is not None and group is not None:
            raise Problem(422, "conflicting_filters", "Give sender or group, not both.", "group")
        target: str | None = None
        if sender is not None:
            if scope not in (None, OptOutScope.SENDER):
                raise Problem(422, "conflicting_filters", "sender goes with scope sender.", "scope")
            scope, target = OptOutScope.SENDER, sender_key(sender)
        elif group is not None:
            if scope not in (None, OptOutScope.GROUP):
                raise Problem(422, "conflicting_filters", "group goes with scope group.", "scope")
            scope, target = OptOutScope.GROUP, group
        self._require_sender_allowed(key, sender, "sender" if sender is not None else "any")
        limit = page_limit(request.query)
        after = None
        if "after" in query:
            values = decode_cursor(query["after"], 3)
            after = (str(values[0]), str(values[1]), str(values[2]))
        entries = await self.store.list_optouts(
            number=number, scope=scope, target=target, after=after, limit=limit + 1
        )
        page = entries[:limit]
        next_cursor = None
        if len(entries) > limit:
            last = page[-1]
            next_cursor = encode_cursor([last.number, last.scope.value, last.target])
        return _json(models.OptOutList(optouts=[entry_view(e) for e in page], next=next_cursor))

    async def put(self, request: web.Request) -> web.Response:
        key = self._key(request)
        number = self._number(request.match_info["number"])
        body = await self.api.parse_body(request, models.OptOutPutRequest)
        scope = OptOutScope(body.scope)
        if scope is OptOutScope.SENDER:
            if body.sender is None or body.group is not None:
                raise Problem(422, "missing_field", "scope sender needs sender.", field="sender")
            target = sender_key(body.sender)
        elif scope is OptOutScope.GROUP:
            if body.group is None or body.sender is not None:
                raise Problem(422, "missing_field", "scope group needs group.", field="group")
            target = self._group(body.group)
        else:
            if body.sender is not None or body.group is not None:
                raise Problem(
                    422, "unknown_field", "scope all names no sender or group.", field="scope"
                )
            target = ""
        self._require_sender_allowed(key, body.sender, body.scope)
        outcome = await self.gateway.optouts.opt_out(
            number,
            scope=scope,
            target=target,
            via=OptOutVia.API,
            source=f"key:{key.name}",
            reason=body.reason,
        )
        entries = await self.store.list_optouts(number=number, scope=scope, target=target, limit=1)
        return _json(
            models.OptOutChanged(
                number="+" + number,
                changed=outcome.any_changed,
                optouts=[entry_view(e) for e in entries],
            ),
            201 if outcome.any_changed else 200,
        )

    async def delete(self, request: web.Request) -> web.Response:
        key = self._key(request)
        number = self._number(request.match_info["number"])
        query = request.query
        scope = self._scope(query.get("scope"))
        sender = query.get("sender")
        group = query.get("group")
        target = ""
        if scope is OptOutScope.SENDER:
            if sender is None:
                raise Problem(422, "missing_field", "scope sender needs sender.", field="sender")
            target = sender_key(sender)
        elif scope is OptOutScope.GROUP:
            if group is None:
                raise Problem(422, "missing_field", "scope group needs group.", field="group")
            target = self._group(group)
        elif scope is None and (sender is not None or group is not None):
            raise Problem(422, "missing_field", "sender and group go with a scope.", "scope")
        self._require_sender_allowed(
            key, sender, scope.value if scope is not None else "everything"
        )
        before = await self.store.list_optouts(number=number, limit=MAX_PAGE)
        outcome = await self.gateway.optouts.opt_in(
            number,
            scope=scope,
            target=target,
            via=OptOutVia.API,
            source=f"key:{key.name}",
            reason=query.get("reason", ""),
        )
        removed_keys = {
            (each_scope, each_target)
            for (each_scope, each_target), did in zip(outcome.scopes, outcome.changed)
            if did
        }
        if not removed_keys:
            raise Problem(404, "not_found", "The number has no such opt-out.", field="number")
        removed = [e for e in before if (e.scope, e.target) in removed_keys]
        return _json(
            models.OptOutChanged(
                number="+" + number, changed=True, optouts=[entry_view(e) for e in removed]
            )
        )

    async def history(self, request: web.Request) -> web.Response:
        key = self._key(request)
        if self._restricted(key):
            raise Problem(
                403, "sender_not_allowed", "A key limited to some senders cannot read histories."
            )
        number = self._number(request.match_info["number"])
        limit = page_limit(request.query)
        after_id = 0
        if "after" in request.query:
            after_id = decode_row_id_cursor(request.query["after"])
        records = await self.store.optout_history(number, after_id=after_id, limit=limit + 1)
        page = records[:limit]
        next_cursor = encode_cursor([page[-1].id]) if len(records) > limit else None
        return _json(
            models.OptOutHistory(
                number="+" + number, history=[history_view(r) for r in page], next=next_cursor
            )
        )
