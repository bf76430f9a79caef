"""The default `MessageStore`: one SQLite file in WAL mode, written by one batching writer.

Owns the SQLite schema and its migrations, the write path (group commit) and the read queries.
Never does: status rules (those are `dlr.status` and `dlr.aggregate`, applied here), routing, or
anything a caller could see through the interface that another backend could not do too.

Theory of operation
-------------------
Writes: every write method turns into an "op" (a module-level function of the open
transaction, with plain arguments) and a future, appended to one queue. A single writer task
takes everything queued (up to `max_batch`), has the writer run all of it in ONE transaction,
commits, and resolves each caller's future. While one batch commits the next one fills up, so
under load many callers share a commit (group commit) and the hop to the writer costs
microseconds per row. If an op raises, the batch is rolled back and replayed one op per
transaction, so one bad request cannot sink its neighbours (ops are functions of the database
and their arguments, so replaying is safe). Reads go through aiosqlite on a second connection
(WAL lets readers run beside the writer and shows them committed data only).

Where the writer runs (`writer=`): in a process of its own (the daemon's default), batches and
their results crossing a socket pair as pickles, so the writer's Python work runs on a second
CPU instead of competing with the event loop for the GIL; or on one dedicated thread of this
process, which costs nothing to start (tools, tests). The same ops run either way.

In-flight messages: the writer keeps the messages it has seen (accepted, submitted, awaiting
receipts) in memory with their segments, and an index of carrier ids, so a submit result or a
receipt is decided without reading the message back; rows the ops change (message state,
segments, history) are gathered per transaction and written with one executemany per statement
before COMMIT (the last state of each row wins). That memory mirrors the file plus the open
transaction: after any rollback it is dropped whole and rebuilt from the file on demand; messages
are forgotten once final, and beyond `live_messages` the oldest are. It holds plain row tuples
(which the garbage collector stops tracking); each op builds fresh `Message`/`Segment` objects
from them, and those are what its caller receives.

Secrets at rest: `accept` seals an OTP message's body and text into `body` (text NULL) before
the row leaves for the writer, `save_api_key` seals the callback secret; only the reads on this
side (which hold the `Sealer`) open them, so the writer, its memory and the files never see them
in clear. `secure_delete` (FAST) zeroes what a write replaces in a page, and migration 6 sealed
an older store's clear rows and rewrote the file. Files are 0600 in a 0700 directory
(`gateway.private_files`).

Durability: a caller's `await` returns after COMMIT. With `synchronous="NORMAL"` (the default) a
WAL commit is in the operating system's hands: it survives the process being killed (kill -9),
but the last transactions can be lost if the machine loses power. `synchronous="FULL"` fsyncs the
WAL on every commit and survives power loss too, at the price of one fsync per group commit.

Dialect: the SQL sticks to what PostgreSQL also accepts (ON CONFLICT upserts, partial indexes),
apart from `?` placeholders, WITHOUT ROWID and the PRAGMAs, so a PostgreSQL backend can start from
the same statements.
"""

from __future__ import annotations

import asyncio
import functools
import json
import operator
import sqlite3
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import aiosqlite

from dlr.aggregate import SegmentState, apply_segment_status
from dlr.correlation import SegmentRef
from dlr.customer_receipt import wants_receipt
from dlr.status import (
    MessageStatus,
    SegmentStatus,
    StatusEvent,
    StatusSource,
    advance,
    is_final,
    is_intermediate,
)
from gateway.messages import Channel, HistoryEntry, Message, MessageKind, Segment, Tenant
from gateway.private_files import private_dir, private_file, read_or_create_key
from gateway.stages import StageTimes, recording
from gateway.stages import now as stage_clock
from gateway.store.base import (
    ApiKeyRecord,
    DuplicateKeyName,
    DuplicateMessageId,
    IdempotencyRecord,
    MessageRecord,
    OtpChange,
    OtpRecord,
    OwedReceipt,
    PendingRef,
    QueuedMo,
    SegmentReceipt,
    StatusChange,
    StoreClosed,
    StoreError,
    StoreStats,
    SubmitResult,
)
from gateway.store.sealing import (
    KEY_BYTES,
    SEALED_TEXT_MARK,
    Sealer,
    UnsealError,
    is_sealed,
    is_sealed_text,
)
from gateway.store.writer import Op, Outcomes, ProcessWriter, ThreadWriter, WriterPlacement

Synchronous = Literal["NORMAL", "FULL"]
T = TypeVar("T")

# Messages not yet handed to a carrier: what restart resumes, and what may expire, be cancelled
# or be requeued.
_UNSENT = (MessageStatus.ACCEPTED.value, MessageStatus.QUEUED.value)
# Segments still waiting for a receipt: what the receipt timeout sweeps.
_AWAITING_RECEIPT = (
    SegmentStatus.SUBMITTED.value,
    SegmentStatus.ENROUTE.value,
    SegmentStatus.SMSC_ACCEPTED.value,
)


def _sql_list(values: Sequence[str]) -> str:
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


# Literal lists (not parameters) so the planner can use the partial indexes below: they hold
# only the rows still in play, so the status updates of finished traffic cost no index work.
_UNSENT_SQL = _sql_list(_UNSENT)
_AWAITING_RECEIPT_SQL = _sql_list(_AWAITING_RECEIPT)

_MIGRATIONS: tuple[str, ...] = (
    # 1: messages, their segments (with the carrier-id correlation index) and history.
    # A message is two rows: `message_content` (what the customer sent and how it is routed,
    # written once) and `message_state` (what changes while it is in flight), so submit
    # results, retries and receipts rewrite a short row, never the one holding the body. The
    # `messages` view joins them back into one row per message for readers.
    # A history row is one event; when a segment's event also moved the message (the
    # aggregate), `message_status` says to what, instead of a second row (same time, detail).
    f"""
    CREATE TABLE message_content (
        id TEXT PRIMARY KEY,
        account TEXT NOT NULL,
        channel TEXT NOT NULL,
        source_addr TEXT NOT NULL,
        source_ton INTEGER NOT NULL,
        source_npi INTEGER NOT NULL,
        destination TEXT NOT NULL,
        kind TEXT NOT NULL,
        priority INTEGER NOT NULL,
        data_coding INTEGER NOT NULL,
        body BLOB NOT NULL,
        text TEXT,
        esm_class INTEGER NOT NULL,
        registered_delivery INTEGER NOT NULL,
        validity_at REAL,
        send_at REAL,
        route TEXT,
        targets TEXT NOT NULL,
        strategy TEXT,
        callback_url TEXT,
        reference TEXT,
        created_at REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE message_state (
        id TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        link TEXT,
        attempts INTEGER NOT NULL,
        next_attempt_at REAL,
        last_error TEXT,
        updated_at REAL NOT NULL,
        validity_at REAL
    ) WITHOUT ROWID;
    CREATE INDEX message_state_unsent ON message_state (validity_at)
        WHERE status IN {_UNSENT_SQL};
    CREATE VIEW messages AS SELECT
        c.id, c.account, c.channel, c.source_addr, c.source_ton, c.source_npi, c.destination,
        c.kind, c.priority, c.data_coding, c.body, c.text, c.esm_class, c.registered_delivery,
        c.validity_at, c.send_at, c.route, c.targets, c.strategy, s.link, s.status, s.attempts,
        s.next_attempt_at, s.last_error, c.callback_url, c.reference, c.created_at, s.updated_at
        FROM message_content c JOIN message_state s ON s.id = c.id;
    CREATE TABLE segments (
        message_id TEXT NOT NULL,
        idx INTEGER NOT NULL,
        total INTEGER NOT NULL,
        status TEXT NOT NULL,
        link TEXT,
        carrier_id TEXT,
        submitted_at REAL,
        changed_at REAL,
        done_at REAL,
        error TEXT,
        network_error TEXT,
        PRIMARY KEY (message_id, idx)
    ) WITHOUT ROWID;
    CREATE INDEX segments_by_carrier_id ON segments (link, carrier_id, submitted_at)
        WHERE carrier_id IS NOT NULL;
    CREATE INDEX segments_awaiting_receipt ON segments (submitted_at)
        WHERE status IN {_AWAITING_RECEIPT_SQL};
    CREATE TABLE history (
        id INTEGER PRIMARY KEY,
        message_id TEXT NOT NULL,
        segment_index INTEGER,
        at REAL NOT NULL,
        status TEXT NOT NULL,
        source TEXT NOT NULL,
        detail TEXT NOT NULL,
        changed INTEGER NOT NULL,
        message_status TEXT
    );
    CREATE INDEX history_by_message ON history (message_id, id);
    """,
    # 2: HTTP API state: API keys (hashes only), idempotency answers, OTP verifications.
    """
    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        key_hash TEXT NOT NULL UNIQUE,
        prefix TEXT NOT NULL,
        scopes TEXT NOT NULL,
        senders TEXT,
        countries TEXT,
        requests_per_second REAL,
        messages_per_second REAL,
        callback_url TEXT,
        callback_secret TEXT NOT NULL,
        created_at REAL NOT NULL,
        revoked_at REAL
    ) WITHOUT ROWID;
    CREATE TABLE idempotency (
        key_id TEXT NOT NULL,
        idempotency_key TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        status INTEGER NOT NULL,
        body BLOB NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (key_id, idempotency_key)
    ) WITHOUT ROWID;
    CREATE INDEX idempotency_by_age ON idempotency (created_at);
    CREATE TABLE otp (
        id TEXT PRIMARY KEY,
        key_id TEXT NOT NULL,
        destination TEXT NOT NULL,
        status TEXT NOT NULL,
        code_hash TEXT NOT NULL,
        code_length INTEGER NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        max_checks INTEGER NOT NULL,
        checks INTEGER NOT NULL,
        sends INTEGER NOT NULL,
        message_id TEXT,
        updated_at REAL NOT NULL
    ) WITHOUT ROWID;
    """,
    # 3: what SMPP customers are owed. `receipt_owed` is the status a receipt is owed for, set
    # by the status update that makes it owed (same transaction) and cleared when the customer
    # took it; `mo_outbox` keeps MOs (and parts held for reassembly) until a bind takes them.
    """
    ALTER TABLE message_state ADD COLUMN receipt_owed TEXT;
    CREATE INDEX message_state_receipt_owed ON message_state (updated_at)
        WHERE receipt_owed IS NOT NULL;
    CREATE TABLE mo_outbox (
        id INTEGER PRIMARY KEY,
        account TEXT NOT NULL,
        pdu BLOB NOT NULL,
        received_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        part_of TEXT
    );
    CREATE INDEX mo_outbox_parts ON mo_outbox (part_of) WHERE part_of IS NOT NULL;
    """,
    # 4: messages by reference within an account (a submit_multi's destinations; an HTTP
    # customer's own references).
    """
    CREATE INDEX message_content_reference ON message_content (account, reference)
        WHERE reference IS NOT NULL;
    """,
    # 5: a message belongs to a tenant, its channel and account together (an HTTP key and an
    # SMPP account may share a name): references are looked up within one tenant. Existing
    # rows already carry both; only the index changes.
    """
    DROP INDEX message_content_reference;
    CREATE INDEX message_content_reference ON message_content (channel, account, reference)
        WHERE reference IS NOT NULL;
    """,
    # 6: OTP message content and callback secrets sealed at rest (`_seal_clear_rows`).
    "seal",
)

