"""Inbound messages (MO) in SQLite: the schema, the write ops and the reads (`SqliteInboundStore`).

Owns the `inbound` table (every MO, and the parts held for reassembly, kept before the carrier
is answered; the webhook delivery owed for each), `inbound_reply_owed` (the keyword replies owed,
kept in the MO's own transaction) and `inbound_blocked` (the inbound block list),
and the row codec of an MO's parts. Never does: reassembly, routing, keyword matching or
delivery (`gateway.inbound`).
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from gateway.inbound.model import Concat, ConcatScheme, InboundPart
from gateway.store.base import InboundRecord, InboundRow, InboundState

T = TypeVar("T")

# IF NOT EXISTS: a store whose user_version was set back (tests of older stores) migrates again.
INBOUND_SCHEMA = """
CREATE TABLE IF NOT EXISTS inbound (
    id INTEGER PRIMARY KEY,
    state TEXT NOT NULL,
    link TEXT NOT NULL,
    source TEXT NOT NULL,
    destination TEXT NOT NULL,
    data_coding INTEGER NOT NULL,
    text TEXT,
    payload BLOB NOT NULL,
    parts TEXT NOT NULL,
    part_count INTEGER NOT NULL,
    complete INTEGER NOT NULL,
    received_at REAL NOT NULL,
    carrier_timestamp REAL,
    part_of TEXT,
    keyword TEXT,
    keyword_class TEXT,
    lenient INTEGER NOT NULL,
    route TEXT,
    webhook TEXT,
    webhook_next REAL,
    webhook_attempts INTEGER NOT NULL DEFAULT 0,
    webhook_error TEXT
);
CREATE INDEX IF NOT EXISTS inbound_by_time ON inbound (received_at);
CREATE INDEX IF NOT EXISTS inbound_by_source ON inbound (source, id);
CREATE INDEX IF NOT EXISTS inbound_by_destination ON inbound (destination, id);
CREATE INDEX IF NOT EXISTS inbound_held ON inbound (part_of) WHERE part_of IS NOT NULL;
CREATE INDEX IF NOT EXISTS inbound_webhook_owed ON inbound (id) WHERE webhook_next IS NOT NULL;
CREATE TABLE IF NOT EXISTS inbound_blocked (
    number TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    reason TEXT NOT NULL
) WITHOUT ROWID
"""

# The keyword reply (STOP's confirmation, START's, HELP's) an MO is owed: written in the same
# transaction as the MO, settled once the reply is stored as an MT (or will never be), so a
# restart between answering the carrier and queueing the reply sends it then.
INBOUND_REPLY_SCHEMA = """
CREATE TABLE IF NOT EXISTS inbound_reply_owed (
    inbound_id INTEGER PRIMARY KEY,
    owed_at REAL NOT NULL
)
"""

_COLUMNS = (
    "state, link, source, destination, data_coding, text, payload, parts, part_count, complete, "
    "received_at, carrier_timestamp, part_of, keyword, keyword_class, lenient, route, webhook, "
    "webhook_next"
)
# RETURNING id rather than the cursor's lastrowid: PostgreSQL has no lastrowid.
_INSERT = f"INSERT INTO inbound ({_COLUMNS}) VALUES ({', '.join('?' * 19)}) RETURNING id"
_SELECT = f"SELECT id, {_COLUMNS}, webhook_attempts, webhook_error FROM inbound"

_STATES = {state.value: state for state in InboundState}
_SCHEMES = {scheme.value: scheme for scheme in ConcatScheme}


class _Executes(Protocol):
    execute: Callable[..., Any]
    executemany: Callable[..., Any]


def _part_dict(part: InboundPart) -> dict[str, Any]:
    concat = part.concat
    return {
        "link": part.link,
        "source": part.source,
        "destination": part.destination,
        "data_coding": part.data_coding,
        "payload": base64.b64encode(part.payload).decode(),
        "text": part.text,
        "received_at": part.received_at,
        "concat": None
        if concat is None
        else [concat.reference, concat.total, concat.sequence, concat.scheme.value],
        "carrier_timestamp": part.carrier_timestamp,
        "ton_npi": [part.source_ton, part.source_npi, part.destination_ton, part.destination_npi],
        "udh": [[iei, base64.b64encode(data).decode()] for iei, data in part.udh_elements],
        "service_type": part.service_type,
        "protocol_id": part.protocol_id,
    }


def parts_to_json(parts: Sequence[InboundPart]) -> str:
    return json.dumps([_part_dict(part) for part in parts], separators=(",", ":"))


def parts_from_json(text: str) -> tuple[InboundPart, ...]:
    parts = []
    for d in json.loads(text):
        concat = d["concat"]
        ton_npi = d["ton_npi"]
        parts.append(
            InboundPart(
                link=d["link"],
                source=d["source"],
                destination=d["destination"],
                data_coding=d["data_coding"],
                payload=base64.b64decode(d["payload"]),
                text=d["text"],
                received_at=d["received_at"],
                concat=None
                if concat is None
                else Concat(concat[0], concat[1], concat[2], _SCHEMES[concat[3]]),
                carrier_timestamp=d["carrier_timestamp"],
                source_ton=ton_npi[0],
                source_npi=ton_npi[1],
                destination_ton=ton_npi[2],
                destination_npi=ton_npi[3],
                udh_elements=tuple((iei, base64.b64decode(data)) for iei, data in d["udh"]),
                service_type=d["service_type"],
                protocol_id=d["protocol_id"],
            )
        )
    return tuple(parts)


def _values(row: InboundRow) -> tuple[Any, ...]:
    return (
        row.state.value,
        row.link,
        row.source,
        row.destination,
        row.data_coding,
        row.text,
        row.payload,
        row.parts_json,
        row.part_count,
        int(row.complete),
        row.received_at,
        row.carrier_timestamp,
        row.part_of,
        row.keyword,
        row.keyword_class,
        int(row.lenient),
        row.route,
        row.webhook,
        row.webhook_next,
    )


def _record(r: Sequence[Any]) -> InboundRecord:
    row = InboundRow(
        state=_STATES[r[1]],
        link=r[2],
        source=r[3],
        destination=r[4],
        data_coding=int(r[5]),
        text=r[6],
        payload=bytes(r[7]),
        parts_json=r[8],
        part_count=int(r[9]),
        complete=bool(r[10]),
        received_at=float(r[11]),
        carrier_timestamp=r[12],
        part_of=r[13],
        keyword=r[14],
        keyword_class=r[15],
        lenient=bool(r[16]),
        route=r[17],
        webhook=r[18],
        webhook_next=r[19],
    )
    return InboundRecord(int(r[0]), row, int(r[20]), r[21])


def record_inbound_op(
    tx: _Executes, values: tuple[Any, ...], replaces: str | None, owes_reply: bool = False
) -> int:
    if replaces is not None:
        tx.execute("DELETE FROM inbound WHERE part_of = ?", (replaces,))
    inbound_id = int(tx.execute(_INSERT, values).fetchone()[0])
    if owes_reply:
        tx.execute(
            "INSERT INTO inbound_reply_owed (inbound_id, owed_at) VALUES (?, ?)",
            (inbound_id, values[10]),  # received_at
        )
    return inbound_id


def reply_settled_op(tx: _Executes, inbound_id: int) -> None:
    tx.execute("DELETE FROM inbound_reply_owed WHERE inbound_id = ?", (inbound_id,))


def release_held_op(
    tx: _Executes,
    ids: list[int],
    state: str,
    route: str | None,
    webhook: str | None,
    webhook_next: float | None,
) -> None:
    tx.executemany(
        "UPDATE inbound SET state = ?, part_of = NULL, route = ?, webhook = ?, webhook_next = ? "
        "WHERE id = ?",
        [(state, route, webhook, webhook_next, inbound_id) for inbound_id in ids],
    )


def webhook_attempted_op(
    tx: _Executes, inbound_id: int, next_at: float | None, error: str | None
) -> None:
    tx.execute(
        "UPDATE inbound SET webhook_next = ?, webhook_attempts = webhook_attempts + 1, "
        "webhook_error = ? WHERE id = ?",
        (next_at, error, inbound_id),
    )


def block_op(tx: _Executes, number: str, at: float, reason: str) -> bool:
    cursor = tx.execute(
        "INSERT INTO inbound_blocked (number, created_at, reason) VALUES (?, ?, ?) "
        "ON CONFLICT (number) DO NOTHING",
        (number, at, reason),
    )
    return bool(cursor.rowcount > 0)


def unblock_op(tx: _Executes, number: str) -> bool:
    cursor = tx.execute("DELETE FROM inbound_blocked WHERE number = ?", (number,))
    return bool(cursor.rowcount > 0)


# `[retention] inbound_days` (gateway.store.retention): MOs past it go once nothing is owed
# for them (no webhook delivery pending, no part waiting for its message).
PURGE_CANDIDATES = (
    "SELECT id FROM inbound WHERE id > ? AND received_at < ? AND part_of IS NULL "
    "AND webhook_next IS NULL ORDER BY id LIMIT ?"
)
PURGE_COUNT = (
    "SELECT COUNT(*) FROM inbound WHERE received_at < ? AND part_of IS NULL "
    "AND webhook_next IS NULL"
)


def purge_op(tx: _Executes, keys: list[tuple[int]], cutoff: float) -> int:
    cursor = tx.executemany(
        "DELETE FROM inbound WHERE id = ? AND received_at < ? AND part_of IS NULL "
        "AND webhook_next IS NULL",
        [(key[0], cutoff) for key in keys],
    )
    return int(cursor.rowcount)


class SqliteInboundStore:
    """`InboundStore` for `SqliteMessageStore`, which inherits it and supplies `_write` (the
    batching writer) and `_read` (the read connection)."""

    if TYPE_CHECKING:

        def _write(self, op: Callable[..., T], *args: Any, rows: int = 1) -> asyncio.Future[T]: ...

        async def _read(self, sql: str, parameters: Sequence[Any]) -> list[Any]: ...

    async def record_inbound(
        self, row: InboundRow, *, replaces: str | None = None, owes_reply: bool = False
    ) -> int:
        return await self._write(record_inbound_op, _values(row), replaces, owes_reply)

    async def replies_owed(self) -> list[InboundRecord]:
        rows = await self._read(
            f"{_SELECT} WHERE id IN (SELECT inbound_id FROM inbound_reply_owed) ORDER BY id", ()
        )
        return [_record(r) for r in rows]

    async def reply_settled(self, inbound_id: int) -> None:
        await self._write(reply_settled_op, inbound_id)

    async def release_held(self, ids: Sequence[int], row: InboundRow) -> None:
        await self._write(
            release_held_op,
            list(ids),
            row.state.value,
            row.route,
            row.webhook,
            row.webhook_next,
            rows=len(ids),
        )

    async def held_inbound(self) -> list[InboundRecord]:
        rows = await self._read(f"{_SELECT} WHERE part_of IS NOT NULL ORDER BY id", ())
        return [_record(r) for r in rows]

    async def get_inbound(self, inbound_id: int) -> InboundRecord | None:
        rows = await self._read(f"{_SELECT} WHERE id = ?", (inbound_id,))
        return _record(rows[0]) if rows else None

    async def list_inbound(
        self,
        *,
        number: str | None = None,
        since: float | None = None,
        until: float | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[InboundRecord]:
        where = ["part_of IS NULL"]
        parameters: list[Any] = []
        if number is not None:
            where.append("(source = ? OR destination = ?)")
            parameters += [number, number]
        if since is not None:
            where.append("received_at >= ?")
            parameters.append(since)
        if until is not None:
            where.append("received_at < ?")
            parameters.append(until)
        if before_id is not None:
            where.append("id < ?")
            parameters.append(before_id)
        sql = f"{_SELECT} WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?"
        rows = await self._read(sql, [*parameters, limit])
        return [_record(r) for r in rows]

    async def webhooks_owed(self, *, after_id: int = 0, limit: int = 1000) -> list[InboundRecord]:
        rows = await self._read(
            f"{_SELECT} WHERE webhook_next IS NOT NULL AND id > ? ORDER BY id LIMIT ?",
            (after_id, limit),
        )
        return [_record(r) for r in rows]

    async def webhook_attempted(
        self, inbound_id: int, *, next_at: float | None, error: str | None
    ) -> None:
        await self._write(webhook_attempted_op, inbound_id, next_at, error)

    async def block_inbound(self, number: str, *, at: float, reason: str) -> bool:
        return await self._write(block_op, number, at, reason)

    async def unblock_inbound(self, number: str) -> bool:
        return await self._write(unblock_op, number)

    async def inbound_blocked(self) -> list[tuple[str, float, str]]:
        rows = await self._read(
            "SELECT number, created_at, reason FROM inbound_blocked ORDER BY number", ()
        )
        return [(r[0], float(r[1]), r[2]) for r in rows]
