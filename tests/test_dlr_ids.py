"""Carrier id normalisation: both sides of a link must meet on one canonical id."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dlr.ids import (
    InvalidMessageId,
    MessageIdFormat,
    SmppReceiptKey,
    canonical_message_id,
    smpp_receipt_key,
)

HEX, DEC, STR = MessageIdFormat.HEX, MessageIdFormat.DEC, MessageIdFormat.STR


def test_hex_resp_id_meets_decimal_receipt_id() -> None:
    assert canonical_message_id("0A1B", HEX) == canonical_message_id("2587", DEC) == "2587"


@pytest.mark.parametrize("raw", ["0A1B", "0a1b", "A1B", "a1b", "000A1B", "0x0A1B", "0XA1B"])
def test_hex_ids_ignore_case_leading_zeros_and_prefix(raw: str) -> None:
    assert canonical_message_id(raw, HEX) == "2587"


@pytest.mark.parametrize("raw", ["2587", "0002587", " 2587 ", "2587\x00", "\t2587\r\n"])
def test_decimal_ids_ignore_leading_zeros_and_padding(raw: str) -> None:
    assert canonical_message_id(raw, DEC) == "2587"


def test_zero_is_a_valid_id_in_numeric_formats() -> None:
    assert canonical_message_id("0000", DEC) == canonical_message_id("0", HEX) == "0"


def test_str_ids_keep_case_and_zeros_but_lose_padding() -> None:
    assert canonical_message_id(" 00aB-12\x00", STR) == "00aB-12"
    assert canonical_message_id("00ab-12", STR) != canonical_message_id("00AB-12", STR)


@pytest.mark.parametrize(
    ("raw", "fmt"),
    [
        ("", DEC),
        ("   ", STR),
        ("12a", DEC),
        ("-12", DEC),
        ("+12", DEC),
        ("1_000", DEC),
        ("1 000", DEC),
        ("١٢٣", DEC),  # Arabic-Indic digits: int() would accept them, a carrier id must not
        ("²", DEC),
        ("0x", HEX),
        ("12G", HEX),
        ("-1F", HEX),
        ("bc3c5b6a-8a3a", HEX),
        ("9" * 65, DEC),
    ],
)
def test_ids_that_do_not_fit_the_format_are_refused(raw: str, fmt: MessageIdFormat) -> None:
    with pytest.raises(InvalidMessageId):
        canonical_message_id(raw, fmt)


@given(st.integers(min_value=0, max_value=2**200))
def test_the_same_number_written_in_hex_or_decimal_is_the_same_key(value: int) -> None:
    hex_upper = canonical_message_id(f"{value:X}", HEX)
    hex_padded = canonical_message_id(f"{value:012x}", HEX)
    decimal_padded = canonical_message_id(f"{value:015d}", DEC)
    assert hex_upper == hex_padded == decimal_padded == str(value)


@given(st.text(max_size=70))
def test_canonicalising_never_raises_anything_but_invalid_message_id(raw: str) -> None:
    for fmt in MessageIdFormat:
        try:
            result = canonical_message_id(raw, fmt)
        except InvalidMessageId:
            continue
        assert result and result == result.strip(" \t\r\n\x00")
        # Canonical is a fixed point: normalising again changes nothing.
        again_fmt = STR if fmt is STR else DEC
        assert canonical_message_id(result, again_fmt) == result


def test_smpp_key_is_link_plus_canonical_id() -> None:
    assert smpp_receipt_key("carrier-a", "0A1B", HEX) == SmppReceiptKey("carrier-a", "2587")
    assert smpp_receipt_key("carrier-a", "2587", DEC) != smpp_receipt_key("carrier-b", "2587", DEC)
