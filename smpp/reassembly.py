"""Reassembly of inbound multi-part messages (UDH 8/16-bit references and SAR TLVs).

Owns parsing a User Data Header out of a short_message, reading SAR TLVs, and `Reassembler`:
a sans-IO buffer that joins parts into whole messages with bounded memory. Must never decode
text, read a clock, start timers or do I/O: the caller passes `now` and decides what to do with
incomplete messages (deliver what arrived, or drop).

Parts are joined as octets before any decoding, so a sender that split an escape or surrogate
pair across parts still yields the right text when the caller decodes the whole payload.
"""

from __future__ import annotations

import enum
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field

from smpp.constants import ESM_CLASS_UDHI, Tag
from smpp.segmentation import IEI_CONCAT_8BIT, IEI_CONCAT_16BIT


class MalformedUdh(ValueError):
    """The UDH length or an information element runs past the end of the short_message."""


@dataclass(slots=True, frozen=True)
class ConcatInfo:
    reference: int
    total: int
    seqnum: int  # 1-based
    reference_bits: int  # 8 or 16 (SAR references are 16-bit)


@dataclass(slots=True, frozen=True)
class UserDataHeader:
    concat: ConcatInfo | None
    # Every information element other than a valid concatenation one, in order: (IEI, data).
    elements: tuple[tuple[int, bytes], ...]
    payload: bytes  # the octets after the header
    header_octets: int  # including the UDHL octet; GSM 7-bit packed data needs fill bits after it


def _concat_from_element(iei: int, data: bytes) -> ConcatInfo | None:
    if iei == IEI_CONCAT_8BIT and len(data) == 3:
        reference, total, seqnum, bits = data[0], data[1], data[2], 8
    elif iei == IEI_CONCAT_16BIT and len(data) == 4:
        reference, total, seqnum, bits = (data[0] << 8) | data[1], data[2], data[3], 16
    else:
        return None
    # TS 23.040 9.2.3.24.1: a zero count or a sequence beyond it means "ignore the element".
    if total == 0 or not 1 <= seqnum <= total:
        return None
    return ConcatInfo(reference, total, seqnum, bits)


def parse_udh(short_message: bytes) -> UserDataHeader:
    """Split a short_message sent with esm_class UDHI into its header and payload.

    The last valid concatenation element wins (TS 23.040: a repeated element replaces the
    earlier one); others are kept in `elements`. Raises MalformedUdh when lengths overrun.
    """
    if not short_message:
        raise MalformedUdh("UDHI set but short_message is empty")
    header_end = 1 + short_message[0]
    if header_end > len(short_message):
        raise MalformedUdh(
            f"UDH length {short_message[0]} exceeds the {len(short_message) - 1} octets present"
        )
    concat: ConcatInfo | None = None
    elements: list[tuple[int, bytes]] = []
    position = 1
    while position < header_end:
        if position + 2 > header_end:
            raise MalformedUdh(f"information element header cut at octet {position}")
        iei, length = short_message[position], short_message[position + 1]
        data_start = position + 2
        data_end = data_start + length
        if data_end > header_end:
            raise MalformedUdh(f"information element 0x{iei:02X} runs past the UDH")
        data = short_message[data_start:data_end]
        found = _concat_from_element(iei, data)
        if found is not None:
            concat = found
        else:
            elements.append((iei, data))
        position = data_end
    return UserDataHeader(concat, tuple(elements), short_message[header_end:], header_end)


def sar_concat_info(tlvs: Mapping[int, object]) -> ConcatInfo | None:
    """Concatenation info from sar_msg_ref_num / sar_total_segments / sar_segment_seqnum, or
    None when they are absent, not integers or inconsistent."""
    reference = tlvs.get(Tag.SAR_MSG_REF_NUM)
    total = tlvs.get(Tag.SAR_TOTAL_SEGMENTS)
    seqnum = tlvs.get(Tag.SAR_SEGMENT_SEQNUM)
    if not (isinstance(reference, int) and isinstance(total, int) and isinstance(seqnum, int)):
        return None
    if total == 0 or not 1 <= seqnum <= total:
        return None
    return ConcatInfo(reference, total, seqnum, 16)


@dataclass(slots=True, frozen=True)
class ConcatPart:
    concat: ConcatInfo
    payload: bytes  # the user data without the UDH
    data_coding: int
    context: object = None  # anything the caller wants back (message id, PDU, link)


def concat_part_of(
    short_message: bytes,
    esm_class: int,
    data_coding: int,
    tlvs: Mapping[int, object],
    context: object = None,
) -> ConcatPart | None:
    """The ConcatPart a deliver_sm / data_sm / submit_sm carries, or None when it is not a part
    of a concatenated message (then it is a whole message on its own).

    The user data is message_payload when present (SMPP forbids both), else short_message; a
    UDH (esm_class UDHI) is taken off it. Raises MalformedUdh for a UDH that overruns.
    """
    payload = tlvs.get(Tag.MESSAGE_PAYLOAD)
    user_data = payload if isinstance(payload, bytes) else short_message
    if esm_class & ESM_CLASS_UDHI:
        header = parse_udh(user_data)
        if header.concat is not None:
            return ConcatPart(header.concat, header.payload, data_coding, context)
        return None
    concat = sar_concat_info(tlvs)
    if concat is None:
        return None
    return ConcatPart(concat, user_data, data_coding, context)


