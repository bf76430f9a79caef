"""Inbound concatenation: UDH parsing, SAR TLVs, and the bounded Reassembler."""

from __future__ import annotations

from random import Random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smpp.reassembly import (
    ConcatInfo,
    ConcatPart,
    IncompleteReason,
    MalformedUdh,
    Reassembler,
    concat_part_of,
    parse_udh,
    sar_concat_info,
)
from smpp.segmentation import Concatenation, Segment, split_text
from smpp.text import decode_text


def part_from(segment: Segment, context: object = None) -> ConcatPart:
    """What an inbound handler does with a deliver_sm's fields."""
    part = concat_part_of(
        segment.short_message, segment.esm_class_bits, segment.data_coding, segment.tlvs, context
    )
    assert part is not None
    return part


def make_part(
    seqnum: int, total: int = 3, reference: int = 9, payload: bytes = b"xx"
) -> ConcatPart:
    return ConcatPart(ConcatInfo(reference, total, seqnum, 8), payload, 0)


@given(
    st.text(min_size=1, max_size=1200),
    st.sampled_from([Concatenation.UDH8, Concatenation.UDH16, Concatenation.SAR]),
    st.integers(0, 0xFFFF),
    st.randoms(use_true_random=False),
)
def test_split_then_reassembled_in_any_order_gives_the_text_back(
    text: str, concatenation: Concatenation, reference: int, rng: Random
) -> None:
    segments = split_text(text, concatenation=concatenation, reference=reference)
    parts = [part_from(segment) for segment in segments] if len(segments) > 1 else []
    if not parts:
        return
    rng.shuffle(parts)
    reassembler = Reassembler(timeout=60, max_pending=10, max_bytes=100_000)
    results = [reassembler.add(("link", "4670", "123"), part, now=1.0) for part in parts]
    assert results[:-1] == [None] * (len(parts) - 1)
    message = results[-1]
    assert message is not None
    assert decode_text(message.payload, message.data_coding) == text
    assert [p.concat.seqnum for p in message.parts] == list(range(1, len(parts) + 1))
    assert reassembler.pending_count == 0 and reassembler.pending_bytes == 0


def test_udh_with_other_elements_keeps_them_and_finds_the_sixteen_bit_reference() -> None:
    # Port addressing (0x05) before a 16-bit concatenation element.
    message = bytes((12, 0x05, 4, 0x0B, 0x84, 0x23, 0xF0, 0x08, 4, 0xAB, 0xCD, 3, 2)) + b"hi"
    header = parse_udh(message)
    assert header.concat == ConcatInfo(0xABCD, 3, 2, 16)
    assert header.elements == ((0x05, bytes((0x0B, 0x84, 0x23, 0xF0))),)
    assert header.payload == b"hi"
    assert header.header_octets == 13


def test_concatenation_element_with_sequence_beyond_total_is_ignored() -> None:
    header = parse_udh(bytes((5, 0x00, 3, 1, 2, 3)) + b"x")
    assert header.concat is None
    assert header.elements == ((0x00, bytes((1, 2, 3))),)


@pytest.mark.parametrize(
    "message",
    [b"", bytes((6, 0x00, 3, 1, 2, 1)), bytes((5, 0x00, 4, 1, 2, 1)), bytes((1, 0x00))],
)
def test_udh_running_past_its_bounds_is_malformed(message: bytes) -> None:
    with pytest.raises(MalformedUdh):
        parse_udh(message)


@given(st.binary(max_size=200))
def test_udh_parser_only_ever_raises_malformed_udh(message: bytes) -> None:
    try:
        header = parse_udh(message)
    except MalformedUdh:
        return
    assert header.header_octets + len(header.payload) == len(message)


def test_sar_tlvs_missing_or_inconsistent_give_no_concatenation() -> None:
    assert sar_concat_info({0x020C: 5, 0x020E: 2, 0x020F: 2}) == ConcatInfo(5, 2, 2, 16)
    assert sar_concat_info({0x020C: 5, 0x020E: 2}) is None
    assert sar_concat_info({0x020C: 5, 0x020E: 2, 0x020F: 3}) is None
    assert sar_concat_info({0x020C: b"\x00\x05", 0x020E: 2, 0x020F: 1}) is None


