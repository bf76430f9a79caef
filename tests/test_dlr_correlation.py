"""Correlation: receipts that arrive before their submit_sm_resp, and the hold's bounds."""

from __future__ import annotations

import pytest

from dlr.correlation import (
    ApplyReceipt,
    Correlator,
    DropReason,
    HeldReceipt,
    SegmentRef,
)
from dlr.ids import MessageIdFormat, SmppReceiptKey, smpp_receipt_key
from dlr.receipt import DeliveryReceipt
from dlr.status import SegmentStatus

TARGET = SegmentRef("msg-1", 0)


def _receipt(carrier_id: str, stat: str = "DELIVRD") -> DeliveryReceipt:
    return DeliveryReceipt.parse(f"id:{carrier_id} sub:001 dlvrd:001 stat:{stat} err:000")


def test_receipt_with_a_known_target_is_applied_at_once() -> None:
    correlator: Correlator[SmppReceiptKey, DeliveryReceipt] = Correlator()
    key = SmppReceiptKey("a", "1")
    outcome = correlator.on_receipt(key, _receipt("1"), 5.0, found=TARGET)
    assert isinstance(outcome, ApplyReceipt)
    assert (outcome.target, outcome.received_at, outcome.was_held) == (TARGET, 5.0, False)
    assert correlator.stats.held == 0


def test_dlr_before_submit_resp_is_held_then_applied_when_resp_arrives() -> None:
    correlator: Correlator[SmppReceiptKey, DeliveryReceipt] = Correlator(hold_seconds=60)
    # The receipt text carries the id in decimal, the resp in hex: both keys must meet.
    receipt = _receipt("2587")
    receipt_key = smpp_receipt_key("carrier-a", receipt.message_id, MessageIdFormat.DEC)
    outcome = correlator.on_receipt(receipt_key, receipt, 100.0)
    assert isinstance(outcome, HeldReceipt)
    assert outcome.deadline == 160.0
    assert correlator.stats.held == 1

    resp_key = smpp_receipt_key("carrier-a", "0A1B", MessageIdFormat.HEX)
    released = correlator.on_submit_resp(resp_key, TARGET, 101.0)
    assert [(item.receipt, item.target, item.received_at, item.was_held) for item in released] == [
        (receipt, TARGET, 100.0, True)
    ]
    assert correlator.stats.held == 0
    assert correlator.stats.applied_after_hold == 1
    assert correlator.expire(1_000.0) == []


def test_several_early_receipts_for_one_id_are_released_in_arrival_order() -> None:
    correlator: Correlator[SmppReceiptKey, DeliveryReceipt] = Correlator()
    key = SmppReceiptKey("a", "7")
    enroute, delivered = _receipt("7", "ENROUTE"), _receipt("7", "DELIVRD")
    correlator.on_receipt(key, enroute, 1.0)
    correlator.on_receipt(key, delivered, 2.0)
    released = correlator.on_submit_resp(key, TARGET, 3.0)
    assert [item.receipt.status for item in released] == [
        SegmentStatus.ENROUTE,
        SegmentStatus.DELIVERED,
    ]


def test_resp_for_another_link_does_not_release_the_receipt() -> None:
    correlator: Correlator[SmppReceiptKey, DeliveryReceipt] = Correlator()
    correlator.on_receipt(SmppReceiptKey("a", "7"), _receipt("7"), 1.0)
    assert correlator.on_submit_resp(SmppReceiptKey("b", "7"), TARGET, 2.0) == []
    assert correlator.stats.held == 1


def test_held_receipt_is_dropped_after_hold_time() -> None:
    correlator: Correlator[SmppReceiptKey, DeliveryReceipt] = Correlator(hold_seconds=30)
    key = SmppReceiptKey("a", "9")
    receipt = _receipt("9")
    correlator.on_receipt(key, receipt, 10.0)
    assert correlator.next_deadline() == 40.0
    assert correlator.expire(39.9) == []
    dropped = correlator.expire(40.0)
    assert [(item.key, item.receipt, item.reason) for item in dropped] == [
        (key, receipt, DropReason.EXPIRED)
    ]
    assert correlator.stats.dropped_expired == 1 and correlator.stats.held == 0
    assert correlator.next_deadline() is None
    # A resp after the drop finds nothing to release.
    assert correlator.on_submit_resp(key, TARGET, 41.0) == []


