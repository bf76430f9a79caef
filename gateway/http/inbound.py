"""`/v1/inbound`: the inbound messages (MO) the gateway kept, for keys with the `inbound` scope.

Owns the handlers of `GET /v1/inbound` (filter by number, sent from or to it, and by time;
newest first, paginated) and `GET /v1/inbound/{id}`, and turning stored MOs into
`gateway.http.models.InboundView`. Never does: SQL (the store) or changing anything.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from gateway.http import models
from gateway.http.paging import decode_row_id_cursor, encode_cursor, page_limit, whole_number
from gateway.http.problems import Problem
from gateway.http.route_host import API_KEY, ApiHost
from gateway.keys import ApiKey
from gateway.store.base import InboundRecord, InboundState, InboundStore

SCOPE = "inbound"


def add_inbound_routes(app: web.Application, api: ApiHost) -> None:
    handlers = InboundHandlers(api)
    app.router.add_get("/v1/inbound", handlers.list)
    app.router.add_get("/v1/inbound/{id}", handlers.get)


def _at(unix_time: float) -> datetime:
    return datetime.fromtimestamp(unix_time, UTC)


def _json(model: Any) -> web.Response:
    return web.Response(
        body=model.model_dump_json(by_alias=True).encode(), content_type="application/json"
    )


def _address(number: str) -> str:
    """Numbers long enough to be international get their '+' back; short codes stay."""
    digits = number.removeprefix("+")
    return "+" + digits if digits.isdigit() and len(digits) > 8 else number


def inbound_view(record: InboundRecord) -> models.InboundView:
    row = record.row
    return models.InboundView.model_validate(
        {
            "id": str(record.id),
            "state": row.state.value,
            "from": _address(row.source),
            "to": _address(row.destination),
            "text": row.text,
            "payload_hex": row.payload.hex() if row.text is None else None,
            "data_coding": row.data_coding,
            "parts": row.part_count,
            "complete": row.complete,
            "link": row.link,
            "received_at": _at(row.received_at),
            "carrier_timestamp": None
            if row.carrier_timestamp is None
            else _at(row.carrier_timestamp),
            "keyword": row.keyword,
            "keyword_class": row.keyword_class,
            "lenient": row.lenient,
            "route": row.route,
            "webhook_pending": row.webhook_next is not None,
            "webhook_error": record.webhook_error,
        }
    )


class InboundHandlers:
    def __init__(self, api: ApiHost) -> None:
        self.api = api
        self.gateway = api.gateway

    @property
    def store(self) -> InboundStore:
        store: Any = self.gateway.message_store
        return store  # type: ignore[no-any-return]

    @staticmethod
    def _key(request: web.Request) -> ApiKey:
        key: ApiKey = request[API_KEY]
        if not key.allows_scope(SCOPE):
            raise Problem(403, "insufficient_scope", f"This key does not have the '{SCOPE}' scope.")
        return key

    @staticmethod
    def _time(raw: str | None, field: str) -> float | None:
        if raw is None:
            return None
        try:
            moment = datetime.fromisoformat(raw)
        except ValueError:
            raise Problem(
                422, "invalid_time", f"{field} is an ISO 8601 date-time.", field=field
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()

    async def list(self, request: web.Request) -> web.Response:
        self._key(request)
        query = request.query
        number = query.get("number")
        if number is not None:
            number = number.strip().removeprefix("+")
            if not (number.isascii() and number.isdigit()) or len(number) > 15:
                raise Problem(422, "invalid_number", "number is digits.", field="number")
        limit = page_limit(query)
        before_id = decode_row_id_cursor(query["after"]) if "after" in query else None
        records = await self.store.list_inbound(
            number=number,
            since=self._time(query.get("since"), "since"),
            until=self._time(query.get("until"), "until"),
            before_id=before_id,
            limit=limit + 1,
        )
        more = len(records) > limit
        records = records[:limit]
        page = models.InboundList(
            inbound=[inbound_view(record) for record in records],
            next=encode_cursor([records[-1].id]) if more else None,
        )
        return _json(page)

    async def get(self, request: web.Request) -> web.Response:
        self._key(request)
        raw = request.match_info["id"]
        row_id = whole_number(raw)
        record = await self.store.get_inbound(row_id) if row_id is not None else None
        if record is None or record.row.state is InboundState.HELD:
            raise Problem(404, "not_found", "No inbound message has this id.")
        return _json(inbound_view(record))
