"""GSM 03.38 alphabet: unpacked and packed round trips, lenient decoding, independent oracles."""

from __future__ import annotations

import pytest
import smpplib.gsm
from aiosmpplib.codec import GSM7BitPackedCodec
from hypothesis import given
from hypothesis import strategies as st

from smpp import gsm7

GSM_CHARACTERS = sorted(set(gsm7.BASIC_TABLE.replace("\x1b", "")) | set("^{}\\[~]|€\x0c"))
gsm_text = st.text(alphabet=GSM_CHARACTERS, max_size=400)


def reference_pack(septets: bytes, fill_bits: int) -> bytes:
    """TS 23.038 6.1.2.1 read literally: a bit stream, least significant bit first."""
    bits = [0] * fill_bits
    for septet in septets:
        bits.extend((septet >> bit) & 1 for bit in range(7))
    bits.extend([0] * (-len(bits) % 8))
    return bytes(
        sum(bits[offset + bit] << bit for bit in range(8)) for offset in range(0, len(bits), 8)
    )


@given(gsm_text)
def test_unpacked_round_trip_for_every_gsm_representable_text(text: str) -> None:
    assert gsm7.decode(gsm7.encode(text)) == text


@given(gsm_text, st.integers(min_value=0, max_value=6))
def test_packed_round_trip_with_any_fill_bits(text: str, fill_bits: int) -> None:
    septets = gsm7.encode(text)
    packed = gsm7.pack(septets, fill_bits)
    assert len(packed) == gsm7.packed_length(len(septets), fill_bits)
    assert gsm7.unpack(packed, len(septets), fill_bits) == septets
    assert gsm7.decode(gsm7.unpack(packed, len(septets), fill_bits)) == text


@given(st.binary(max_size=200).map(lambda b: bytes(x & 0x7F for x in b)), st.integers(0, 6))
def test_pack_matches_the_bit_stream_definition(septets: bytes, fill_bits: int) -> None:
    assert gsm7.pack(septets, fill_bits) == reference_pack(septets, fill_bits)


# smpplib's table puts '`' where TS 23.038 has '§' (0x5F) and lacks form feed; compare the rest.
SMPPLIB_AGREED = [c for c in GSM_CHARACTERS if c in smpplib.gsm.GSM_CHARACTER_TABLE]


@given(st.text(alphabet=SMPPLIB_AGREED, max_size=400))
def test_unpacked_encoding_agrees_with_smpplib(text: str) -> None:
    assert gsm7.encode(text) == smpplib.gsm.gsm_encode(text)


@given(gsm_text)
def test_packed_encoding_agrees_with_aiosmpplib(text: str) -> None:
    expected, _ = GSM7BitPackedCodec().encode(text)
    assert gsm7.pack(gsm7.encode(text)) == expected


def test_hellohello_packs_to_the_textbook_octets() -> None:
    assert gsm7.pack(gsm7.encode("hellohello")) == bytes.fromhex("E8329BFD4697D9EC37")


def test_euro_sign_is_an_escape_pair_and_costs_two_septets() -> None:
    assert gsm7.encode("€") == b"\x1b\x65"
    assert gsm7.septet_length("a€{") == 5
    assert gsm7.extension_count("a€{") == 2


def test_at_sign_is_septet_zero_and_backtick_is_not_representable() -> None:
    assert gsm7.encode("@") == b"\x00"
    assert not gsm7.is_representable("`")
    with pytest.raises(gsm7.Gsm7EncodeError) as caught:
        gsm7.encode("ok `ł` ł")
    assert caught.value.characters == "`ł"
    assert "'ł'" in str(caught.value)


def test_fill_bits_align_the_first_septet_after_the_udh() -> None:
    assert gsm7.fill_bits_for_header(6) == 1  # 8-bit reference concat UDH
    assert gsm7.fill_bits_for_header(7) == 0  # 16-bit reference concat UDH
    assert gsm7.fill_bits_for_header(0) == 0
    assert all((octets * 8 + gsm7.fill_bits_for_header(octets)) % 7 == 0 for octets in range(140))


def test_high_octets_decode_as_question_marks() -> None:
    assert gsm7.decode(b"A\x80\xffB") == "A??B"


def test_escape_with_unknown_extension_code_falls_back_to_the_basic_character() -> None:
    assert gsm7.decode(b"\x1b\x41") == "A"


def test_trailing_or_doubled_escape_decodes_as_space() -> None:
    assert gsm7.decode(b"ab\x1b") == "ab "
    assert gsm7.decode(b"\x1b\x1b\x65") == " €"


def test_unpack_cuts_a_septet_count_larger_than_the_data() -> None:
    packed = gsm7.pack(gsm7.encode("abc"))
    assert gsm7.unpack(packed, 50) == gsm7.encode("abc")


@given(st.binary(max_size=300))
def test_decode_never_raises_on_random_octets(data: bytes) -> None:
    assert isinstance(gsm7.decode(data), str)


@given(st.binary(max_size=300), st.none() | st.integers(-5, 400), st.integers(0, 6))
def test_unpack_never_raises_on_random_octets(
    data: bytes, septet_count: int | None, fill_bits: int
) -> None:
    septets = gsm7.unpack(data, septet_count, fill_bits)
    assert all(septet < 0x80 for septet in septets)
    assert isinstance(gsm7.decode(septets), str)
