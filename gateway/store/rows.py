"""Row codecs of the message store: how a `Message`, `Segment`, history event, API key and
receipt look as the plain tuples the SQL binds and returns, and back.

Owns the column lists and the conversions. Never does: SQL, transactions or status rules.
Shared by every backend (the tuples are dialect-free) and by the writer, wherever it runs.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Sequence
from typing import Any

from dlr.customer_receipt import wants_receipt
from dlr.status import (
    MessageStatus,
    SegmentStatus,
    StatusEvent,
    StatusSource,
    is_final,
    is_intermediate,
)
from gateway.messages import Channel, HistoryEntry, Message, MessageKind, Segment
from gateway.store.base import (
    ApiKeyRecord,
    SegmentReceipt,
)
from gateway.store.sealing import (
    Sealer,
    is_sealed,
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


_MESSAGE_WIDTH = len(_MESSAGE_COLUMNS.split(","))


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


# (link, carrier id, status, at, source, detail, error, network error): a `SegmentReceipt`.
_ReceiptRow = tuple[str, str, SegmentStatus, float, StatusSource, str, str | None, str | None]


def _receipt_row(r: SegmentReceipt) -> _ReceiptRow:
    # Plain tuples: a third of the pickling cost of the dataclasses on the process writer.
    return (r.link, r.carrier_id, r.status, r.at, r.source, r.detail, r.error, r.network_error)


# A submit result (the arguments of `_mark_submitted`, 5 items) or a `_ReceiptRow` (8 items).
_SubmitRow = tuple[str, Sequence[Segment], str, float, StatusSource]
_OutcomeRow = _SubmitRow | _ReceiptRow


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


def _api_key_context(key_id: str) -> str:
    return "api_key:" + key_id


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