def test_hold_is_bounded_in_count_and_evicts_the_oldest() -> None:
    correlator: Correlator[SmppReceiptKey, DeliveryReceipt] = Correlator(max_held=3)
    keys = [SmppReceiptKey("a", str(number)) for number in range(5)]
    outcomes = [
        correlator.on_receipt(key, _receipt(key.carrier_id), float(i)) for i, key in enumerate(keys)
    ]
    assert all(isinstance(outcome, HeldReceipt) for outcome in outcomes)
    evicted = [outcome.evicted for outcome in outcomes if isinstance(outcome, HeldReceipt)]
    assert [item.key if item else None for item in evicted] == [None, None, None, keys[0], keys[1]]
    assert all(item.reason is DropReason.OVERFLOW for item in evicted if item)
    assert correlator.stats.held == 3 and correlator.stats.dropped_overflow == 2
    assert correlator.held_for(keys[0]) == []
    assert [r.message_id for r in correlator.held_for(keys[4])] == ["4"]


def test_released_receipts_do_not_count_against_the_bound() -> None:
    correlator: Correlator[SmppReceiptKey, DeliveryReceipt] = Correlator(max_held=2)
    first, second, third = (SmppReceiptKey("a", str(n)) for n in range(3))
    correlator.on_receipt(first, _receipt("0"), 1.0)
    correlator.on_receipt(second, _receipt("1"), 2.0)
    correlator.on_submit_resp(first, TARGET, 3.0)
    outcome = correlator.on_receipt(third, _receipt("2"), 4.0)
    assert isinstance(outcome, HeldReceipt) and outcome.evicted is None
    assert correlator.next_deadline() == 2.0 + correlator.hold_seconds


def test_resp_seen_just_before_the_receipt_is_held_applies_from_memory() -> None:
    # The store lookup missed, the resp landed while the caller awaited it: no stranded receipt.
    correlator: Correlator[SmppReceiptKey, DeliveryReceipt] = Correlator(remember_seconds=5)
    key = SmppReceiptKey("a", "11")
    assert correlator.on_submit_resp(key, TARGET, 10.0) == []
    outcome = correlator.on_receipt(key, _receipt("11"), 12.0)
    assert isinstance(outcome, ApplyReceipt) and outcome.target == TARGET
    assert correlator.stats.applied_from_memory == 1
    # After the memory window the receipt is held (the caller's store lookup is the truth).
    correlator.expire(16.0)
    assert isinstance(correlator.on_receipt(key, _receipt("11"), 16.0), HeldReceipt)


def test_memory_of_submit_results_is_bounded() -> None:
    correlator: Correlator[SmppReceiptKey, DeliveryReceipt] = Correlator(max_remembered=2)
    for number in range(3):
        correlator.on_submit_resp(SmppReceiptKey("a", str(number)), TARGET, 1.0)
    assert isinstance(
        correlator.on_receipt(SmppReceiptKey("a", "0"), _receipt("0"), 1.5), HeldReceipt
    )
    assert isinstance(
        correlator.on_receipt(SmppReceiptKey("a", "2"), _receipt("2"), 1.5), ApplyReceipt
    )


def test_key_type_is_the_link_types_choice() -> None:
    # A modem status report is keyed by (modem, TP-MR, destination); the correlator does not care.
    correlator: Correlator[tuple[str, int, str], str] = Correlator()
    key = ("modem-1", 17, "+447700900123")
    assert isinstance(correlator.on_receipt(key, "+CDS report", 0.0), HeldReceipt)
    assert [item.receipt for item in correlator.on_submit_resp(key, TARGET, 1.0)] == ["+CDS report"]


def test_invalid_bounds_are_refused() -> None:
    with pytest.raises(ValueError):
        Correlator(max_held=0)
    with pytest.raises(ValueError):
        Correlator(hold_seconds=0)
