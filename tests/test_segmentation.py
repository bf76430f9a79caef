"""Splitting into SMS parts: limits, never splitting pairs, UDH / SAR / payload wrappers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smpp import gsm7
from smpp.constants import Tag
from smpp.segmentation import (
    Concatenation,
    Segment,
    TooManyParts,
    describe_text,
    split_bytes,
    split_text,
)
from smpp.text import Encoding, decode_text

GSM_CHARACTERS = sorted(set(gsm7.BASIC_TABLE.replace("\x1b", "")) | set("^{}\\[~]|€\x0c"))
# Weighted towards the awkward cases: extension characters and astral emoji.
mixed_text = st.text(
    alphabet=st.sampled_from(["a", "€", "{", "😀", "é", "Ж"]) | st.characters(codec="utf-8"),
    max_size=1500,
)
gsm_text = st.text(alphabet=st.sampled_from(["a", "€", "{", " "]) | st.sampled_from(GSM_CHARACTERS))

# Per-part limits in the units of each encoding: (single part, with UDH8/SAR, with UDH16).
LIMITS = {
    Encoding.GSM7: (160, 153, 152),
    Encoding.UCS2: (70, 67, 66),
    Encoding.LATIN1: (140, 134, 133),
}


def user_data(segment: Segment) -> bytes:
    """The part's payload without its UDH (or the message_payload TLV)."""
    if Tag.MESSAGE_PAYLOAD in segment.tlvs:
        value = segment.tlvs[Tag.MESSAGE_PAYLOAD]
        assert isinstance(value, bytes)
        return value
    if segment.esm_class_udhi:
        return segment.short_message[1 + segment.short_message[0] :]
    return segment.short_message


def units(data: bytes, encoding: Encoding) -> int:
    return len(data) // 2 if encoding is Encoding.UCS2 else len(data)


def limit_for(encoding: Encoding, concatenation: Concatenation, total: int) -> int:
    single, with_udh8, with_udh16 = LIMITS[encoding]
    if total == 1:
        return single
    return with_udh16 if concatenation is Concatenation.UDH16 else with_udh8


@given(mixed_text, st.sampled_from(list(Concatenation)))
def test_parts_rejoin_to_the_original_and_respect_their_limits(
    text: str, concatenation: Concatenation
) -> None:
    segments = split_text(text, concatenation=concatenation, reference=7)
    encoding = describe_text(text).encoding
    rejoined = b"".join(user_data(segment) for segment in segments)
    assert decode_text(rejoined, segments[0].data_coding) == text
    total = segments[0].total
    assert [segment.index for segment in segments] == list(range(1, len(segments) + 1))
    if concatenation is Concatenation.PAYLOAD:
        assert len(segments) == 1
        return
    for segment in segments:
        assert units(user_data(segment), encoding) <= limit_for(encoding, concatenation, total)
        assert len(segment.short_message) <= 140


@given(mixed_text)
def test_no_part_ends_inside_an_escape_or_surrogate_pair(text: str) -> None:
    segments = split_text(text)
    pieces = [decode_text(user_data(segment), segment.data_coding) for segment in segments]
    assert "".join(pieces) == text  # each part decodes alone, so nothing was cut in half
    for segment in segments:
        data = user_data(segment)
        if segment.data_coding == 0:
            assert not data.endswith(b"\x1b")
        else:
            assert not data or not 0xD8 <= data[-2] <= 0xDB


@given(gsm_text, st.sampled_from([Concatenation.UDH8, Concatenation.UDH16, Concatenation.SAR]))
def test_packed_gsm_parts_unpack_to_the_same_septets(
    text: str, concatenation: Concatenation
) -> None:
    unpacked = split_text(text, "gsm7", concatenation=concatenation)
    packed = split_text(text, "gsm7", concatenation=concatenation, gsm7_packed=True)
    for plain, dense in zip(unpacked, packed, strict=True):
        septets = user_data(plain)
        header = 1 + dense.short_message[0] if dense.esm_class_udhi else 0
        fill_bits = gsm7.fill_bits_for_header(header) if header else 0
        assert dense.short_message[:header] == plain.short_message[:header]
        assert len(dense.short_message) <= 140
        assert gsm7.unpack(dense.short_message[header:], len(septets), fill_bits) == septets


