"""Properties of the SMPP codec: round trips of generated PDUs, and no input that makes it raise.

Field limits below are the spec's (SMPP 3.4 section 4), written out here rather than read from
the codec, so a wrong limit in the codec shows up as a failing round trip.
"""

from __future__ import annotations

import dataclasses
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smpp.codec import PduDecoder, PduEncodeError, PduError, decode, encode
from smpp.constants import CommandStatus
from smpp.pdu import (
    PDU_CLASSES,
    AlertNotification,
    DataSm,
    DistributionList,
    Pdu,
    SmeAddress,
    UnsuccessSme,
)
from smpp.tlv import CSTRING_TLV_MAX, INTEGER_TLV_SIZES

# Longest value of each C-Octet String field, in octets without the NUL (spec section 4).
STRING_MAX = {
    "system_id": 15,
    "password": 8,
    "system_type": 12,
    "address_range": 40,
    "service_type": 5,
    "source_addr": 20,
    "destination_addr": 20,
    "esme_addr": 64,
    "schedule_delivery_time": 16,
    "validity_period": 16,
    "message_id": 64,
    "final_date": 16,
}
# data_sm and alert_notification allow 64-octet addresses (sections 4.7.1, 4.12.1).
LONG_ADDRESS_CLASSES = {DataSm, AlertNotification}

u8 = st.integers(0, 0xFF)
u32 = st.integers(0, 0xFFFFFFFF)


def c_string(max_octets: int) -> st.SearchStrategy[str]:
    return st.text(st.characters(min_codepoint=1, max_codepoint=0xFF), max_size=max_octets)


def tlv_value(tag: int) -> st.SearchStrategy[object]:
    if tag in INTEGER_TLV_SIZES:
        return st.integers(0, 2 ** (8 * INTEGER_TLV_SIZES[tag]) - 1)
    if tag in CSTRING_TLV_MAX:
        return c_string(CSTRING_TLV_MAX[tag] - 1)
    return st.binary(max_size=300)


known_tags = sorted({*INTEGER_TLV_SIZES, *CSTRING_TLV_MAX, 0x0202, 0x0381, 0x0423, 0x0424})
unknown_tags = st.integers(0, 0xFFFF).filter(
    lambda tag: tag not in INTEGER_TLV_SIZES and tag not in CSTRING_TLV_MAX
)


@st.composite
def tlv_dicts(draw: st.DrawFn) -> dict[int, object]:
    tags = draw(st.lists(st.sampled_from(known_tags) | unknown_tags, max_size=6, unique=True))
    return {tag: draw(tlv_value(tag)) for tag in tags}


dest_addresses = st.lists(
    st.builds(SmeAddress, u8, u8, c_string(20)) | st.builds(DistributionList, c_string(20)),
    max_size=6,
)
unsuccess_sme = st.lists(st.builds(UnsuccessSme, u8, u8, c_string(20), u32), max_size=6)


@st.composite
def pdus(draw: st.DrawFn, classes: list[type[Pdu]] | None = None) -> Pdu:
    cls = draw(st.sampled_from(classes or sorted(PDU_CLASSES.values(), key=lambda c: c.__name__)))
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        name = field.name
        if name in ("sequence_number", "command_status"):
            values[name] = draw(u32)
        elif name == "short_message":
            values[name] = draw(st.binary(max_size=254))
        elif name == "tlvs":
            values[name] = draw(tlv_dicts())
        elif name == "dest_addresses":
            values[name] = draw(dest_addresses)
        elif name == "unsuccess_sme":
            values[name] = draw(unsuccess_sme)
        elif field.type == "str":
            longest = STRING_MAX[name]
            if cls in LONG_ADDRESS_CLASSES and name in ("source_addr", "destination_addr"):
                longest = 64
            values[name] = draw(c_string(longest))
        else:
            values[name] = draw(u8)
    return cls(**values)


@given(pdus())
def test_decode_of_encode_is_identity_for_every_generated_pdu(pdu: Pdu) -> None:
    assert decode(encode(pdu)) == pdu


# Generating five PDUs is slow when the machine is busy; the property does not depend on speed.
@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(pdus(), min_size=1, max_size=5), st.data())
def test_stream_of_pdus_decodes_the_same_however_it_is_chunked(
    items: list[Pdu], data: st.DataObject
) -> None:
    stream = b"".join(encode(pdu) for pdu in items)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=20)))
    decoder = PduDecoder()
    decoded: list[object] = []
    start = 0
    for cut in [*cuts, len(stream)]:
        decoded += decoder.feed(stream[start:cut])
        start = cut
    assert decoded == items
    assert decoder.buffered == 0


def feed_in_chunks(decoder: PduDecoder, stream: bytes, sizes: list[int]) -> list[object]:
    items: list[object] = []
    pos = 0
    for size in sizes:
        items += decoder.feed(stream[pos : pos + size])
        pos += size
    items += decoder.feed(stream[pos:])
    return items