@dataclass(slots=True, frozen=True)
class ReassembledMessage:
    key: Hashable
    reference: int
    data_coding: int  # that of part 1
    payload: bytes  # the parts' payloads joined in order
    parts: tuple[ConcatPart, ...]  # in sequence order


class IncompleteReason(enum.StrEnum):
    TIMEOUT = "timeout"
    EVICTED = "evicted"  # pushed out by max_pending or max_bytes


@dataclass(slots=True, frozen=True)
class IncompleteMessage:
    key: Hashable
    reference: int
    total: int
    parts: tuple[ConcatPart, ...]  # those that arrived, in sequence order
    reason: IncompleteReason

    @property
    def missing(self) -> tuple[int, ...]:
        present = {part.concat.seqnum for part in self.parts}
        return tuple(seq for seq in range(1, self.total + 1) if seq not in present)


@dataclass(slots=True)
class _Pending:
    key: Hashable
    reference: int
    total: int
    last_activity: float
    size: int = 0
    parts: dict[int, ConcatPart] = field(default_factory=dict)


class Reassembler:
    """Joins parts of the same message: same caller key (e.g. link, source and destination
    address), same reference and same total.

    `timeout`: seconds without a new part after which `expire` gives a message up.
    `max_pending`, `max_bytes`: bounds on messages and payload octets held; beyond them the
    oldest pending message is evicted and reported by the next `expire` call.
    A duplicate part (same sequence number) is ignored: the first copy is kept.
    """

    def __init__(self, timeout: float, max_pending: int, max_bytes: int) -> None:
        if timeout <= 0 or max_pending < 1 or max_bytes < 1:
            raise ValueError("timeout, max_pending and max_bytes must be positive")
        self.timeout = timeout
        self.max_pending = max_pending
        self.max_bytes = max_bytes
        self._pending: dict[tuple[Hashable, int, int], _Pending] = {}  # oldest first
        self._bytes = 0
        self._evicted: list[IncompleteMessage] = []
        self._evicted_at = 0.0

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    @property
    def pending_bytes(self) -> int:
        return self._bytes

    def add(self, key: Hashable, part: ConcatPart, now: float) -> ReassembledMessage | None:
        """Take one part; return the whole message when this part completes it."""
        concat = part.concat
        if concat.total == 1:
            return ReassembledMessage(
                key, concat.reference, part.data_coding, part.payload, (part,)
            )
        group_key = (key, concat.reference, concat.total)
        pending = self._pending.get(group_key)
        if pending is None:
            pending = _Pending(key, concat.reference, concat.total, now)
            self._pending[group_key] = pending
        if concat.seqnum in pending.parts:
            return None
        pending.parts[concat.seqnum] = part
        pending.size += len(part.payload)
        pending.last_activity = now
        self._bytes += len(part.payload)
        if len(pending.parts) == pending.total:
            del self._pending[group_key]
            self._bytes -= pending.size
            ordered = tuple(pending.parts[seq] for seq in range(1, pending.total + 1))
            return ReassembledMessage(
                key,
                pending.reference,
                ordered[0].data_coding,
                b"".join(p.payload for p in ordered),
                ordered,
            )
        self._enforce_bounds(now)
        return None

    def _enforce_bounds(self, now: float) -> None:
        while self._pending and (
            len(self._pending) > self.max_pending or self._bytes > self.max_bytes
        ):
            oldest_key = next(iter(self._pending))
            if not self._evicted:
                self._evicted_at = now
            self._evicted.append(self._give_up(oldest_key, IncompleteReason.EVICTED))

    def _give_up(
        self, group_key: tuple[Hashable, int, int], reason: IncompleteReason
    ) -> IncompleteMessage:
        pending = self._pending.pop(group_key)
        self._bytes -= pending.size
        ordered = tuple(pending.parts[seq] for seq in sorted(pending.parts))
        return IncompleteMessage(pending.key, pending.reference, pending.total, ordered, reason)

    def expire(self, now: float) -> list[IncompleteMessage]:
        """Messages evicted since the last call, then those idle for `timeout` or longer."""
        given_up, self._evicted = self._evicted, []
        stale = [
            group_key
            for group_key, pending in self._pending.items()
            if now - pending.last_activity >= self.timeout
        ]
        given_up.extend(self._give_up(group_key, IncompleteReason.TIMEOUT) for group_key in stale)
        return given_up

    def next_deadline(self) -> float | None:
        """When `expire` next has work: the time of an uncollected eviction, else the earliest
        timeout, else None."""
        if self._evicted:
            return self._evicted_at
        if not self._pending:
            return None
        return min(p.last_activity for p in self._pending.values()) + self.timeout