def test_brace_that_would_end_a_part_moves_whole_to_the_next_part() -> None:
    text = "a" * 152 + "{" + "b" * 20
    first, second = split_text(text, concatenation=Concatenation.UDH8)
    assert user_data(first) == b"a" * 152
    assert user_data(second).startswith(b"\x1b\x28")
    assert decode_text(user_data(first) + user_data(second), 0) == text


def test_brace_boundary_for_a_sixteen_bit_reference_is_one_septet_earlier() -> None:
    text = "a" * 151 + "}" + "b" * 20
    first, second = split_text(text, concatenation=Concatenation.UDH16)
    assert user_data(first) == b"a" * 151
    assert user_data(second).startswith(b"\x1b\x29")


def test_emoji_at_a_part_boundary_moves_whole_to_the_next_part() -> None:
    text = "Ж" * 66 + "😀" + "Ж" * 10
    first, second = split_text(text)
    assert decode_text(user_data(first), 8) == "Ж" * 66
    assert decode_text(user_data(second), 8) == "😀" + "Ж" * 10


def test_euro_sign_counts_two_septets() -> None:
    info = describe_text("€" * 80)
    assert (info.encoding, info.characters, info.units, info.segments) == ("gsm7", 80, 160, 1)
    assert describe_text("€" * 81).segments == 2
    assert describe_text("a" * 160).segments == 1
    assert describe_text("a" * 159 + "€").segments == 2


def test_emoji_counts_one_character_but_two_ucs2_units() -> None:
    info = describe_text("hi 😀")
    assert (info.encoding, info.characters, info.units) == (Encoding.UCS2, 4, 5)
    assert (info.segments, info.units_per_segment) == (1, 70)


def test_describe_text_shows_multipart_limits_for_long_text() -> None:
    info = describe_text("Ж" * 71)
    assert (info.segments, info.units_per_segment) == (2, 67)
    sixteen = describe_text("a" * 305, concatenation=Concatenation.UDH16)
    assert (sixteen.segments, sixteen.units_per_segment) == (3, 152)
    assert describe_text("", "latin1").segments == 1


def test_describe_text_refuses_forced_gsm7_for_unrepresentable_text() -> None:
    with pytest.raises(ValueError, match="gsm7"):
        describe_text("😀", "gsm7")


# Texts of 1, 2 and 10 parts per encoding under UDH8 limits.
PART_TEXTS = {
    Encoding.GSM7: {1: "g" * 160, 2: "g" * 161, 10: "g" * 1530},
    Encoding.UCS2: {1: "Ж" * 70, 2: "Ж" * 71, 10: "Ж" * 670},
    Encoding.LATIN1: {1: "é" * 140, 2: "é" * 141, 10: "é" * 1340},
}
BINARY = {1: bytes(range(140)), 2: bytes(141), 10: bytes(range(134)) * 10}


def check_wrapping(
    segments: list[Segment], parts: int, concatenation: Concatenation, whole: bytes, dc: int
) -> None:
    assert all(segment.data_coding == dc for segment in segments)
    if parts == 1:
        assert segments == [Segment(whole, False, dc, 1, 1)]
        return
    if concatenation is Concatenation.PAYLOAD:
        assert segments == [Segment(b"", False, dc, 1, 1, {Tag.MESSAGE_PAYLOAD: whole})]
        return
    assert [(s.index, s.total) for s in segments] == [(i, parts) for i in range(1, parts + 1)]
    for segment in segments:
        message = segment.short_message
        if concatenation is Concatenation.SAR:
            assert not segment.esm_class_udhi
            assert segment.tlvs == {
                Tag.SAR_MSG_REF_NUM: 0x1234,
                Tag.SAR_TOTAL_SEGMENTS: parts,
                Tag.SAR_SEGMENT_SEQNUM: segment.index,
            }
        elif concatenation is Concatenation.UDH8:
            assert segment.esm_class_udhi and not segment.tlvs
            assert message[:6] == bytes((5, 0x00, 3, 0x34, parts, segment.index))
        else:
            assert segment.esm_class_udhi and not segment.tlvs
            assert message[:7] == bytes((6, 0x08, 4, 0x12, 0x34, parts, segment.index))
    assert b"".join(user_data(s) for s in segments) == whole