def assert_only_pdus_and_errors(items: list[object]) -> None:
    for index, item in enumerate(items):
        assert isinstance(item, (Pdu, PduError))
        if isinstance(item, PduError):
            # ESME_RSYSERR would mean a decoder crashed and the safety net caught it.
            assert item.status != CommandStatus.ESME_RSYSERR, item
            if item.fatal:
                assert index == len(items) - 1, "nothing may follow a fatal error"


chunk_sizes = st.lists(st.integers(1, 64), max_size=40)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000), chunk_sizes)
def test_random_bytes_in_random_chunks_yield_only_pdus_and_pdu_errors(
    stream: bytes, sizes: list[int]
) -> None:
    assert_only_pdus_and_errors(feed_in_chunks(PduDecoder(max_length=4096), stream, sizes))


@given(st.sampled_from(sorted(PDU_CLASSES)), st.binary(max_size=600), u32, chunk_sizes)
def test_random_bodies_behind_valid_headers_yield_only_pdus_and_pdu_errors(
    command_id: int, body: bytes, sequence_number: int, sizes: list[int]
) -> None:
    wire = struct.pack(">IIII", 16 + len(body), command_id, 0, sequence_number) + body
    items = feed_in_chunks(PduDecoder(), wire, sizes)
    assert_only_pdus_and_errors(items)
    assert len(items) == 1
    assert items[0].sequence_number == sequence_number  # type: ignore[attr-defined]


@st.composite
def mutated_frames(draw: st.DrawFn) -> bytes:
    """A valid PDU with a few octets flipped, cut or inserted, its command_length kept true."""
    body = bytearray(encode(draw(pdus()))[16:])
    header = bytearray(encode(draw(pdus()))[:16])
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["flip", "cut", "insert", "truncate"]))
        where = draw(st.integers(0, len(body)))
        if action == "flip" and where < len(body):
            body[where] = draw(u8)
        elif action == "cut":
            del body[where : where + draw(st.integers(1, 8))]
        elif action == "insert":
            body[where:where] = draw(st.binary(min_size=1, max_size=8))
        else:
            del body[where:]
    # Any command_id paired with any body: bodies meet decoders they were not made for.
    struct.pack_into(">I", header, 0, 16 + len(body))
    return bytes(header + body)


@given(mutated_frames())
def test_decode_of_a_mutated_frame_gives_a_pdu_or_raises_only_pdu_error(wire: bytes) -> None:
    try:
        pdu = decode(wire)
    except PduError as error:
        assert error.status != CommandStatus.ESME_RSYSERR, error
        assert not error.fatal
        assert isinstance(error.reply(), Pdu)
        return
    # Whatever decodes must encode again, to the same PDU.
    assert decode(encode(pdu)) == pdu


@given(st.lists(mutated_frames(), min_size=1, max_size=4), chunk_sizes)
def test_stream_of_mutated_frames_in_chunks_yields_one_item_per_frame(
    frames: list[bytes], sizes: list[int]
) -> None:
    items = feed_in_chunks(PduDecoder(), b"".join(frames), sizes)
    assert_only_pdus_and_errors(items)
    assert len(items) == len(frames)


@given(
    st.integers(0, 15) | st.integers(4097, 0xFFFFFFFF),
    st.binary(max_size=100),
    st.integers(0, 3),
)
def test_command_length_outside_limits_is_fatal_as_soon_as_its_four_octets_arrive(
    command_length: int, rest: bytes, split: int
) -> None:
    decoder = PduDecoder(max_length=4096)
    wire = struct.pack(">I", command_length) + rest
    assert decoder.feed(wire[:split]) == []
    items = decoder.feed(wire[split:4])
    assert len(items) == 1
    error = items[0]
    assert isinstance(error, PduError)
    assert error.fatal
    assert error.status == CommandStatus.ESME_RINVCMDLEN
    assert decoder.buffered == 0
    assert decoder.feed(wire[4:]) == []
    assert decoder.buffered == 0


@given(st.integers(16, 4096), pdus())
def test_command_length_within_limits_waits_for_the_whole_frame(
    command_length: int, pdu: Pdu
) -> None:
    decoder = PduDecoder(max_length=4096)
    wire = struct.pack(">IIII", command_length, pdu.command_id, 0, 1)
    wire += b"\0" * (command_length - 16)
    assert decoder.feed(wire[:-1]) == []
    assert decoder.buffered == len(wire) - 1
    assert len(decoder.feed(wire[-1:])) == 1
    assert decoder.buffered == 0


@pytest.mark.slow
@settings(max_examples=20000, deadline=None)
@given(mutated_frames())
def test_decode_of_mutated_frames_long_run(wire: bytes) -> None:
    try:
        pdu = decode(wire)
    except PduError as error:
        assert error.status != CommandStatus.ESME_RSYSERR, error
        return
    try:
        again = encode(pdu)
    except PduEncodeError:  # pragma: no cover - reported by the assertion below
        raise AssertionError(f"decoded PDU cannot be encoded again: {pdu!r}") from None
    assert decode(again) == pdu
