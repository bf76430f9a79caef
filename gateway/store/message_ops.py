"""The ops on messages: intake, submit results, retries, failures, expiry, receipts and their
correlation by carrier id, redaction, and the statements that read messages and segments.

An op is a module-level function of the open transaction (`_Tx`) and plain arguments, run
where the writer runs (a thread, or a process after a pickle round trip: a module-level
function pickles as its name). Status rules come from `dlr.status` and `dlr.aggregate`; this
module applies them to the rows. Never does: I/O of its own, or anything with the event loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dlr.aggregate import SegmentState, apply_segment_status
from dlr.status import (
    MessageStatus,
    SegmentStatus,
    StatusEvent,
    StatusSource,
    advance,
    is_final,
)
from gateway.messages import Segment
from gateway.store.base import (
    DuplicateMessageId,
    StatusChange,
)
from gateway.store.rows import (
    _CONTENT_ROW,
    _HISTORY_COLUMNS,
    _MESSAGE_COLUMNS,
    _MESSAGE_WIDTH,
    _SEGMENT_COLUMNS,
    _STATE_ROW,
    _history_row,
    _message_from_row,
    _OutcomeRow,
    _ReceiptRow,
    _segment_from_row,
    _segment_row,
)
from gateway.store.schema import _UNSENT, _UNSENT_SQL
from gateway.store.transaction import _INSERT_HISTORY, INTEGRITY_ERRORS, _Live, _Tx

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


_SELECT_MESSAGE = f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id = ?"
_PENDING_REFS = (
    "SELECT s.id, c.priority, c.route, CASE WHEN instr(c.targets, json_quote(s.link)) > 0 "
    "THEN s.link ELSE json_extract(c.targets, '$[0]') END FROM message_state s "
    f"JOIN message_content c ON c.id = s.id WHERE s.status IN {_UNSENT_SQL} "
    "AND coalesce(c.send_at, 0) <= ? AND coalesce(s.next_attempt_at, 0) <= ? ORDER BY s.id"
)
_IDS_PER_QUERY = 500
_SELECT_SCHEDULED = (
    f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE status IN {_UNSENT_SQL} "
    "AND (coalesce(send_at, 0) > ? OR coalesce(next_attempt_at, 0) > ?) "
    "ORDER BY priority, id"
)


_REDACT_MESSAGE = "UPDATE message_content SET text = NULL, body = x'' WHERE id = ?"
_SELECT_HISTORY = f"SELECT {_HISTORY_COLUMNS} FROM history WHERE message_id = ? ORDER BY id"
_SELECT_SEGMENTS = f"SELECT {_SEGMENT_COLUMNS} FROM segments WHERE message_id = ? ORDER BY idx"
_FIND_SEGMENT = (
    "SELECT message_id, idx FROM segments WHERE link = ? AND carrier_id = ? "
    "ORDER BY submitted_at DESC LIMIT 1"
)


_SELECT_MESSAGE_WITH_SEGMENTS = (
    "SELECT "
    + ", ".join(f"m.{c.strip()}" for c in _MESSAGE_COLUMNS.split(","))
    + ", "
    + ", ".join(f"s.{c.strip()}" for c in _SEGMENT_COLUMNS.split(","))
    + " FROM messages m LEFT JOIN segments s ON s.message_id = m.id WHERE m.id = ?"
)


# --- the writer: the op of `accept` and the transaction runner (where it runs: store.writer) ----


def _insert_messages(tx: _Tx, rows: list[tuple[Any, ...]], history: list[tuple[Any, ...]]) -> None:
    """The op of `accept`. Consecutive ones in a batch share one executemany per table, and
    their history goes with them: a batch of intakes alone is one statement on PostgreSQL."""
    try:
        tx.write_together(
            [
                (_INSERT_CONTENT, map(_CONTENT_ROW, rows)),
                (_INSERT_STATE, map(_STATE_ROW, rows)),
                (_INSERT_HISTORY, history),
            ]
        )
    except INTEGRITY_ERRORS as exc:
        raise DuplicateMessageId(str(exc)) from exc
    live = tx.live
    for row in rows:
        live[row[0]] = (row, ())


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


def _redact_message(tx: _Tx, message_id: str) -> None:
    tx.execute(_REDACT_MESSAGE, (message_id,))
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


def _record(tx: _Tx, message_id: str, event: StatusEvent, segment_index: int | None = None) -> None:
    tx.history.append(_history_row(message_id, event, segment_index))


def _record_rows(tx: _Tx, rows: list[tuple[Any, ...]]) -> None:
    """History rows (`_history_row`) made on the caller's side: no status changes."""
    tx.history.extend(rows)


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
