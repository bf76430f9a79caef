"""Intake rules that do not need a running daemon."""

from __future__ import annotations

from gateway.intake import part_fits_one_sms, source_address_type
from smpp.segmentation import Concatenation, split_text


def test_a_gsm_part_with_udh_fits_when_its_septets_pack_into_140_octets() -> None:
    parts = split_text("x" * 300, "gsm7", concatenation=Concatenation.UDH8)
    assert len(parts[0].short_message) == 6 + 153  # what smpplib and others send as one part
    assert all(part_fits_one_sms(part.short_message, 0) for part in parts)
    assert not part_fits_one_sms(bytes([5, 0, 3, 1, 2, 1]) + b"x" * 154, 0)


def test_a_ucs2_part_with_udh_is_limited_to_140_octets() -> None:
    header = bytes([5, 0, 3, 1, 2, 1])
    assert part_fits_one_sms(header + b"\x00a" * 67, 8)
    assert not part_fits_one_sms(header + b"\x00a" * 68, 8)


def test_a_udh_longer_than_the_part_does_not_fit() -> None:
    assert not part_fits_one_sms(bytes([20, 0, 3]), 0)


def test_sender_ids_get_the_address_type_smscs_expect() -> None:
    assert source_address_type("Tandem") == (5, 0)
    assert source_address_type("+447911123456") == (1, 1)
    assert source_address_type("447911123456") == (1, 1)
    assert source_address_type("12345") == (0, 1)
