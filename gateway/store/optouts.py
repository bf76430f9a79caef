"""The opt-out list in SQLite: its schema, its write op and its reads (`OptOutStore`).

Owns the `optouts` table (the opt-outs in force, one row per number and scope) and the
`optout_audit` table (every change, append-only), the op that changes both in one transaction,
and `SqliteOptOutStore`, the reads and writes `SqliteMessageStore` offers for them over its one
writer and its read connection. Never does: matching keywords, deciding scopes, or keeping the
list in memory (`gateway.optouts.registry` does).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from gateway.store.base import (
    OptOutAction,
    OptOutAuditRecord,
    OptOutChange,
    OptOutEntry,
    OptOutScope,
    OptOutVia,
)

T = TypeVar("T")

# The migration that creates both tables (appended to the backend's migrations).
# IF NOT EXISTS: a store whose user_version was set back (tests of older stores) migrates again.
OPTOUT_SCHEMA = """
CREATE TABLE IF NOT EXISTS optouts (
    number TEXT NOT NULL,
    scope TEXT NOT NULL,
    target TEXT NOT NULL,
    created_at REAL NOT NULL,
    via TEXT NOT NULL,
    keyword TEXT,
    source TEXT NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (number, scope, target)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS optouts_by_target ON optouts (scope, target, number);
CREATE TABLE IF NOT EXISTS optout_audit (
    id INTEGER PRIMARY KEY,
    number TEXT NOT NULL,
    action TEXT NOT NULL,
    scope TEXT NOT NULL,
    target TEXT NOT NULL,
    via TEXT NOT NULL,
    keyword TEXT,
    lenient INTEGER NOT NULL,
    source TEXT NOT NULL,
    reason TEXT NOT NULL,
    at REAL NOT NULL,
    changed INTEGER NOT NULL,
    origin TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS optout_audit_by_number ON optout_audit (number, id);
"""

_INSERT = (
    "INSERT INTO optouts (number, scope, target, created_at, via, keyword, source, reason) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (number, scope, target) DO NOTHING"
)
_DELETE = "DELETE FROM optouts WHERE number = ? AND scope = ? AND target = ?"
_AUDIT_COLUMNS = (
    "id, number, action, scope, target, via, keyword, lenient, source, reason, at, changed, origin"
)
_INSERT_AUDIT = (
    "INSERT INTO optout_audit (number, action, scope, target, via, keyword, lenient, source, "
    "reason, at, changed, origin) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_ENTRY_COLUMNS = "number, scope, target, created_at, via, keyword, source, reason"

_SCOPES = {s.value: s for s in OptOutScope}
_ACTIONS = {a.value: a for a in OptOutAction}
_VIAS = {v.value: v for v in OptOutVia}


class _Executes(Protocol):
    """What the op needs of the writer's transaction (`gateway.store.sqlite._Tx`)."""

    execute: Callable[..., Any]
    executemany: Callable[..., Any]


ChangeRow = tuple[str, str, str, str, float, str, str | None, int, str, str, int]


def _change_row(change: OptOutChange) -> ChangeRow:
    return (
        change.action.value,
        change.number,
        change.scope.value,
        change.target,
        change.at,
        change.via.value,
        change.keyword,
        int(change.lenient),
        change.source,
        change.reason,
        int(change.always_audit),
    )


def change_optouts_op(tx: _Executes, rows: list[ChangeRow], origin: str) -> list[bool]:
    """The op of `change_optouts`: each change and its audit row, in order."""
    changed: list[bool] = []
    audit: list[tuple[Any, ...]] = []
    execute = tx.execute
    for action, number, scope, target, at, via, keyword, lenient, source, reason, always in rows:
        if action == "opt_out":
            count = execute(_INSERT, (number, scope, target, at, via, keyword, source, reason))
        else:
            count = execute(_DELETE, (number, scope, target))
        did = count.rowcount > 0
        changed.append(did)
        if did or always:
            audit.append(
                (
                    number,
                    action,
                    scope,
                    target,
                    via,
                    keyword,
                    lenient,
                    source,
                    reason,
                    at,
                    int(did),
                    origin,
                )
            )
    if audit:
        tx.executemany(_INSERT_AUDIT, audit)
    return changed


def _audit_from_row(r: Sequence[Any]) -> OptOutAuditRecord:
    return OptOutAuditRecord(
        id=int(r[0]),
        number=r[1],
        action=_ACTIONS[r[2]],
        scope=_SCOPES[r[3]],
        target=r[4],
        via=_VIAS[r[5]],
        keyword=r[6],
        lenient=bool(r[7]),
        source=r[8],
        reason=r[9],
        at=float(r[10]),
        changed=bool(r[11]),
        origin=r[12],
    )


def _entry_from_row(r: Sequence[Any]) -> OptOutEntry:
    return OptOutEntry(
        number=r[0],
        scope=_SCOPES[r[1]],
        target=r[2],
        created_at=float(r[3]),
        via=_VIAS[r[4]],
        keyword=r[5],
        source=r[6],
        reason=r[7],
    )


class SqliteOptOutStore:
    """`OptOutStore` for `SqliteMessageStore`, which inherits it and supplies `_write` (the
    batching writer) and `_read` (the read connection)."""

    if TYPE_CHECKING:

        def _write(self, op: Callable[..., T], *args: Any, rows: int = 1) -> asyncio.Future[T]: ...

        async def _read(self, sql: str, parameters: Sequence[Any]) -> list[Any]: ...

    async def change_optouts(self, changes: Sequence[OptOutChange], *, origin: str) -> list[bool]:
        if not changes:
            return []
        rows = [_change_row(change) for change in changes]
        return await self._write(change_optouts_op, rows, origin, rows=2 * len(rows))

    async def optout_scopes(
        self, *, after: tuple[str, str, str] | None = None, limit: int = 100_000
    ) -> list[tuple[str, str, str]]:
        # Plain tuples from the reader, a page at a time: the load's peak memory is one page.
        if after is None:
            return await self._read(
                "SELECT number, scope, target FROM optouts ORDER BY number, scope, target LIMIT ?",
                (limit,),
            )
        return await self._read(
            "SELECT number, scope, target FROM optouts WHERE (number, scope, target) > (?, ?, ?) "
            "ORDER BY number, scope, target LIMIT ?",
            (*after, limit),
        )

    async def optouts_of(self, number: str) -> list[tuple[str, str]]:
        rows = await self._read("SELECT scope, target FROM optouts WHERE number = ?", (number,))
        return [(r[0], r[1]) for r in rows]

    async def list_optouts(
        self,
        *,
        number: str | None = None,
        scope: OptOutScope | None = None,
        target: str | None = None,
        after: tuple[str, str, str] | None = None,
        limit: int = 100,
    ) -> list[OptOutEntry]:
        clauses: list[str] = []
        parameters: list[Any] = []
        if number is not None:
            clauses.append("number = ?")
            parameters.append(number)
        if scope is not None:
            clauses.append("scope = ?")
            parameters.append(scope.value)
        if target is not None:
            clauses.append("target = ?")
            parameters.append(target)
        if after is not None:
            clauses.append("(number, scope, target) > (?, ?, ?)")
            parameters.extend(after)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = f"SELECT {_ENTRY_COLUMNS} FROM optouts{where} ORDER BY number, scope, target LIMIT ?"
        rows = await self._read(sql, (*parameters, limit))
        return [_entry_from_row(r) for r in rows]

    async def optout_history(
        self, number: str, *, after_id: int = 0, limit: int = 100
    ) -> list[OptOutAuditRecord]:
        rows = await self._read(
            f"SELECT {_AUDIT_COLUMNS} FROM optout_audit WHERE number = ? AND id > ? "
            "ORDER BY id LIMIT ?",
            (number, after_id, limit),
        )
        return [_audit_from_row(r) for r in rows]

    async def optout_audit_since(
        self, after_id: int, *, limit: int = 10_000
    ) -> list[OptOutAuditRecord]:
        rows = await self._read(
            f"SELECT {_AUDIT_COLUMNS} FROM optout_audit WHERE id > ? ORDER BY id LIMIT ?",
            (after_id, limit),
        )
        return [_audit_from_row(r) for r in rows]

    async def last_optout_audit_id(self) -> int:
        rows = await self._read("SELECT coalesce(max(id), 0) FROM optout_audit", ())
        return int(rows[0][0])