def test_single_part_message_completes_at_once() -> None:
    reassembler = Reassembler(timeout=10, max_pending=1, max_bytes=10)
    message = reassembler.add("k", make_part(1, total=1), now=0)
    assert message is not None and message.payload == b"xx"
    assert reassembler.pending_count == 0


def test_duplicate_part_is_ignored_and_the_first_copy_kept() -> None:
    reassembler = Reassembler(timeout=10, max_pending=5, max_bytes=1000)
    assert reassembler.add("k", make_part(1, total=2, payload=b"first"), now=0) is None
    assert reassembler.add("k", make_part(1, total=2, payload=b"again"), now=1) is None
    message = reassembler.add("k", make_part(2, total=2, payload=b"!"), now=2)
    assert message is not None and message.payload == b"first!"


def test_parts_from_different_senders_with_the_same_reference_do_not_mix() -> None:
    reassembler = Reassembler(timeout=10, max_pending=5, max_bytes=1000)
    assert reassembler.add("alice", make_part(1, total=2, payload=b"A1"), now=0) is None
    assert reassembler.add("bob", make_part(2, total=2, payload=b"B2"), now=0) is None
    assert reassembler.pending_count == 2
    done = reassembler.add("alice", make_part(2, total=2, payload=b"A2"), now=0)
    assert done is not None and (done.key, done.payload) == ("alice", b"A1A2")


def test_idle_incomplete_message_expires_with_its_missing_parts_reported() -> None:
    reassembler = Reassembler(timeout=30, max_pending=5, max_bytes=1000)
    reassembler.add("k", make_part(1), now=100)
    reassembler.add("k", make_part(3), now=110)
    assert reassembler.next_deadline() == 140
    assert reassembler.expire(now=139) == []
    (incomplete,) = reassembler.expire(now=140)
    assert incomplete.reason is IncompleteReason.TIMEOUT
    assert incomplete.missing == (2,)
    assert [p.concat.seqnum for p in incomplete.parts] == [1, 3]
    assert reassembler.pending_count == 0 and reassembler.next_deadline() is None


def test_oldest_message_is_evicted_when_too_many_are_pending() -> None:
    reassembler = Reassembler(timeout=30, max_pending=2, max_bytes=1000)
    for reference in (1, 2, 3):
        reassembler.add("k", make_part(1, reference=reference), now=float(reference))
    assert reassembler.pending_count == 2
    assert reassembler.next_deadline() == 3.0  # the eviction waits to be collected
    (evicted,) = reassembler.expire(now=4)
    assert (evicted.reference, evicted.reason) == (1, IncompleteReason.EVICTED)
    assert reassembler.expire(now=5) == []


def test_buffered_bytes_stay_within_max_bytes() -> None:
    reassembler = Reassembler(timeout=30, max_pending=100, max_bytes=250)
    for reference in range(5):
        reassembler.add("k", make_part(1, reference=reference, payload=bytes(100)), now=0)
        assert reassembler.pending_bytes <= 250
    evicted = reassembler.expire(now=0)
    assert [e.reference for e in evicted] == [0, 1, 2]


def test_completed_message_carries_each_parts_context() -> None:
    reassembler = Reassembler(timeout=30, max_pending=5, max_bytes=1000)
    segments = split_text("z" * 200, reference=4)
    assert reassembler.add("k", part_from(segments[1], "msg-2"), now=0) is None
    message = reassembler.add("k", part_from(segments[0], "msg-1"), now=0)
    assert message is not None
    assert [p.context for p in message.parts] == ["msg-1", "msg-2"]
    assert message.reference == 4


def test_single_messages_are_not_parts() -> None:
    assert concat_part_of(b"hello", 0, 0, {}) is None
    port_only_udh = bytes((6, 0x05, 4, 0x0B, 0x84, 0x23, 0xF0)) + b"data"
    assert concat_part_of(port_only_udh, 0x40, 4, {}) is None


def test_message_payload_carrying_a_udh_is_a_part() -> None:
    udh_part = bytes((5, 0x00, 3, 7, 2, 1)) + b"first half"
    part = concat_part_of(b"", 0x40, 0, {0x0424: udh_part})
    assert part is not None
    assert (part.concat, part.payload) == (ConcatInfo(7, 2, 1, 8), b"first half")
