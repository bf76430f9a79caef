"""Receipts to SMPP customers: registered_delivery rules and a round trip through our parser."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dlr.customer_receipt import _date, _receipt_text, build_customer_receipt, wants_receipt
from dlr.receipt import DeliveryReceipt, NetworkError, is_receipt
from dlr.status import MessageStatus, SegmentStatus, is_final
from smpp.codec import decode, encode
from smpp.constants import Tag
from smpp.pdu import DeliverSm

M = MessageStatus
SUBMITTED_AT = datetime(2024, 3, 5, 9, 41)
DONE_AT = datetime(2024, 3, 5, 9, 42, 30)


@pytest.mark.parametrize(
    ("registered_delivery", "status", "expected"),
    [
        (0x00, M.DELIVERED, False),
        (0x00, M.UNDELIVERABLE, False),
        (0x01, M.DELIVERED, True),
        (0x01, M.UNDELIVERABLE, True),
        (0x01, M.FAILED, True),
        (0x01, M.UNKNOWN, True),
        (0x02, M.DELIVERED, False),
        (0x02, M.EXPIRED, True),
        (0x02, M.REJECTED, True),
        (0x03, M.DELIVERED, True),
        (0x03, M.UNDELIVERABLE, False),
        (0x11, M.DELIVERED, True),  # the intermediate bit does not hide the final receipt
        (0x05, M.DELIVERED, True),  # SME acknowledgement bits are not receipts
        (0x01, M.SUBMITTED, False),  # not an outcome
    ],
)
def test_final_receipts_follow_registered_delivery_bits(
    registered_delivery: int, status: MessageStatus, expected: bool
) -> None:
    assert wants_receipt(registered_delivery, status, intermediate=False) is expected


@pytest.mark.parametrize(
    ("registered_delivery", "expected"), [(0x10, True), (0x11, True), (0x01, False), (0x00, False)]
)
def test_intermediate_notifications_need_bit_4(registered_delivery: int, expected: bool) -> None:
    assert wants_receipt(registered_delivery, M.ENROUTE, intermediate=True) is expected


def test_customer_receipt_has_the_appendix_b_shape() -> None:
    receipt = build_customer_receipt(
        message_id="01HV6Z3K9Q",
        status=M.DELIVERED,
        submitted_at=SUBMITTED_AT,
        done_at=DONE_AT,
        text="Your verification code is 481516, valid 5 minutes",
        original_source="TANDEM",
        original_destination="447700900123",
    )
    assert receipt.short_message == (
        b"id:01HV6Z3K9Q sub:001 dlvrd:001 submit date:2403050941 done date:2403050942"
        b" stat:DELIVRD err:000 text:Your verification co"
    )
    assert receipt.esm_class == 0x04 and is_receipt(receipt.esm_class)
    assert (receipt.source_addr, receipt.destination_addr) == ("447700900123", "TANDEM")
    assert receipt.tlvs == {Tag.RECEIPTED_MESSAGE_ID: "01HV6Z3K9Q", Tag.MESSAGE_STATE: 2}


def test_intermediate_receipt_uses_esm_class_0x20() -> None:
    receipt = build_customer_receipt(
        message_id="m1",
        status=M.ENROUTE,
        submitted_at=SUBMITTED_AT,
        done_at=DONE_AT,
        text="hi",
        original_source="a",
        original_destination="b",
        intermediate=True,
    )
    assert receipt.esm_class == 0x20
    parsed = DeliveryReceipt.parse(receipt.short_message, receipt.tlvs, receipt.esm_class)
    assert parsed.intermediate and parsed.status is SegmentStatus.ENROUTE


def test_failure_receipt_carries_error_and_network_error() -> None:
    receipt = build_customer_receipt(
        message_id="m2",
        status=M.UNDELIVERABLE,
        submitted_at=SUBMITTED_AT,
        done_at=DONE_AT,
        text="x",
        original_source="a",
        original_destination="b",
        error=34,
        network_error=NetworkError(3, 34),
        submitted_count=3,
        delivered_count=2,
    )
    parsed = DeliveryReceipt.parse(receipt.short_message, receipt.tlvs, receipt.esm_class)
    assert (parsed.error, parsed.error_code, parsed.network_error) == (
        "034",
        34,
        NetworkError(3, 34),
    )
    assert (parsed.submitted_count, parsed.delivered_count) == (3, 2)
    assert b"stat:UNDELIV" in receipt.short_message


def test_non_ascii_text_is_replaced_not_leaked() -> None:
    receipt = build_customer_receipt(
        message_id="m3",
        status=M.DELIVERED,
        submitted_at=SUBMITTED_AT,
        done_at=DONE_AT,
        text="Привет\r\nмир",
        original_source="a",
        original_destination="b",
    )
    assert receipt.short_message.endswith(b" text:" + b"?" * 11)
    assert receipt.short_message.isascii()


_STATUSES = st.sampled_from(
    [status for status in M if is_final(status)] + [M.ENROUTE, M.SMSC_ACCEPTED]
)
_IDS = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=64)
_MINUTES = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31)).map(
    lambda moment: moment.replace(second=0, microsecond=0)
)


@given(
    message_id=_IDS,
    status=_STATUSES,
    submitted_at=_MINUTES,
    done_at=_MINUTES,
    text=st.text(max_size=40),
    error=st.integers(0, 999),
)
def test_customer_receipt_round_trips_through_our_own_parser(
    message_id: str,
    status: MessageStatus,
    submitted_at: datetime,
    done_at: datetime,
    text: str,
    error: int,
) -> None:
    receipt = build_customer_receipt(
        message_id=message_id,
        status=status,
        submitted_at=submitted_at,
        done_at=done_at,
        text=text,
        original_source="a",
        original_destination="b",
        error=error,
    )
    with_tlvs = DeliveryReceipt.parse(receipt.short_message, receipt.tlvs, receipt.esm_class)
    text_only = DeliveryReceipt.parse(receipt.short_message, {}, receipt.esm_class)
    expected_status = SegmentStatus.REJECTED if status is M.FAILED else SegmentStatus(status.value)
    for parsed in (with_tlvs, text_only):
        assert parsed.status is expected_status
        assert parsed.error_code == error
        assert (parsed.submit_date, parsed.done_date) == (submitted_at, done_at)
    assert with_tlvs.message_id == message_id
    # Text ids are read up to the first space; ours contain none.
    assert text_only.message_id == message_id


def test_customer_receipt_survives_the_wire_as_a_deliver_sm() -> None:
    receipt = build_customer_receipt(
        message_id="01HV6Z3K9Q-0001",
        status=M.EXPIRED,
        submitted_at=SUBMITTED_AT,
        done_at=DONE_AT,
        text="Reminder: dentist at 9",
        original_source="TANDEM",
        original_source_ton=5,
        original_destination="447700900123",
        original_destination_ton=1,
        original_destination_npi=1,
        network_error=NetworkError(3, 27),
    )
    decoded = decode(encode(receipt.to_deliver_sm(sequence_number=42)))
    assert isinstance(decoded, DeliverSm)
    assert (decoded.sequence_number, decoded.esm_class) == (42, 0x04)
    assert (decoded.source_addr, decoded.source_addr_ton, decoded.source_addr_npi) == (
        "447700900123",
        1,
        1,
    )
    assert (decoded.destination_addr, decoded.dest_addr_ton) == ("TANDEM", 5)
    parsed = DeliveryReceipt.parse(decoded.short_message, decoded.tlvs, decoded.esm_class)
    assert (parsed.message_id, parsed.status, parsed.message_state) == (
        "01HV6Z3K9Q-0001",
        SegmentStatus.EXPIRED,
        3,
    )
    assert parsed.id_from_tlv and parsed.network_error == NetworkError(3, 27)
    assert parsed.text == "Reminder: dentist at"


@given(moment=st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2199, 12, 31)))
def test_receipt_dates_are_what_strftime_gives(moment: datetime) -> None:
    assert _date(moment) == moment.strftime("%y%m%d%H%M")


@given(st.text(max_size=30))
def test_receipt_text_is_the_first_20_characters_with_anything_unprintable_as_a_question_mark(
    text: str,
) -> None:
    expected = "".join(char if " " <= char <= "~" else "?" for char in text[:20])
    assert _receipt_text(text) == expected
