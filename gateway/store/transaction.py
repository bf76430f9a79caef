"""The writer's transaction (`_Tx`): the connection's execute methods, the writer's memory of
in-flight messages, and the rows gathered to write before COMMIT.

Owns the statements written at flush (message state, segment upserts and updates, history) and
`_execute`, the op of one plain statement. Never does: open, commit or roll back (the backend's
writer core does that around a batch), nor decide a status (the ops do).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol

from gateway.messages import Message, Segment
from gateway.store.rows import _HISTORY_COLUMNS, _SEGMENT_COLUMNS, _message_state, _segment_row

_UPDATE_STATE = (
    "UPDATE message_state SET status = ?, link = ?, attempts = ?, next_attempt_at = ?, "
    "last_error = ?, updated_at = ?, receipt_owed = COALESCE(?, receipt_owed) WHERE id = ?"
)


_UPSERT_SEGMENT = (
    f"INSERT INTO segments ({_SEGMENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (message_id, idx) DO UPDATE SET total = excluded.total, "
    "status = excluded.status, link = excluded.link, carrier_id = excluded.carrier_id, "
    "submitted_at = excluded.submitted_at, changed_at = excluded.changed_at, "
    "done_at = excluded.done_at, error = excluded.error, network_error = excluded.network_error"
)
_UPDATE_SEGMENT = (
    "UPDATE segments SET status = ?, changed_at = ?, done_at = ?, error = ?, network_error = ? "
    "WHERE message_id = ? AND idx = ?"
)


_INSERT_HISTORY = f"INSERT INTO history ({_HISTORY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"


class _Live:
    """A message and its segments (by index) as one op works on them: fresh objects built from
    the writer's memory (or the file), handed to the caller in the result, kept by `_keep`."""

    __slots__ = ("message", "row", "segments")

    def __init__(self, row: Sequence[Any], message: Message, segments: dict[int, Segment]) -> None:
        self.row = row  # the `_message_row` it was built from: its content is reused as is
        self.message, self.segments = message, segments


# The writer's memory of in-flight messages: id -> (`_message_row`, its `_segment_row`s). Plain
# tuples, not objects: the garbage collector stops tracking tuples of plain values, so holding
# 100,000 messages costs its full collections nothing. It mirrors the database plus the open
# transaction's pending rows; whenever a transaction rolls back it is dropped whole.
_LiveMap = dict[str, tuple[tuple[Any, ...], tuple[tuple[Any, ...], ...]]]
# (link, carrier id) -> (message id, segment index) of the latest submission seen by this writer.
_CarrierMap = dict[tuple[str, str], tuple[str, int]]


class ConstraintViolated(Exception):
    """A statement broke a UNIQUE or other constraint (what `sqlite3.IntegrityError` says for
    SQLite, raised by the PostgreSQL writer's connection), for the ops to name the conflict."""


# What the ops catch for a broken constraint, whichever engine runs them.
INTEGRITY_ERRORS = (sqlite3.IntegrityError, ConstraintViolated)


class _Result(Protocol):
    """What a statement answers (a sqlite3 cursor, or the PostgreSQL writer's result)."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class _Connection(Protocol):
    """The writer's connection as the ops see it: `sqlite3.Connection`'s two methods (a
    connection may also have `write_together`: see `_Tx.write_together`)."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> _Result: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> Any: ...


# Several executemany writes: (statement, rows) each.
Writes = list[tuple[str, Iterable[Sequence[Any]]]]


class _Tx:
    """The writer's view of the open transaction: the connection's execute methods, the
    in-memory messages, and the rows to write before COMMIT. Status updates are gathered per
    row (the last state of each message and segment wins) and written with one executemany
    per statement; `flush` writes them early for an op that is about to read with SQL."""

    __slots__ = (
        "carriers",
        "changed",
        "execute",
        "executemany",
        "finished",
        "history",
        "live",
        "states",
        "submitted",
        "together",
    )

    def __init__(self, conn: _Connection, live: _LiveMap, carriers: _CarrierMap) -> None:
        self.execute = conn.execute
        self.executemany = conn.executemany
        # A connection whose round trips cost more than its calls (PostgreSQL's) sends
        # several writes as one statement; sqlite3's runs them one after the other.
        self.together: Callable[[Writes], None] | None = getattr(conn, "write_together", None)
        self.live, self.carriers = live, carriers
        self.history: list[tuple[Any, ...]] = []
        self.states: dict[str, Message] = {}  # message_state rows to update
        self.submitted: dict[tuple[str, int], Segment] = {}  # segment rows to upsert
        self.changed: dict[tuple[str, int], Segment] = {}  # segment statuses to update
        self.finished: list[str] = []  # messages done with: forgotten after COMMIT

    def write_together(self, writes: Writes) -> None:
        """Run executemany writes that change different rows, in order (as one statement where
        the connection can)."""
        if self.together is not None:
            self.together(writes)
            return
        executemany = self.executemany
        for sql, rows in writes:
            executemany(sql, rows)

    def flush_submitted(self) -> None:
        """Write the pending segment upserts now; later changes to them become updates."""
        if self.submitted:
            self.executemany(_UPSERT_SEGMENT, [_segment_row(s) for s in self.submitted.values()])
            for key in self.submitted:
                self.changed.pop(key, None)  # the upsert carried their latest state
            self.submitted.clear()

    def flush(self) -> None:
        """Write what the transaction has gathered: the segments submitted (upserts), the
        segment and message statuses changed, the history; different rows each, so they go
        together (one statement on PostgreSQL)."""
        writes: Writes = []
        if self.submitted:
            writes.append((_UPSERT_SEGMENT, [_segment_row(s) for s in self.submitted.values()]))
            for key in self.submitted:
                self.changed.pop(key, None)  # the upsert carries their latest state
            self.submitted.clear()
        if self.changed:
            writes.append(
                (
                    _UPDATE_SEGMENT,
                    [
                        (
                            s.status._value_,
                            s.changed_at,
                            s.done_at,
                            s.error,
                            s.network_error,
                            s.message_id,
                            s.index,
                        )
                        for s in self.changed.values()
                    ],
                )
            )
            self.changed.clear()
        if self.states:
            writes.append((_UPDATE_STATE, [_message_state(m) for m in self.states.values()]))
            self.states.clear()
        if self.history:
            writes.append((_INSERT_HISTORY, self.history))
            self.history = []
        if writes:
            self.write_together(writes)


def _execute(tx: _Tx, sql: str, parameters: Sequence[Any]) -> int:
    """One statement; returns the rows it changed."""
    return int(tx.execute(sql, parameters).rowcount)