_MESSAGE_COLUMNS = (
    "id, account, channel, source_addr, source_ton, source_npi, destination, kind, priority, "
    "data_coding, body, text, esm_class, registered_delivery, validity_at, send_at, route, "
    "targets, strategy, link, status, attempts, next_attempt_at, last_error, callback_url, "
    "reference, created_at, updated_at"
)
_SEGMENT_COLUMNS = (
    "message_id, idx, total, status, link, carrier_id, submitted_at, changed_at, done_at, "
    "error, network_error"
)
_HISTORY_COLUMNS = "message_id, segment_index, at, status, source, detail, changed, message_status"

# A `_message_row` (the `messages` view's columns) split into its two tables' rows.
_CONTENT_ROW = operator.itemgetter(*range(19), 24, 25, 26)
_STATE_ROW = operator.itemgetter(0, 20, 19, 21, 22, 23, 27, 14)
_INSERT_CONTENT = (
    "INSERT INTO message_content (id, account, channel, source_addr, source_ton, source_npi, "
    "destination, kind, priority, data_coding, body, text, esm_class, registered_delivery, "
    "validity_at, send_at, route, targets, strategy, callback_url, reference, created_at) "
    f"VALUES ({', '.join('?' * 22)})"
)
_INSERT_STATE = (
    "INSERT INTO message_state (id, status, link, attempts, next_attempt_at, last_error, "
    "updated_at, validity_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_UPDATE_STATE = (
    "UPDATE message_state SET status = ?, link = ?, attempts = ?, next_attempt_at = ?, "
    "last_error = ?, updated_at = ?, receipt_owed = COALESCE(?, receipt_owed) WHERE id = ?"
)
_SELECT_MESSAGE = f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id = ?"
_PENDING_REFS = (
    "SELECT s.id, c.priority, c.route, CASE WHEN instr(c.targets, json_quote(s.link)) > 0 "
    "THEN s.link ELSE json_extract(c.targets, '$[0]') END FROM message_state s "
    f"JOIN message_content c ON c.id = s.id WHERE s.status IN {_UNSENT_SQL} "
    "AND coalesce(c.send_at, 0) <= ? AND coalesce(s.next_attempt_at, 0) <= ? ORDER BY s.id"
)
_IDS_PER_QUERY = 500
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
_SELECT_SEGMENTS = f"SELECT {_SEGMENT_COLUMNS} FROM segments WHERE message_id = ? ORDER BY idx"
_FIND_SEGMENT = (
    "SELECT message_id, idx FROM segments WHERE link = ? AND carrier_id = ? "
    "ORDER BY submitted_at DESC LIMIT 1"
)
_MESSAGE_WIDTH = len(_MESSAGE_COLUMNS.split(","))
_SELECT_MESSAGE_WITH_SEGMENTS = (
    "SELECT "
    + ", ".join(f"m.{c.strip()}" for c in _MESSAGE_COLUMNS.split(","))
    + ", "
    + ", ".join(f"s.{c.strip()}" for c in _SEGMENT_COLUMNS.split(","))
    + " FROM messages m LEFT JOIN segments s ON s.message_id = m.id WHERE m.id = ?"
)
# Oldest change first; the segment count for the receipt's `sub:`/submitted count.
_SELECT_OWED_RECEIPTS = (
    "SELECT "
    + ", ".join(f"m.{c.strip()}" for c in _MESSAGE_COLUMNS.split(","))
    + ", s.receipt_owed, (SELECT COUNT(*) FROM segments g WHERE g.message_id = s.id)"
    + " FROM message_state s JOIN messages m ON m.id = s.id"
    + " WHERE s.receipt_owed IS NOT NULL AND s.updated_at >= ? AND (? IS NULL OR m.channel = ?)"
    + " AND (? IS NULL OR m.account = ?) AND (? IS NULL OR (s.updated_at, s.id) > (?, ?))"
    + " ORDER BY s.updated_at, s.id LIMIT ?"
)
_INSERT_HISTORY = f"INSERT INTO history ({_HISTORY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"


_OTP_KIND = MessageKind.OTP.value

# Stored text back to enums: dict lookups, several times cheaper than calling the enum class.
_CHANNELS = {c.value: c for c in Channel}
_KINDS = {k.value: k for k in MessageKind}
_MESSAGE_STATUSES = {s.value: s for s in MessageStatus}
_SEGMENT_STATUSES = {s.value: s for s in SegmentStatus}


# A message's targets (link names from the route) are written and read back at every event
# of its life; the few distinct lists a configuration yields are remembered as text and tuple.
_TARGET_TEXTS: dict[tuple[str, ...], str] = {}
_TARGET_LISTS: dict[str, tuple[str, ...]] = {}
_TARGETS_REMEMBERED = 1024


def _targets_text(targets: list[str]) -> str:
    if not targets:
        return "[]"
    key = tuple(targets)
    text = _TARGET_TEXTS.get(key)
    if text is None:
        text = json.dumps(targets)
        if len(_TARGET_TEXTS) < _TARGETS_REMEMBERED:
            _TARGET_TEXTS[key] = text
    return text


def _targets_of(text: str) -> list[str]:
    if text == "[]":
        return []
    found = _TARGET_LISTS.get(text)
    if found is None:
        found = tuple(json.loads(text))
        if len(_TARGET_LISTS) < _TARGETS_REMEMBERED:
            _TARGET_LISTS[text] = found
    return list(found)  # each message gets its own list: callers may change theirs


# Rows carry enum members' `_value_` (a plain attribute, the stored text): three times cheaper
# than the `.value` property on the hot path, and plain str binds faster than a str subclass.
def _message_row(m: Message) -> tuple[Any, ...]:
    return (
        m.id,
        m.account,
        m.channel._value_,
        m.source_addr,
        m.source_ton,
        m.source_npi,
        m.destination,
        m.kind._value_,
        m.priority,
        m.data_coding,
        m.body,
        m.text,
        m.esm_class,
        m.registered_delivery,
        m.validity_at,
        m.send_at,
        m.route,
        _targets_text(m.targets),
        m.strategy,
        m.link,
        m.status._value_,
        m.attempts,
        m.next_attempt_at,
        m.last_error,
        m.callback_url,
        m.reference,
        m.created_at,
        m.updated_at,
    )


def _seal_content(row: tuple[Any, ...], sealer: Sealer) -> tuple[Any, ...]:
    """An OTP message's row as stored: its body and text (the code) sealed in `body`."""
    content = json.dumps([bytes(row[10]).hex(), row[11]]).encode()
    return (*row[:10], sealer.seal(content, _message_context(row[0])), None, *row[12:])


