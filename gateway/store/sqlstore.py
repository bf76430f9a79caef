"""The `MessageStore` over the store's shared SQL and ops, whatever engine runs them.

Owns the batching write queue (group commit: see `gateway.store.sqlite` for the theory) and
every method of `MessageStore` and its side protocols, written once as ops (run by the
backend's writer core, inside its transaction) and reads (`_read`, `_read_together`,
`_read_pages`, which the backend provides). Never does: open a connection, know a dialect or a
file (`gateway.store.sqlite`, `gateway.store.postgres`).

A backend subclass provides: `open`/`close` (start the writer with `_start`, stop with `_stop`),
the three reads, `label` (what error messages call the store), and `_NO_LIMIT` (the LIMIT value
that means none).
"""

from __future__ import annotations

import asyncio
import functools
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from dlr.correlation import SegmentRef
from dlr.status import MessageStatus, SegmentStatus, StatusEvent, StatusSource, is_final
from gateway.messages import Channel, Message, Segment, Tenant
from gateway.stages import StageTimes, recording
from gateway.stages import now as stage_clock
from gateway.store.base import (
    ApiKeyRecord,
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
from gateway.store.deliveries import (
    _FORGET_OWED_RECEIPTS,
    _SELECT_OWED_RECEIPTS,
    _delete_mos,
    _insert_mo,
    _settle_receipts,
)
from gateway.store.inbound import SqliteInboundStore
from gateway.store.keys import (
    _API_KEY_COLUMNS,
    _CANCEL_OTP,
    _CHECK_OTP,
    _INSERT_OTP,
    _RESEND_OTP,
    _SELECT_OTP,
    _UPSERT_IDEMPOTENCY,
    _change_otp,
    _insert_api_key,
    _revoke_api_key,
)
from gateway.store.message_ops import (
    _FIND_SEGMENT,
    _IDS_PER_QUERY,
    _PENDING_REFS,
    _SELECT_HISTORY,
    _SELECT_MESSAGE,
    _SELECT_SCHEDULED,
    _SELECT_SEGMENTS,
    _apply_segment_statuses,
    _expire_due,
    _fail,
    _finish_unsent,
    _insert_messages,
    _mark_submitted,
    _mark_submitted_many,
    _record,
    _record_link_outcomes,
    _record_rows,
    _redact_message,
    _requeue,
    _set_segment_status,
)
from gateway.store.optouts import SqliteOptOutStore
from gateway.store.rows import (
    _MESSAGE_COLUMNS,
    _MESSAGE_STATUSES,
    _MESSAGE_WIDTH,
    _OTP_KIND,
    _SEGMENT_COLUMNS,
    _api_key_context,
    _api_key_from_row,
    _history_entries,
    _history_row,
    _message_from_row,
    _message_row,
    _OutcomeRow,
    _receipt_row,
    _seal_content,
    _segment_from_row,
)
from gateway.store.schema import _AWAITING_RECEIPT_SQL, _UNSENT_SQL
from gateway.store.sealing import (
    SEALED_TEXT_MARK,
    Sealer,
    UnsealError,
)
from gateway.store.transaction import _execute
from gateway.store.writer import InlineWriter, ProcessWriter, ThreadWriter

T = TypeVar("T")
# One read: a statement (`?` placeholders) and its parameters.
Query = tuple[str, Sequence[Any]]


@dataclass(slots=True)
class _WriteRequest:
    op: Callable[..., Any]
    args: tuple[Any, ...]
    rows: int
    future: asyncio.Future[Any]
    queued_at: float = 0.0  # when stage times are recorded (gateway.stages)


class SqlMessageStore(SqliteOptOutStore, SqliteInboundStore):
    """`MessageStore` on the shared SQL; a backend subclass supplies the connections."""

    # The LIMIT parameter that means "no limit" (SQLite: -1; PostgreSQL: NULL).
    _NO_LIMIT: ClassVar[int | None] = -1

    def __init__(self, *, max_batch: int, live_messages: int) -> None:
        self.max_batch = max_batch
        # In-flight messages the writer keeps in memory (oldest forgotten first); more are
        # read back from the database when their next event comes.
        self.live_messages = live_messages
        self._sealer: Sealer | None = None
        self.key_file: Path | None = None  # the seal key's file, set by the backend
        self._pending: deque[_WriteRequest] = deque()
        self._wakeup = asyncio.Event()
        self._writer_task: asyncio.Task[None] | None = None
        self._writer: ThreadWriter | ProcessWriter | InlineWriter | None = None
        self._open = False
        self._commits = 0
        self._operations = 0
        self._rows = 0
        self._failed = 0
        self._largest_batch = 0

    # --- what a backend provides ---------------------------------------------------------------
    async def open(self) -> None:
        """Connect, migrate, start the writer (`_start`)."""
        raise NotImplementedError

    async def close(self) -> None:
        """Drain the writes queued (`_stop`), disconnect."""
        raise NotImplementedError

    @property
    def label(self) -> str:
        raise NotImplementedError

    async def schema_versions(self) -> dict[str, int]:
        """How far the database's schema is: migrations applied, per list."""
        raise NotImplementedError

    async def _read(self, sql: str, parameters: Sequence[Any]) -> list[Any]:
        """The rows of one statement (`?` placeholders), as sequences."""
        raise NotImplementedError

    async def _read_together(self, queries: Sequence[Query]) -> list[list[Any]]:
        """The rows of several statements, read from one snapshot."""
        raise NotImplementedError

    def _read_pages(
        self, sql: str, parameters: Sequence[Any], page: int
    ) -> AsyncIterator[list[Any]]:
        """The rows of one statement, `page` at a time, from one cursor."""
        raise NotImplementedError

    # --- lifecycle helpers --------------------------------------------------------------------
    def _start(self, writer: ThreadWriter | ProcessWriter | InlineWriter) -> None:
        """The writer is running and the reads work: take writes."""
        self._writer = writer
        self._open = True
        self._writer_task = asyncio.create_task(self._write_loop(), name="store-writer")

    async def _stop(self) -> bool:
        """Refuse new writes, drain what is queued, stop the writer. False if not open."""
        if not self._open:
            return False
        self._open = False  # refuse new writes; the writer drains what is queued, then ends
        self._wakeup.set()
        if self._writer_task is not None:
            await self._writer_task
        if self._writer is not None:
            await self._writer.stop()
        self._writer = self._writer_task = None
        return True

    async def _check_key(self) -> None:
        """Refuse to start with a key file that is not the one the sealed values were made
        with (a database restored without its key): say so now, not at the first read."""
        assert self._sealer is not None
        rows = await self._read(
            "SELECT id, callback_secret FROM api_keys WHERE callback_secret LIKE ? LIMIT 1",
            (SEALED_TEXT_MARK + "%",),
        )
        for key_id, sealed in rows:
            try:
                self._sealer.open_text(sealed, _api_key_context(key_id))
            except UnsealError:
                raise StoreError(
                    f"the store key {self.key_file} does not open what {self.label} holds "
                    "sealed: put back the key file that was beside this database"
                ) from None

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
            raise StoreClosed(f"store {self.label} is not open")
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
                oldest = out.popleft()
                if not oldest.done():  # an inline writer's is: no turn spent waiting for it
                    await asyncio.wait((oldest,))
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

    async def count_submitted_since(self, link: str, since: float) -> int:
        # carrier_id IS NOT NULL: the partial index on (link, carrier_id, submitted_at) serves it.
        rows = await self._read(
            "SELECT count(*) FROM segments WHERE link = ? AND carrier_id IS NOT NULL "
            "AND submitted_at >= ?",
            (link, since),
        )
        return int(rows[0][0])

    # --- reading and history ------------------------------------------------------------------
    async def get(self, message_id: str) -> MessageRecord | None:
        message_rows, segment_rows, history_rows = await self._read_together(
            [
                (_SELECT_MESSAGE, (message_id,)),
                (_SELECT_SEGMENTS, (message_id,)),
                (_SELECT_HISTORY, (message_id,)),
            ]
        )
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
        # Walks message_state in key order (no sort of the whole backlog), one cursor; the rows
        # are the references as they are.
        async for rows in self._read_pages(_PENDING_REFS, (due_by, due_by), page):
            yield rows

    async def load_scheduled(self, after: float) -> list[Message]:
        rows = await self._read(_SELECT_SCHEDULED, (after, after))
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

    async def record_history_many(self, entries: Sequence[tuple[str, StatusEvent]]) -> None:
        if not entries:
            return
        rows = [_history_row(message_id, event) for message_id, event in entries]
        await self._write(_record_rows, rows, rows=len(rows))

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
            raise StoreClosed(f"store {self.label} is not open")
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
                self._NO_LIMIT if limit is None else limit,
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
            _FORGET_OWED_RECEIPTS,
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

    async def queued_mos(
        self, *, account: str | None = None, limit: int | None = None
    ) -> list[QueuedMo]:
        rows = await self._read(
            "SELECT id, account, pdu, received_at, expires_at, part_of FROM mo_outbox "
            "WHERE (CAST(? AS TEXT) IS NULL OR account = ?) ORDER BY id LIMIT ?",
            (account, account, self._NO_LIMIT if limit is None else limit),
        )
        return [QueuedMo(*r) for r in rows]


def _time_batch(stages: StageTimes, sent: float, _answer: asyncio.Future[Any]) -> None:
    stages.observe("writer_batch", stage_clock() - sent)