@pytest.mark.parametrize("concatenation", list(Concatenation))
@pytest.mark.parametrize("parts", [1, 2, 10])
@pytest.mark.parametrize("encoding", [Encoding.GSM7, Encoding.UCS2, Encoding.LATIN1])
def test_text_of_1_2_and_10_parts_in_each_encoding_and_concatenation(
    encoding: Encoding, parts: int, concatenation: Concatenation
) -> None:
    text = PART_TEXTS[encoding][parts]
    if concatenation is Concatenation.UDH16 and parts == 10:
        text = text[: -(10 * (LIMITS[encoding][1] - LIMITS[encoding][2]))]
    segments = split_text(text, encoding, concatenation=concatenation, reference=0x1234)
    assert describe_text(text, encoding, concatenation=concatenation).segments == parts
    dc = {Encoding.GSM7: 0, Encoding.UCS2: 8, Encoding.LATIN1: 3}[encoding]
    whole = text.encode("utf-16-be") if encoding is Encoding.UCS2 else gsm7.encode(text)
    if encoding is Encoding.LATIN1:
        whole = text.encode("latin-1")
    check_wrapping(segments, parts, concatenation, whole, dc)


@pytest.mark.parametrize("concatenation", list(Concatenation))
@pytest.mark.parametrize("parts", [1, 2, 10])
def test_binary_of_1_2_and_10_parts_in_each_concatenation(
    parts: int, concatenation: Concatenation
) -> None:
    data = BINARY[parts]
    if concatenation is Concatenation.UDH16 and parts == 10:
        data = data[:-10]
    segments = split_bytes(data, 4, concatenation=concatenation, reference=0x1234)
    check_wrapping(segments, parts, concatenation, data, 4)


def test_eight_bit_reference_is_taken_modulo_256() -> None:
    first = split_text("x" * 200, reference=0x1FF)[0]
    assert first.short_message[3] == 0xFF


def test_too_many_parts_is_refused_with_the_counts_never_truncated() -> None:
    with pytest.raises(TooManyParts) as caught:
        split_text("a" * (153 * 3 + 1), max_parts=3)
    assert (caught.value.parts_needed, caught.value.max_parts) == (4, 3)
    assert "4 parts" in str(caught.value)
    assert len(split_text("a" * (153 * 3), max_parts=3)) == 3


def test_payload_concatenation_still_honours_max_parts() -> None:
    with pytest.raises(TooManyParts):
        split_text("Ж" * 68 * 2, concatenation=Concatenation.PAYLOAD, max_parts=2)


def test_binary_is_refused_beyond_max_parts() -> None:
    with pytest.raises(TooManyParts) as caught:
        split_bytes(bytes(135 * 2), max_parts=2)
    assert caught.value.parts_needed == 3


def test_pre_encoded_gsm_septets_split_on_septet_limits_keeping_escape_pairs() -> None:
    septets = gsm7.encode("a" * 152 + "€" + "b" * 10)
    first, second = split_bytes(septets, 0)
    assert user_data(first) == b"a" * 152
    assert user_data(second) == gsm7.encode("€" + "b" * 10)


def test_pre_encoded_ucs2_keeps_surrogate_pairs_whole() -> None:
    data = ("Ж" * 66 + "😀" + "Ж" * 5).encode("utf-16-be")
    first, second = split_bytes(data, 8)
    assert user_data(first) == ("Ж" * 66).encode("utf-16-be")
    assert user_data(second) == ("😀" + "Ж" * 5).encode("utf-16-be")