def _message_context(message_id: str) -> str:
    return "message:" + message_id


def _message_from_row(r: Sequence[Any], sealer: Sealer | None = None) -> Message:
    """The message of a stored row. A sealed OTP message's content is opened with `sealer`;
    without one (the writer never has it) its body is empty and its text None, as after the
    message was redacted: nothing downstream of the writer needs it."""
    body, text = r[10], r[11]
    if body[:1] == b"\x00" and is_sealed(body):
        body, text = b"", None
        if sealer is not None:
            body_hex, text = json.loads(sealer.open(r[10], _message_context(r[0])))
            body = bytes.fromhex(body_hex)
    return Message(
        id=r[0],
        account=r[1],
        channel=_CHANNELS[r[2]],
        source_addr=r[3],
        source_ton=r[4],
        source_npi=r[5],
        destination=r[6],
        kind=_KINDS[r[7]],
        priority=r[8],
        data_coding=r[9],
        body=bytes(body),
        text=text,
        esm_class=r[12],
        registered_delivery=r[13],
        validity_at=r[14],
        send_at=r[15],
        route=r[16],
        targets=_targets_of(r[17]),
        strategy=r[18],
        link=r[19],
        status=_MESSAGE_STATUSES[r[20]],
        attempts=r[21],
        next_attempt_at=r[22],
        last_error=r[23],
        callback_url=r[24],
        reference=r[25],
        created_at=r[26],
        updated_at=r[27],
    )


def _segment_row(s: Segment) -> tuple[Any, ...]:
    return (
        s.message_id,
        s.index,
        s.total,
        s.status._value_,
        s.link,
        s.carrier_id,
        s.submitted_at,
        s.changed_at,
        s.done_at,
        s.error,
        s.network_error,
    )


def _segment_from_row(r: Sequence[Any]) -> Segment:
    return Segment(
        message_id=r[0],
        index=r[1],
        total=r[2],
        status=_SEGMENT_STATUSES[r[3]],
        link=r[4],
        carrier_id=r[5],
        submitted_at=r[6],
        changed_at=r[7],
        done_at=r[8],
        error=r[9],
        network_error=r[10],
    )


def _history_row(
    message_id: str, event: StatusEvent, segment_index: int | None = None
) -> tuple[Any, ...]:
    return (
        message_id,
        segment_index,
        event.at,
        event.status._value_,
        event.source._value_,
        event.detail,
        int(event.changed),
        None,
    )


