"""Encoding choice, encode_text / decode_text for each data_coding, lenient decoding."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smpp import gsm7
from smpp.text import DataCoding, Encoding, TextEncodingError, decode_text, encode_text

GSM_CHARACTERS = sorted(set(gsm7.BASIC_TABLE.replace("\x1b", "")) | set("^{}\\[~]|€\x0c"))


@given(st.text(max_size=300))
def test_ucs2_round_trips_any_text_including_astral(text: str) -> None:
    data_coding, data = encode_text(text, "ucs2")
    assert data_coding == 8
    assert decode_text(data, data_coding) == text


@given(st.text(alphabet=GSM_CHARACTERS, max_size=300))
def test_auto_chooses_gsm7_when_every_character_fits(text: str) -> None:
    data_coding, data = encode_text(text)
    assert data_coding == 0
    assert decode_text(data, data_coding) == text


@given(st.text(alphabet=st.characters(max_codepoint=0xFF), max_size=300))
def test_latin1_round_trips_latin1_text(text: str) -> None:
    data_coding, data = encode_text(text, Encoding.LATIN1)
    assert data_coding == 3
    assert data == text.encode("latin-1")
    assert decode_text(data, data_coding) == text


def test_auto_falls_back_to_ucs2_for_a_character_outside_gsm() -> None:
    assert encode_text("Cześć") == (8, "Cześć".encode("utf-16-be"))


def test_emoji_becomes_a_surrogate_pair_in_ucs2() -> None:
    assert encode_text("😀", "ucs2") == (8, b"\xd8\x3d\xde\x00")


def test_forcing_gsm7_on_unrepresentable_text_names_the_characters() -> None:
    with pytest.raises(TextEncodingError) as caught:
        encode_text("Zoë 😀 ë", "gsm7")
    assert caught.value.encoding is Encoding.GSM7
    assert caught.value.characters == "ë😀"


def test_latin1_refuses_characters_above_ff() -> None:
    with pytest.raises(TextEncodingError) as caught:
        encode_text("price €5", "latin1")
    assert caught.value.characters == "€"


def test_unpaired_surrogate_is_refused_for_ucs2() -> None:
    with pytest.raises(TextEncodingError):
        encode_text("a\ud83d", "ucs2")


def test_unknown_encoding_name_is_refused() -> None:
    with pytest.raises(ValueError):
        encode_text("hi", "utf-8")


def test_odd_length_ucs2_keeps_what_decodes_and_marks_the_rest() -> None:
    assert decode_text(b"\x00h\x00i\x00", 8) == "hi\ufffd"


def test_lone_surrogate_in_ucs2_becomes_replacement_character() -> None:
    assert decode_text(b"\xd8\x3d\x00a", 8) == "\ufffda"


@pytest.mark.parametrize(
    ("data_coding", "data", "expected"),
    [
        (0xF0, b"\x1b\x65", "€"),  # GSM DCS: class 0, default alphabet
        (0xF4, b"\xe9", "\xe9"),  # GSM DCS: class 0, 8-bit
        (0x18, b"\x04\x1f", "П"),  # general group, UCS-2
        (0x11, b"\x00", "@"),  # general group with class, default alphabet
        (0xE0, b"\x00A", "A"),  # message waiting, UCS-2
        (0x01, b"plain", "plain"),  # IA5
        (0x06, b"\xbf", "П"),  # ISO-8859-5
        (0x04, b"\x00\xff", "\x00\xff"),  # binary, octet for code point
    ],
)
def test_data_coding_values_select_the_right_alphabet(
    data_coding: int, data: bytes, expected: str
) -> None:
    assert decode_text(data, data_coding) == expected


@given(st.binary(max_size=300), st.integers(min_value=0, max_value=255))
def test_decoding_never_raises_on_random_octets(data: bytes, data_coding: int) -> None:
    assert isinstance(decode_text(data, data_coding), str)


def test_data_coding_constants_match_smpp() -> None:
    assert (DataCoding.SMSC_DEFAULT, DataCoding.LATIN1, DataCoding.UCS2) == (0, 3, 8)
    assert int(DataCoding.OCTET_UNSPECIFIED) == 4