def _history_entries(r: Sequence[Any]) -> list[HistoryEntry]:
    """One stored history row as the events it records: a segment's event that moved the
    message carries the message's new status too (the aggregate, same time and detail)."""
    status: MessageStatus | SegmentStatus = (
        _MESSAGE_STATUSES[r[3]] if r[1] is None else _SEGMENT_STATUSES[r[3]]
    )
    event = StatusEvent(
        at=r[2], status=status, source=StatusSource(r[4]), detail=r[5], changed=bool(r[6])
    )
    entries = [HistoryEntry(message_id=r[0], event=event, segment_index=r[1])]
    if r[7] is not None:
        aggregate = StatusEvent(r[2], _MESSAGE_STATUSES[r[7]], StatusSource.AGGREGATE, r[5], True)
        entries.append(HistoryEntry(message_id=r[0], event=aggregate))
    return entries


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
    )

    def __init__(self, conn: sqlite3.Connection, live: _LiveMap, carriers: _CarrierMap) -> None:
        self.execute = conn.execute
        self.executemany = conn.executemany
        self.live, self.carriers = live, carriers
        self.history: list[tuple[Any, ...]] = []
        self.states: dict[str, Message] = {}  # message_state rows to update
        self.submitted: dict[tuple[str, int], Segment] = {}  # segment rows to upsert
        self.changed: dict[tuple[str, int], Segment] = {}  # segment statuses to update
        self.finished: list[str] = []  # messages done with: forgotten after COMMIT

    def flush_submitted(self) -> None:
        """Write the pending segment upserts now; later changes to them become updates."""
        if self.submitted:
            self.executemany(_UPSERT_SEGMENT, [_segment_row(s) for s in self.submitted.values()])
            for key in self.submitted:
                self.changed.pop(key, None)  # the upsert carried their latest state
            self.submitted.clear()

    def flush(self) -> None:
        self.flush_submitted()
        if self.changed:
            self.executemany(
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
        if self.states:
            self.executemany(_UPDATE_STATE, [_message_state(m) for m in self.states.values()])
        if self.history:
            self.executemany(_INSERT_HISTORY, self.history)
        self.changed.clear()
        self.states.clear()
        self.history.clear()


# --- the writer: the op of `accept` and the transaction runner (where it runs: store.writer) ----


def _insert_messages(tx: _Tx, rows: list[tuple[Any, ...]], history: list[tuple[Any, ...]]) -> None:
    """The op of `accept`. Consecutive ones in a batch share one executemany."""
    try:
        tx.executemany(_INSERT_CONTENT, map(_CONTENT_ROW, rows))
    except sqlite3.IntegrityError as exc:
        raise DuplicateMessageId(str(exc)) from exc
    tx.executemany(_INSERT_STATE, map(_STATE_ROW, rows))
    tx.history.extend(history)
    live = tx.live
    for row in rows:
        live[row[0]] = (row, ())


class _WriterCore:
    """The writer connection and its memory of in-flight messages; runs batches of ops.

    Lives wherever the writer runs (the writer thread or the writer process) and is touched
    there only."""

    def __init__(
        self, path: Path, synchronous: Synchronous, live_messages: int, seal_key: bytes
    ) -> None:
        self.path, self.synchronous, self.live_messages = path, synchronous, live_messages
        self.seal_key = seal_key  # for migrations that seal what older versions kept in clear
        self.live: _LiveMap = {}
        self.carriers: _CarrierMap = {}
        self.conn: sqlite3.Connection | None = None

    def open(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        conn.execute("PRAGMA busy_timeout = 5000")
        # 256 MiB of page cache plus a memory map of the file: the tables and indexes that
        # in-flight traffic touches stay resident well past 100,000 messages.
        conn.execute("PRAGMA cache_size = -262144")
        conn.execute("PRAGMA mmap_size = 1073741824")
        conn.execute("PRAGMA temp_store = MEMORY")
        # What a write removes or replaces in a page is zeroed, not left in its free space
        # (FAST: only where the page is written anyway, so it costs no I/O).
        conn.execute("PRAGMA secure_delete = FAST")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        wipe = False
        for number, script in enumerate(_MIGRATIONS[version:], start=version + 1):
            conn.execute("BEGIN IMMEDIATE")
            try:
                if script == "seal":
                    wipe = _seal_clear_rows(conn, Sealer(self.seal_key))
                else:
                    for statement in script.split(";"):
                        if statement.strip():
                            conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        if wipe:
            # The clear values are still in free pages and in the WAL's older frames: rewrite
            # the file, and empty the WAL.
            conn.execute("VACUUM")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.conn = conn

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def run_batch(self, batch: list[Op]) -> Outcomes:
        """The whole batch in one transaction, or op by op if one fails.

        Returns each op's (ok, result or exception) and the number of commits made.
        """
        conn = self.conn
        if conn is None:
            raise StoreClosed(f"store {self.path} is not open")
        tx = _Tx(conn, self.live, self.carriers)
        conn.execute("BEGIN IMMEDIATE")
        try:
            results: list[tuple[bool, Any]] = []
            start = 0
            while start < len(batch):
                op, args = batch[start]
                if op is not _insert_messages:
                    results.append((True, op(tx, *args)))
                    start += 1
                    continue
                end = start
                rows: list[tuple[Any, ...]] = []
                history: list[tuple[Any, ...]] = []
                while end < len(batch) and batch[end][0] is _insert_messages:
                    rows += batch[end][1][0]
                    history += batch[end][1][1]
                    end += 1
                _insert_messages(tx, rows, history)
                results += [(True, None)] * (end - start)
                start = end
            tx.flush()
            conn.execute("COMMIT")
            self._forget(tx.finished)
            return results, 1
        except Exception:
            self.live.clear()  # it holds what the rolled-back ops did
            self.carriers.clear()
            if conn.in_transaction:  # some errors (disk full) end the transaction themselves
                conn.execute("ROLLBACK")
            if len(batch) == 1:
                raise
        outcomes: list[tuple[bool, Any]] = []
        commits = 0
        for op, args in batch:
            tx = _Tx(conn, self.live, self.carriers)
            conn.execute("BEGIN IMMEDIATE")
            try:
                value = op(tx, *args)
                tx.flush()
                conn.execute("COMMIT")
            except Exception as exc:
                self.live.clear()
                self.carriers.clear()
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                outcomes.append((False, exc))
            else:
                commits += 1
                self._forget(tx.finished)
                outcomes.append((True, value))
        return outcomes, commits

    def _forget(self, finished: list[str]) -> None:
        """After COMMIT: drop finished messages, and the oldest ones beyond `live_messages`."""
        live = self.live
        for message_id in finished:
            self._forget_one(message_id, live.pop(message_id, None))
        while len(live) > self.live_messages:
            message_id = next(iter(live))
            self._forget_one(message_id, live.pop(message_id))

    def _forget_one(
        self, message_id: str, entry: tuple[tuple[Any, ...], tuple[tuple[Any, ...], ...]] | None
    ) -> None:
        if entry is None:
            return
        for segment_row in entry[1]:
            key = (segment_row[4] or "", segment_row[5] or "")
            if self.carriers.get(key) == (message_id, segment_row[1]):
                del self.carriers[key]


@dataclass(slots=True)
class _WriteRequest:
    op: Callable[..., Any]
    args: tuple[Any, ...]
    rows: int
    future: asyncio.Future[Any]
    queued_at: float = 0.0  # when stage times are recorded (gateway.stages)


class SqliteMessageStore:
    """`MessageStore` on one SQLite file; see the module docstring for how writes are batched.

    `writer`: where the writer runs. "process" (the daemon's default) gives it a CPU of its
    own; "thread" keeps it in this process (cheaper to start: tools and tests).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: Synchronous = "NORMAL",
        max_batch: int = 2000,
        live_messages: int = 100_000,
        writer: WriterPlacement = "thread",
        key_file: str | Path | None = None,
    ) -> None:
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be NORMAL or FULL, not {synchronous!r}")
        if writer not in ("thread", "process"):
            raise ValueError(f"writer must be thread or process, not {writer!r}")
        self.path = Path(path)
        # The key that seals OTP message content and callback secrets (gateway.store.sealing);
        # the daemon's is `<data_dir>/store.key` (`TandemConfig.store_key_path`).
        self.key_file = Path(key_file) if key_file is not None else self.path.parent / "store.key"
        self._sealer: Sealer | None = None
        self.synchronous = synchronous
        self.max_batch = max_batch
        # In-flight messages the writer keeps in memory (oldest forgotten first); more are
        # read back from the database when their next event comes.
        self.live_messages = live_messages
        self.writer_placement: WriterPlacement = writer
        self._pending: deque[_WriteRequest] = deque()
        self._wakeup = asyncio.Event()
        self._writer_task: asyncio.Task[None] | None = None
        self._writer: ThreadWriter | ProcessWriter | None = None
        self._reader: aiosqlite.Connection | None = None
        self._read_lock = asyncio.Lock()  # get() runs three queries in one read transaction
        self._open = False
        self._commits = 0
        self._operations = 0
        self._rows = 0
        self._failed = 0
        self._largest_batch = 0

    # --- lifecycle ----------------------------------------------------------------------------
    async def open(self) -> None:
        # 0700 and 0600 whatever the umask (the file holds messages, sealed secrets, OTP
        # state). SQLite gives the -wal and -shm files it creates the database file's mode.
        try:
            private_dir(self.path.parent)
            private_file(self.path, create=True)
            for suffix in ("-wal", "-shm", "-journal"):
                private_file(self.path.with_name(self.path.name + suffix))
        except OSError as exc:
            raise StoreError(f"cannot open the store {self.path}: {exc}") from exc
        try:
            key = read_or_create_key(self.key_file, KEY_BYTES)
            self._sealer = Sealer(key)
        except (OSError, ValueError) as exc:
            raise StoreError(f"cannot use the store key {self.key_file}: {exc}") from exc
        core = _WriterCore(self.path, self.synchronous, self.live_messages, key)
        writer = ProcessWriter(core) if self.writer_placement == "process" else ThreadWriter(core)
        try:
            await writer.start()  # creates or migrates the schema before the reader looks
        except (sqlite3.Error, OSError) as exc:  # a damaged file, a full or read-only disk
            raise StoreError(f"cannot open the store {self.path}: {exc}") from exc
        self._writer = writer
        try:
            self._reader = await aiosqlite.connect(self.path, isolation_level=None)
            await self._reader.execute("PRAGMA busy_timeout = 5000")
            await self._reader.execute("PRAGMA query_only = 1")
            await self._check_key()
        except BaseException:
            if self._reader is not None:
                await self._reader.close()
                self._reader = None
            await writer.stop()
            self._writer = None
            raise
        self._open = True
        self._writer_task = asyncio.create_task(self._write_loop(), name="store-writer")

    async def _check_key(self) -> None:
        """Refuse to start with a key file that is not the one the sealed values were made
        with (a database restored without its key): say so now, not at the first read."""
        assert self._reader is not None and self._sealer is not None
        rows = await self._reader.execute_fetchall(
            "SELECT id, callback_secret FROM api_keys WHERE callback_secret LIKE ? LIMIT 1",
            (SEALED_TEXT_MARK + "%",),
        )
        for key_id, sealed in rows:
            try:
                self._sealer.open_text(sealed, _api_key_context(key_id))
            except UnsealError:
                raise StoreError(
                    f"the store key {self.key_file} does not open what {self.path} holds "
                    "sealed: put back the key file that was beside this database"
                ) from None

    async def close(self) -> None:
        if not self._open:
            return
        self._open = False  # refuse new writes; the writer drains what is queued, then ends
        self._wakeup.set()
        if self._writer_task is not None:
            await self._writer_task
        if self._writer is not None:
            await self._writer.stop()
        if self._reader is not None:
            await self._reader.close()
        self._reader = self._writer = self._writer_task = None

    @property
    def writer_pid(self) -> int | None:
        """The writer process's pid (None: the writer is a thread, or the store is closed)."""
        writer = self._writer
        if isinstance(writer, ProcessWriter) and writer.process is not None:
            return writer.process.pid
        return None

    def stats(self) -> StoreStats:
        return StoreStats(
            commits=self._commits,
            operations=self._operations,
            rows=self._rows,
            failed_operations=self._failed,
            largest_batch=self._largest_batch,
            queued=len(self._pending),
        )

    # --- the batching writer ------------------------------------------------------------------
    def _write(self, op: Callable[..., T], *args: Any, rows: int = 1) -> asyncio.Future[T]:
        """Queue `op(tx, *args)` for the writer; the future resolves after its COMMIT."""
        if not self._open:
            raise StoreClosed(f"store {self.path} is not open")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        request = _WriteRequest(op, args, rows, future)
        if recording() is not None:
            request.queued_at = stage_clock()
        self._pending.append(request)
        self._wakeup.set()
        return future

    async def _write_loop(self) -> None:
        writer = self._writer
        assert writer is not None
        out: deque[asyncio.Future[Any]] = deque()  # batches the writer has not answered yet
        while True:
            if not self._pending:
                if not self._open:
                    break
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            while len(out) >= writer.depth:
                await asyncio.wait((out.popleft(),))
            count = min(len(self._pending), self.max_batch)
            batch = [self._pending.popleft() for _ in range(count)]
            answer = writer.run([(r.op, r.args) for r in batch])
            stages = recording()
            if stages is not None:
                sent = stage_clock()
                for request in batch:
                    if request.queued_at:
                        stages.observe("store_queue", sent - request.queued_at)
                answer.add_done_callback(functools.partial(_time_batch, stages, sent))
            answer.add_done_callback(functools.partial(self._settle, batch))
            out.append(answer)
        if out:
            await asyncio.wait(out)

    def _settle(self, batch: list[_WriteRequest], answer: asyncio.Future[Any]) -> None:
        """Hand each request of an answered batch its result or its error."""
        error = answer.exception()
        if error is not None:  # the commit itself failed (disk full, I/O error)
            self._failed += len(batch)
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(error)
            return
        outcomes, commits = answer.result()
        self._commits += commits
        self._largest_batch = max(self._largest_batch, len(batch))
        for request, (ok, value) in zip(batch, outcomes):
            if ok:
                self._operations += 1
                self._rows += request.rows
            else:
                self._failed += 1
            if request.future.done():  # the caller stopped waiting; the write stands
                continue
            if ok:
                request.future.set_result(value)
            else:
                request.future.set_exception(value)

    # --- intake -------------------------------------------------------------------------------
    async def accept(
        self, messages: Sequence[Message], *, source: StatusSource = StatusSource.INTAKE
    ) -> None:
        if not messages:
            return
        rows = [_message_row(m) for m in messages]
        sealer = self._sealer
        if sealer is not None:  # an OTP's code never reaches the file (or the writer) in clear
            rows = [_seal_content(row, sealer) if row[7] == _OTP_KIND else row for row in rows]
        history = [
            _history_row(m.id, StatusEvent(m.created_at, m.status, source)) for m in messages
        ]
        await self._write(_insert_messages, rows, history, rows=len(rows))

    async def cancel(self, message_id: str, *, at: float, source: StatusSource) -> StatusChange:
        return await self._write(
            _finish_unsent, message_id, MessageStatus.DELETED, at, source, "cancelled"
        )

    # --- sending ------------------------------------------------------------------------------
    async def mark_submitted(
        self,
        message_id: str,
        segments: Sequence[Segment],
        *,
        link: str,
        at: float,
        source: StatusSource,
    ) -> StatusChange:
        if not segments:
            raise ValueError("mark_submitted needs at least one segment")
        return await self._write(
            _mark_submitted, message_id, list(segments), link, at, source, rows=len(segments)
        )

    async def mark_submitted_many(self, results: Sequence[SubmitResult]) -> list[StatusChange]:
        if not results:
            return []
        if any(not r.segments for r in results):
            raise ValueError("mark_submitted needs at least one segment")
        # As they are now: the op runs later, on the writer's side.
        rows = [(r.message_id, r.segments, r.link, r.at, r.source) for r in results]
        return await self._write(
            _mark_submitted_many, rows, rows=sum(len(r.segments) for r in results)
        )

    async def record_link_outcomes(
        self, outcomes: Sequence[SubmitResult | SegmentReceipt]
    ) -> list[StatusChange]:
        if not outcomes:
            return []
        rows: list[_OutcomeRow] = []
        count = 0
        for outcome in outcomes:
            if isinstance(outcome, SubmitResult):
                if not outcome.segments:
                    raise ValueError("mark_submitted needs at least one segment")
                rows.append(
                    (outcome.message_id, outcome.segments, outcome.link, outcome.at, outcome.source)
                )
                count += len(outcome.segments)
            else:
                rows.append(_receipt_row(outcome))
                count += 1
        return await self._write(_record_link_outcomes, rows, rows=count)

    async def requeue(
        self,
        message_id: str,
        *,
        next_attempt_at: float,
        error: str,
        at: float,
        source: StatusSource,
    ) -> StatusChange:
        return await self._write(_requeue, message_id, next_attempt_at, error, at, source)

    async def fail(
        self,
        message_id: str,
        status: MessageStatus,
        *,
        error: str | None,
        at: float,
        source: StatusSource,
        count_attempt: bool = True,
    ) -> StatusChange:
        if not is_final(status):
            raise ValueError(f"fail() needs a final status, not {status.value}")
        return await self._write(_fail, message_id, status, error, at, source, count_attempt)

    async def expire_due(self, now: float, *, source: StatusSource, limit: int = 1000) -> list[str]:
        return await self._write(_expire_due, now, source, limit)

    # --- receipts -----------------------------------------------------------------------------
    async def apply_segment_status(
        self,
        link: str,
        carrier_id: str,
        status: SegmentStatus,
        *,
        at: float,
        source: StatusSource,
        detail: str = "",
        error: str | None = None,
        network_error: str | None = None,
    ) -> StatusChange:
        receipt = (link, carrier_id, status, at, source, detail, error, network_error)
        changes = await self._write(_apply_segment_statuses, [receipt])
        return changes[0]

    async def apply_segment_statuses(
        self, receipts: Sequence[SegmentReceipt]
    ) -> list[StatusChange]:
        if not receipts:
            return []
        rows = [_receipt_row(r) for r in receipts]
        return await self._write(_apply_segment_statuses, rows, rows=len(rows))

    async def set_segment_status(
        self,
        message_id: str,
        segment_index: int,
        status: SegmentStatus,
        *,
        at: float,
        source: StatusSource,
        detail: str = "",
        error: str | None = None,
        network_error: str | None = None,
    ) -> StatusChange:
        return await self._write(
            _set_segment_status,
            message_id,
            segment_index,
            status,
            at,
            source,
            detail,
            error,
            network_error,
        )

    async def find_segment(self, link: str, carrier_id: str) -> SegmentRef | None:
        rows = await self._read(_FIND_SEGMENT, (link, carrier_id))
        return SegmentRef(rows[0][0], rows[0][1]) if rows else None

    async def list_submitted_older_than(self, cutoff: float, *, limit: int = 1000) -> list[Segment]:
        rows = await self._read(
            f"SELECT {_SEGMENT_COLUMNS} FROM segments WHERE status IN {_AWAITING_RECEIPT_SQL} "
            "AND submitted_at < ? ORDER BY submitted_at LIMIT ?",
            (cutoff, limit),
        )
        return [_segment_from_row(r) for r in rows]

    # --- reading and history ------------------------------------------------------------------
    async def _read(self, sql: str, parameters: Sequence[Any]) -> list[Any]:
        if self._reader is None:
            raise StoreClosed(f"store {self.path} is not open")
        return list(await self._reader.execute_fetchall(sql, parameters))

    async def get(self, message_id: str) -> MessageRecord | None:
        reader = self._reader
        if reader is None:
            raise StoreClosed(f"store {self.path} is not open")
        async with self._read_lock:
            await reader.execute("BEGIN")  # one snapshot for the three queries
            try:
                message_rows = list(await reader.execute_fetchall(_SELECT_MESSAGE, (message_id,)))
                segment_rows = await reader.execute_fetchall(_SELECT_SEGMENTS, (message_id,))
                history_rows = await reader.execute_fetchall(
                    f"SELECT {_HISTORY_COLUMNS} FROM history WHERE message_id = ? ORDER BY id",
                    (message_id,),
                )
            finally:
                await reader.execute("COMMIT")
        if not message_rows:
            return None
        return MessageRecord(
            message=_message_from_row(message_rows[0], self._sealer),
            segments=[_segment_from_row(r) for r in segment_rows],
            history=[entry for r in history_rows for entry in _history_entries(r)],
        )

    async def load_pending(self) -> list[Message]:
        rows = await self._read(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE status IN {_UNSENT_SQL} "
            "ORDER BY priority, id",
            (),
        )
        return [_message_from_row(r, self._sealer) for r in rows]

    async def pending_refs(
        self, due_by: float, *, page: int = 10_000
    ) -> AsyncIterator[list[PendingRef]]:
        reader = self._reader
        if reader is None:
            raise StoreClosed(f"store {self.path} is not open")
        # Walks message_state in key order (no sort of the whole backlog), one cursor; the rows
        # are the references as they are.
        async with reader.execute(_PENDING_REFS, (due_by, due_by)) as cursor:
            while rows := await cursor.fetchmany(page):
                yield rows  # type: ignore[misc]

    async def load_scheduled(self, after: float) -> list[Message]:
        rows = await self._read(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE status IN {_UNSENT_SQL} "
            "AND (coalesce(send_at, 0) > ? OR coalesce(next_attempt_at, 0) > ?) "
            "ORDER BY priority, id",
            (after, after),
        )
        return [_message_from_row(r, self._sealer) for r in rows]

    async def load_waiting(self, message_ids: Sequence[str]) -> list[Message]:
        found: list[Message] = []
        for start in range(0, len(message_ids), _IDS_PER_QUERY):
            chunk = message_ids[start : start + _IDS_PER_QUERY]
            marks = ", ".join("?" * len(chunk))
            rows = await self._read(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id IN ({marks}) "
                f"AND status IN {_UNSENT_SQL}",
                chunk,
            )
            found.extend(_message_from_row(r, self._sealer) for r in rows)
        return found

    async def record_history(
        self,
        message_id: str,
        *,
        status: MessageStatus | SegmentStatus,
        source: StatusSource,
        at: float,
        detail: str = "",
        segment_index: int | None = None,
    ) -> None:
        event = StatusEvent(at, status, source, detail, changed=False)
        await self._write(_record, message_id, event, segment_index)

    # --- HTTP API state: API keys, idempotency records, OTP verifications ---------------------
    async def save_api_key(self, key: ApiKeyRecord) -> None:
        row = (
            key.id,
            key.name,
            key.key_hash,
            key.prefix,
            ",".join(key.scopes),
            key.senders,
            None if key.countries is None else ",".join(key.countries),
            key.requests_per_second,
            key.messages_per_second,
            key.callback_url,
            self._seal_secret(key.callback_secret, key.id),
            key.created_at,
            key.revoked_at,
        )
        await self._write(_insert_api_key, row)

    def _seal_secret(self, secret: str, key_id: str) -> str:
        if self._sealer is None:
            raise StoreClosed(f"store {self.path} is not open")
        return self._sealer.seal_text(secret, _api_key_context(key_id))

    def _api_key_from_row(self, row: Sequence[Any]) -> ApiKeyRecord:
        """The key as stored, its callback secret opened: the one place it is unsealed (the
        callbacks get it from here through `KeyRing`)."""
        record = _api_key_from_row(row)
        if self._sealer is not None:
            record.callback_secret = self._sealer.open_text(
                record.callback_secret, _api_key_context(record.id)
            )
        return record

    async def find_api_key(self, key_hash: str) -> ApiKeyRecord | None:
        rows = await self._read(
            f"SELECT {_API_KEY_COLUMNS} FROM api_keys WHERE key_hash = ?", (key_hash,)
        )
        return self._api_key_from_row(rows[0]) if rows else None

    async def find_api_key_by_name(self, name: str) -> ApiKeyRecord | None:
        rows = await self._read(f"SELECT {_API_KEY_COLUMNS} FROM api_keys WHERE name = ?", (name,))
        return self._api_key_from_row(rows[0]) if rows else None

    async def list_api_keys(self) -> list[ApiKeyRecord]:
        rows = await self._read(f"SELECT {_API_KEY_COLUMNS} FROM api_keys ORDER BY created_at", ())
        return [self._api_key_from_row(r) for r in rows]

    async def revoke_api_key(self, name_or_id: str, *, at: float) -> bool:
        return await self._write(_revoke_api_key, name_or_id, at)

    async def find_idempotency(
        self, key_id: str, idempotency_key: str, *, newer_than: float
    ) -> IdempotencyRecord | None:
        rows = await self._read(
            "SELECT key_id, idempotency_key, fingerprint, status, body, created_at "
            "FROM idempotency WHERE key_id = ? AND idempotency_key = ? AND created_at > ?",
            (key_id, idempotency_key, newer_than),
        )
        return IdempotencyRecord(*rows[0]) if rows else None

    async def save_idempotency(self, record: IdempotencyRecord) -> None:
        row = (
            record.key_id,
            record.idempotency_key,
            record.fingerprint,
            record.status,
            record.body,
            record.created_at,
        )
        await self._write(_execute, _UPSERT_IDEMPOTENCY, row)

    async def purge_idempotency(self, older_than: float) -> int:
        return await self._write(
            _execute, "DELETE FROM idempotency WHERE created_at < ?", (older_than,)
        )

    async def create_otp(self, record: OtpRecord) -> None:
        row = (
            record.id,
            record.key_id,
            record.to,
            record.status,
            record.code_hash,
            record.code_length,
            record.created_at,
            record.expires_at,
            record.max_checks,
            record.checks,
            record.sends,
            record.message_id,
            record.updated_at,
        )
        await self._write(_execute, _INSERT_OTP, row)

    async def check_otp(
        self, otp_id: str, *, key_id: str, code_hash: str, now: float
    ) -> OtpChange | None:
        return await self._write(_change_otp, _CHECK_OTP, (now, code_hash), otp_id, key_id, now)

    async def cancel_otp(self, otp_id: str, *, key_id: str, now: float) -> OtpChange | None:
        return await self._write(_change_otp, _CANCEL_OTP, (now,), otp_id, key_id, now)

    async def record_otp_send(
        self,
        otp_id: str,
        *,
        key_id: str,
        message_id: str,
        code_hash: str,
        code_length: int,
        now: float,
    ) -> OtpChange | None:
        values = (message_id, code_hash, code_length, now)
        return await self._write(_change_otp, _RESEND_OTP, values, otp_id, key_id, now)

    async def redact_message(self, message_id: str) -> None:
        await self._write(_redact_message, message_id)

    async def get_otp(self, otp_id: str) -> OtpRecord | None:
        rows = await self._read(_SELECT_OTP, (otp_id,))
        return OtpRecord(*rows[0]) if rows else None

    # -- deliveries owed to SMPP customers (CustomerDeliveryStore) ------------------------------

    async def owed_receipts(
        self,
        *,
        channel: Channel | None = None,
        since: float = 0.0,
        after: tuple[float, str] | None = None,
        account: str | None = None,
        limit: int | None = None,
    ) -> list[OwedReceipt]:
        channel_value = None if channel is None else channel.value
        after_at, after_id = after if after is not None else (None, None)
        rows = await self._read(
            _SELECT_OWED_RECEIPTS,
            (
                since,
                channel_value,
                channel_value,
                account,
                account,
                after_at,
                after_at,
                after_id,
                -1 if limit is None else limit,
            ),
        )
        return [
            OwedReceipt(
                _message_from_row(r[:_MESSAGE_WIDTH], self._sealer),
                _MESSAGE_STATUSES[r[_MESSAGE_WIDTH]],
                r[_MESSAGE_WIDTH + 1] or 1,
            )
            for r in rows
        ]

    async def forget_owed_receipts(
        self, *, before: float, channel: Channel | None = None, account: str | None = None
    ) -> int:
        channel_value = None if channel is None else channel.value
        return await self._write(
            _execute,
            "UPDATE message_state SET receipt_owed = NULL "
            "WHERE receipt_owed IS NOT NULL AND updated_at < ? AND id IN (SELECT id FROM "
            "message_content WHERE (? IS NULL OR channel = ?) AND (? IS NULL OR account = ?))",
            (before, channel_value, channel_value, account, account),
        )

    async def receipts_settled(self, settled: Sequence[tuple[str, MessageStatus]]) -> None:
        rows = [(message_id, status._value_) for message_id, status in settled]
        await self._write(_settle_receipts, rows, rows=len(rows))

    async def queue_mo(
        self,
        account: str,
        pdu: bytes,
        *,
        received_at: float,
        expires_at: float,
        part_of: str | None = None,
    ) -> int:
        return await self._write(_insert_mo, (account, pdu, received_at, expires_at, part_of), None)

    async def join_mo(
        self, account: str, pdu: bytes, *, part_of: str, received_at: float, expires_at: float
    ) -> int:
        return await self._write(_insert_mo, (account, pdu, received_at, expires_at, None), part_of)

    async def mos_settled(self, ids: Sequence[int]) -> None:
        await self._write(_delete_mos, [(i,) for i in ids], rows=len(ids))

    async def find_references(self, tenant: Tenant, reference: str) -> list[str]:
        rows = await self._read(
            "SELECT id FROM message_content WHERE channel = ? AND account = ? AND reference = ? "
            "AND reference IS NOT NULL ORDER BY created_at, id",
            (tenant.channel.value, tenant.principal, reference),
        )
        return [r[0] for r in rows]

    async def queued_mos(self) -> list[QueuedMo]:
        rows = await self._read(
            "SELECT id, account, pdu, received_at, expires_at, part_of FROM mo_outbox ORDER BY id",
            (),
        )
        return [QueuedMo(*r) for r in rows]


def _time_batch(stages: StageTimes, sent: float, _answer: asyncio.Future[Any]) -> None:
    stages.observe("writer_batch", stage_clock() - sent)


# --- the ops (module-level functions of the transaction; see `Op`) -----------------------------
def _mark_submitted_many(
    tx: _Tx, results: list[tuple[str, Sequence[Segment], str, float, StatusSource]]
) -> list[StatusChange]:
    return [_mark_submitted(tx, *result) for result in results]


def _requeue(
    tx: _Tx, message_id: str, next_attempt_at: float, error: str, at: float, source: StatusSource
) -> StatusChange:
    live = _load(tx, message_id)
    if live is None:
        return StatusChange(False, None)
    message = live.message
    requeued = message.status in _UNSENT
    # Same status (queued) in the normal case: recorded with changed=False by the rule,
    # the detail says which retry it is and why.
    event = advance(
        message.status,
        MessageStatus.QUEUED,
        at=at,
        source=source,
        detail=(
            f"retry {message.attempts + 1} at {next_attempt_at:.3f}: {error}"
            if requeued
            else f"requeue refused ({message.status.value}): {error}"
        ),
    ).event
    _record(tx, message_id, event)
    if not requeued:
        return StatusChange(False, message)
    message.status = MessageStatus.QUEUED
    message.attempts += 1
    message.next_attempt_at, message.last_error, message.updated_at = next_attempt_at, error, at
    tx.states[message_id] = message
    _keep(tx, live)
    return StatusChange(True, message)


def _fail(
    tx: _Tx,
    message_id: str,
    status: MessageStatus,
    error: str | None,
    at: float,
    source: StatusSource,
    count_attempt: bool,
) -> StatusChange:
    live = _load(tx, message_id)
    if live is None:
        return StatusChange(False, None)
    message = live.message
    outcome = advance(message.status, status, at=at, source=source, detail=error or "")
    _record(tx, message_id, outcome.event)
    if not outcome.changed:
        return StatusChange(False, message)
    message.status, message.updated_at = status, at
    message.last_error = error if error is not None else message.last_error
    message.attempts += int(count_attempt)
    tx.states[message_id] = message
    _keep(tx, live)
    _finish_if_done(tx, live)
    return StatusChange(True, message)


def _expire_due(tx: _Tx, now: float, source: StatusSource, limit: int) -> list[str]:
    tx.flush()  # the query below must see this transaction's status changes
    ids = [
        row[0]
        for row in tx.execute(
            f"SELECT id FROM message_state WHERE status IN {_UNSENT_SQL} "
            "AND validity_at <= ? LIMIT ?",
            (now, limit),
        )
    ]
    for message_id in ids:
        _finish_unsent(
            tx,
            message_id,
            MessageStatus.EXPIRED,
            now,
            source,
            "validity period ended before sending",
        )
    return ids


# (link, carrier id, status, at, source, detail, error, network error): a `SegmentReceipt`.
_ReceiptRow = tuple[str, str, SegmentStatus, float, StatusSource, str, str | None, str | None]


def _receipt_row(r: SegmentReceipt) -> _ReceiptRow:
    # Plain tuples: a third of the pickling cost of the dataclasses on the process writer.
    return (r.link, r.carrier_id, r.status, r.at, r.source, r.detail, r.error, r.network_error)


# A submit result (the arguments of `_mark_submitted`, 5 items) or a `_ReceiptRow` (8 items).
_SubmitRow = tuple[str, Sequence[Segment], str, float, StatusSource]
_OutcomeRow = _SubmitRow | _ReceiptRow


def _record_link_outcomes(tx: _Tx, rows: list[_OutcomeRow]) -> list[StatusChange]:
    changes: list[StatusChange] = []
    for row in rows:
        if len(row) == 5:
            changes.append(_mark_submitted(tx, *row))
        else:
            changes += _apply_segment_statuses(tx, [row])
    return changes


def _apply_segment_statuses(tx: _Tx, receipts: list[_ReceiptRow]) -> list[StatusChange]:
    changes: list[StatusChange] = []
    for link, carrier_id, status, at, source, detail, error, network_error in receipts:
        found = _find_by_carrier_id(tx, link, carrier_id)
        changes.append(
            StatusChange(False, None)
            if found is None
            else _apply_receipt(
                tx, found[0], found[1], status, at, source, detail, error, network_error
            )
        )
    return changes


def _set_segment_status(
    tx: _Tx,
    message_id: str,
    segment_index: int,
    status: SegmentStatus,
    at: float,
    source: StatusSource,
    detail: str,
    error: str | None,
    network_error: str | None,
) -> StatusChange:
    live = _load(tx, message_id)
    if live is None:
        return StatusChange(False, None)
    return _apply_receipt(tx, live, segment_index, status, at, source, detail, error, network_error)


def _execute(tx: _Tx, sql: str, parameters: Sequence[Any]) -> int:
    """One statement; returns the rows it changed."""
    return int(tx.execute(sql, parameters).rowcount)


def _insert_api_key(tx: _Tx, row: tuple[Any, ...]) -> None:
    try:
        tx.execute(f"INSERT INTO api_keys ({_API_KEY_COLUMNS}) VALUES ({_13})", row)
    except sqlite3.IntegrityError as exc:
        raise DuplicateKeyName(f"an API key named {row[1]!r} exists") from exc


def _revoke_api_key(tx: _Tx, name_or_id: str, at: float) -> bool:
    cursor = tx.execute(
        "UPDATE api_keys SET revoked_at = ? WHERE (name = ? OR id = ?) AND revoked_at IS NULL",
        (at, name_or_id, name_or_id),
    )
    return bool(cursor.rowcount)


def _settle_receipts(tx: _Tx, rows: list[tuple[str, str]]) -> None:
    tx.flush()  # a status update pending in this transaction sets the mark it may clear
    tx.executemany(
        "UPDATE message_state SET receipt_owed = NULL WHERE id = ? AND receipt_owed = ?", rows
    )


def _insert_mo(tx: _Tx, row: tuple[Any, ...], parts_of: str | None) -> int:
    """Keep one MO; with `parts_of`, it is the whole of the parts kept under it, which go."""
    if parts_of is not None:
        tx.execute("DELETE FROM mo_outbox WHERE part_of = ?", (parts_of,))
    cursor = tx.execute(
        "INSERT INTO mo_outbox (account, pdu, received_at, expires_at, part_of) "
        "VALUES (?, ?, ?, ?, ?)",
        row,
    )
    return int(cursor.lastrowid or 0)


def _delete_mos(tx: _Tx, ids: list[tuple[int]]) -> None:
    tx.executemany("DELETE FROM mo_outbox WHERE id = ?", ids)


def _redact_message(tx: _Tx, message_id: str) -> None:
    tx.execute("UPDATE message_content SET text = NULL, body = x'' WHERE id = ?", (message_id,))
    entry = tx.live.get(message_id)
    if entry is not None:
        row, segment_rows = entry
        tx.live[message_id] = ((*row[:10], b"", None, *row[12:]), segment_rows)


# --- the ops' building blocks (run where the writer runs) ---------------------------------------
def _mark_submitted(
    tx: _Tx,
    message_id: str,
    segments: Sequence[Segment],
    link: str,
    at: float,
    source: StatusSource,
) -> StatusChange:
    live = _load(tx, message_id)
    if live is None:
        return StatusChange(False, None)
    message, stored = live.message, live.segments
    was_unsent = message.status in _UNSENT
    changes: list[StatusChange] = []
    for submitted in segments:
        index = submitted.index
        segment = stored.get(index)
        if segment is None:
            segment = stored[index] = Segment(
                message_id, index, submitted.total, SegmentStatus.PENDING
            )
        elif segment.carrier_id is not None:  # resubmitted: the old id is history
            old_key = (segment.link or "", segment.carrier_id)
            if tx.carriers.get(old_key) == (message_id, index):
                del tx.carriers[old_key]
        # The correlation entry is recorded even when the status cannot move (a
        # resubmission, a message cancelled meanwhile): receipts will quote this id.
        segment.total, segment.link, segment.carrier_id = (
            submitted.total,
            link,
            submitted.carrier_id,
        )
        segment.submitted_at = submitted.submitted_at or at
        if submitted.carrier_id is not None:
            tx.carriers[(link, submitted.carrier_id)] = (message_id, index)
        tx.submitted[(message_id, index)] = segment
        changes.append(
            _apply(
                tx,
                live,
                segment,
                submitted.status,
                at=at,
                source=source,
                detail=f"link {link}, carrier id {submitted.carrier_id}",
                error=submitted.error,
                network_error=submitted.network_error,
            )
        )
    if was_unsent and message.status not in _UNSENT:
        message.attempts += 1  # the attempt counts once, when the message leaves QUEUED
    message.link, message.next_attempt_at = link, None
    tx.states[message_id] = message
    _keep(tx, live)
    _finish_if_done(tx, live)
    last = changes[-1]
    return StatusChange(any(c.changed for c in changes), message, last.segment, last.update)


def _load(tx: _Tx, message_id: str) -> _Live | None:
    """The message and its segments: from the writer's memory, else from the database."""
    entry = tx.live.get(message_id)
    if entry is not None:
        row = entry[0]
        return _Live(row, _message_from_row(row), {r[1]: _segment_from_row(r) for r in entry[1]})
    rows = tx.execute(_SELECT_MESSAGE_WITH_SEGMENTS, (message_id,)).fetchall()
    if not rows:
        return None
    segments = {
        r[_MESSAGE_WIDTH + 1]: _segment_from_row(r[_MESSAGE_WIDTH:])
        for r in rows
        if r[_MESSAGE_WIDTH] is not None  # LEFT JOIN: a message without segments yet
    }
    row = rows[0][:_MESSAGE_WIDTH]
    return _Live(row, _message_from_row(row), segments)


def _keep(tx: _Tx, live: _Live) -> None:
    """Remember what an op made of a message, for the next op on it (this batch or later).
    Ops change only the state columns (`_message_state`); the content is the row's own."""
    m, row = live.message, live.row
    tx.live[m.id] = (
        (
            *row[:19],
            m.link,
            m.status._value_,
            m.attempts,
            m.next_attempt_at,
            m.last_error,
            row[24],
            row[25],
            row[26],
            m.updated_at,
        ),
        tuple(_segment_row(s) for s in live.segments.values()),
    )


def _find_by_carrier_id(tx: _Tx, link: str, carrier_id: str) -> tuple[_Live, int] | None:
    """The message and segment index a carrier id on a link belongs to (latest submission)."""
    key = tx.carriers.get((link, carrier_id))
    if key is not None:
        live = _load(tx, key[0])
        segment = None if live is None else live.segments.get(key[1])
        if live is not None and segment is not None and segment.carrier_id == carrier_id:
            return live, key[1]
    # The index must hold this transaction's submissions (a new carrier id for a resubmitted
    # segment) before it is asked; pending status updates do not change what it answers.
    tx.flush_submitted()
    row = tx.execute(_FIND_SEGMENT, (link, carrier_id)).fetchone()
    if row is None:
        return None
    live = _load(tx, row[0])
    return None if live is None else (live, row[1])


def _message_state(m: Message) -> tuple[Any, ...]:
    status = m.status._value_
    owed = None
    channel = m.channel
    if channel is Channel.SMPP:
        if m.registered_delivery and wants_receipt(
            m.registered_delivery, m.status, is_intermediate(m.status)
        ):
            owed = status  # the customer's receipt: owed from the commit that changes the status
    elif channel is Channel.HTTP and m.callback_url is not None and is_final(m.status):
        owed = status  # the receipt callback of a final status
    return (status, m.link, m.attempts, m.next_attempt_at, m.last_error, m.updated_at, owed, m.id)


def _record(tx: _Tx, message_id: str, event: StatusEvent, segment_index: int | None = None) -> None:
    tx.history.append(_history_row(message_id, event, segment_index))


def _finish_if_done(tx: _Tx, live: _Live) -> None:
    """A message final with all its segments needs no memory: forget it after COMMIT."""
    if is_final(live.message.status) and all(is_final(s.status) for s in live.segments.values()):
        tx.finished.append(live.message.id)


def _finish_unsent(
    tx: _Tx,
    message_id: str,
    status: MessageStatus,
    at: float,
    source: StatusSource,
    reason: str,
) -> StatusChange:
    """Move a message never handed to a carrier to a final status (cancel, expiry)."""
    live = _load(tx, message_id)
    if live is None:
        return StatusChange(False, None)
    message = live.message
    if message.status not in _UNSENT:
        detail = f"{reason}: refused, already {message.status.value}"
        _record(tx, message_id, StatusEvent(at, status, source, detail, changed=False))
        return StatusChange(False, message)
    _record(
        tx, message_id, advance(message.status, status, at=at, source=source, detail=reason).event
    )
    message.status, message.updated_at = status, at
    tx.states[message_id] = message
    _keep(tx, live)
    _finish_if_done(tx, live)
    return StatusChange(True, message)


def _apply_receipt(
    tx: _Tx,
    live: _Live,
    segment_index: int,
    status: SegmentStatus,
    at: float,
    source: StatusSource,
    detail: str,
    error: str | None,
    network_error: str | None,
) -> StatusChange:
    segment = live.segments.get(segment_index)
    if segment is None:
        return StatusChange(False, live.message)
    change = _apply(
        tx,
        live,
        segment,
        status,
        at=at,
        source=source,
        detail=detail,
        error=error,
        network_error=network_error,
    )
    if change.update is not None and change.update.segment.changed:
        key = (segment.message_id, segment.index)
        # Submitted in this same transaction: its pending upsert must carry the new status.
        (tx.submitted if key in tx.submitted else tx.changed)[key] = segment
        _keep(tx, live)
    _finish_if_done(tx, live)
    return StatusChange(change.changed, live.message, change.segment, change.update)


def _apply(
    tx: _Tx,
    live: _Live,
    segment: Segment,
    reported: SegmentStatus,
    *,
    at: float,
    source: StatusSource,
    detail: str,
    error: str | None,
    network_error: str | None,
) -> StatusChange:
    """Apply `reported` to `segment` by `dlr.aggregate.apply_segment_status`, in memory: the
    segment, the message's status, and one history row. The caller queues the rows to write.
    The result's `message` is the writer's own; `segment` is a copy."""
    message, segments = live.message, live.segments
    states = [_segment_state(segments.get(i)) for i in range(segment.total)]
    update = apply_segment_status(
        message.status,
        states,
        segment.index,
        reported,
        at=at,
        source=source,
        detail=detail,
        submitted_at=segment.submitted_at,
    )
    if update.segment.changed:
        segment.status, segment.changed_at = reported, at
        if is_final(reported):
            segment.done_at = at
        segment.error = error if error is not None else segment.error
        segment.network_error = (
            network_error if network_error is not None else segment.network_error
        )
    message_status: str | None = None
    if update.message is not None:
        new_status = update.message.status
        assert isinstance(new_status, MessageStatus)
        message.status, message.updated_at = new_status, at
        if error is not None:
            message.last_error = error
        tx.states[message.id] = message
        message_status = new_status._value_
    event = update.segment.event
    tx.history.append(
        (
            message.id,
            segment.index,
            at,
            event.status._value_,
            event.source._value_,
            event.detail,
            int(event.changed),
            message_status,
        )
    )
    return StatusChange(update.segment.changed, message, segment, update)


def _segment_state(segment: Segment | None) -> SegmentState:
    if segment is None:  # not submitted yet
        return SegmentState(SegmentStatus.PENDING, 0.0)
    return SegmentState(segment.status, segment.changed_at or 0.0, segment.submitted_at)


# --- HTTP API state rows -----------------------------------------------------------------------
_API_KEY_COLUMNS = (
    "id, name, key_hash, prefix, scopes, senders, countries, requests_per_second, "
    "messages_per_second, callback_url, callback_secret, created_at, revoked_at"
)
_13 = ", ".join("?" * 13)
_OTP_COLUMNS = (
    "id, key_id, destination, status, code_hash, code_length, created_at, expires_at, "
    "max_checks, checks, sends, message_id, updated_at"
)
_UPSERT_IDEMPOTENCY = (
    "INSERT INTO idempotency (key_id, idempotency_key, fingerprint, status, body, created_at) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (key_id, idempotency_key) "
    "DO UPDATE SET fingerprint = excluded.fingerprint, status = excluded.status, "
    "body = excluded.body, created_at = excluded.created_at"
)
_INSERT_OTP = f"INSERT INTO otp ({_OTP_COLUMNS}) VALUES ({_13})"
_SELECT_OTP = f"SELECT {_OTP_COLUMNS} FROM otp WHERE id = ?"
# Every change of a verification is one conditional UPDATE, decided from the row as it is when
# the statement runs (OtpStore's contract): concurrent checks on any number of writers cannot
# count past max_checks, approve twice or undo a cancel. In SET, columns are the row's values
# before the update (SQLite and PostgreSQL alike). `?` order: see the ops below.
_STILL_PENDING = "id = ? AND key_id = ? AND status = 'pending' AND expires_at > ?"
_CHECK_OTP = (
    "UPDATE otp SET checks = checks + 1, updated_at = ?, status = CASE "
    "WHEN code_hash = ? THEN 'approved' "
    "WHEN checks + 1 >= max_checks THEN 'max_attempts_reached' ELSE 'pending' END "
    f"WHERE {_STILL_PENDING} AND checks < max_checks RETURNING {_OTP_COLUMNS}"
)
_CANCEL_OTP = (
    f"UPDATE otp SET status = 'canceled', updated_at = ? WHERE {_STILL_PENDING} "
    f"RETURNING {_OTP_COLUMNS}"
)
_RESEND_OTP = (
    "UPDATE otp SET sends = sends + 1, message_id = ?, code_hash = ?, code_length = ?, "
    f"updated_at = ? WHERE {_STILL_PENDING} RETURNING {_OTP_COLUMNS}"
)
# What a request that changed nothing reports: an expired verification is marked so first.
_EXPIRE_OTP = (
    "UPDATE otp SET status = 'expired', updated_at = ? "
    "WHERE id = ? AND key_id = ? AND status = 'pending' AND expires_at <= ?"
)
_SELECT_OWN_OTP = f"SELECT {_OTP_COLUMNS} FROM otp WHERE id = ? AND key_id = ?"


def _change_otp(
    tx: _Tx, sql: str, values: tuple[Any, ...], otp_id: str, key_id: str, now: float
) -> OtpChange | None:
    """The op of the OTP changes: `sql` (one conditional UPDATE ... RETURNING) with `values`
    then `otp_id, key_id, now`; if it changed nothing, the verification as it is."""
    rows = tx.execute(sql, (*values, otp_id, key_id, now)).fetchall()
    if rows:
        return OtpChange(OtpRecord(*rows[0]), True)
    tx.execute(_EXPIRE_OTP, (now, otp_id, key_id, now))
    rows = tx.execute(_SELECT_OWN_OTP, (otp_id, key_id)).fetchall()
    return OtpChange(OtpRecord(*rows[0]), False) if rows else None


def _api_key_context(key_id: str) -> str:
    return "api_key:" + key_id


def _seal_clear_rows(conn: sqlite3.Connection, sealer: Sealer) -> bool:
    """Migration 6: seal what older versions kept in clear, the callback secrets and the
    content of OTP messages not yet redacted. Returns whether any row held one."""
    clear_secrets = [
        (sealer.seal_text(secret, _api_key_context(key_id)), key_id)
        for key_id, secret in conn.execute("SELECT id, callback_secret FROM api_keys")
        if not is_sealed_text(secret)
    ]
    conn.executemany("UPDATE api_keys SET callback_secret = ? WHERE id = ?", clear_secrets)
    contents = [
        (sealer.seal(json.dumps([bytes(body).hex(), text]).encode(), _message_context(id_)), id_)
        for id_, body, text in conn.execute(
            "SELECT id, body, text FROM message_content "
            "WHERE kind = ? AND (length(body) > 0 OR text IS NOT NULL)",
            (_OTP_KIND,),
        )
        if not is_sealed(bytes(body))
    ]
    conn.executemany("UPDATE message_content SET body = ?, text = NULL WHERE id = ?", contents)
    # Rows that were redacted before secure_delete still have the code in their pages' free
    # space: VACUUM rewrites them whenever any OTP message was ever stored.
    ever = conn.execute("SELECT 1 FROM message_content WHERE kind = ? LIMIT 1", (_OTP_KIND,))
    return bool(clear_secrets or contents or ever.fetchone())


def _api_key_from_row(r: Sequence[Any]) -> ApiKeyRecord:
    return ApiKeyRecord(
        id=r[0],
        name=r[1],
        key_hash=r[2],
        prefix=r[3],
        scopes=tuple(r[4].split(",")) if r[4] else (),
        senders=r[5],
        countries=None if r[6] is None else tuple(r[6].split(",")),
        requests_per_second=r[7],
        messages_per_second=r[8],
        callback_url=r[9],
        callback_secret=r[10],
        created_at=r[11],
        revoked_at=r[12],
    )
