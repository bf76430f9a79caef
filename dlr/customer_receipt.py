"""Receipts we send to our SMPP customers, and whether they asked for one.

Owns `wants_receipt` (the registered_delivery rules) and `build_customer_receipt` (the
deliver_sm fields of a receipt: appendix B text plus receipted_message_id, message_state and
network_error_code TLVs). Must never send anything or choose a customer's addresses beyond
swapping the original ones; the SMPP server turns the fields into a deliver_sm.

registered_delivery
-------------------
Bits 0-1: 0 no receipt, 1 a receipt on the final outcome (success or failure), 2 on failure
only, 3 on success only (SMPP 5.0, widely supported). Bit 4 (0x10): intermediate
notifications. Bits 2-3 (SME acknowledgements) are not receipts and are ignored here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from dlr.receipt import NetworkError
from dlr.status import (
    AnyStatus,
    is_failure,
    is_final,
    is_success,
    message_state,
    stat_word,
)
from smpp.constants import (
    ESM_CLASS_DELIVERY_RECEIPT,
    ESM_CLASS_INTERMEDIATE_NOTIFICATION,
    REGISTERED_DELIVERY_INTERMEDIATE,
    REGISTERED_DELIVERY_RECEIPT_ALWAYS,
    REGISTERED_DELIVERY_RECEIPT_MASK,
    REGISTERED_DELIVERY_RECEIPT_ON_FAILURE,
    Tag,
)
from smpp.pdu import DeliverSm

REGISTERED_DELIVERY_RECEIPT_ON_SUCCESS = 0x03  # SMPP 5.0
RECEIPT_TEXT_LENGTH = 20  # appendix B: the first 20 characters of the original message


def wants_receipt(registered_delivery: int, status: AnyStatus, intermediate: bool) -> bool:
    """Whether a customer that submitted with `registered_delivery` gets a receipt for this."""
    if intermediate:
        return bool(registered_delivery & REGISTERED_DELIVERY_INTERMEDIATE)
    if not is_final(status):
        return False
    receipt = registered_delivery & REGISTERED_DELIVERY_RECEIPT_MASK
    if receipt == REGISTERED_DELIVERY_RECEIPT_ALWAYS:
        return True
    if receipt == REGISTERED_DELIVERY_RECEIPT_ON_FAILURE:
        return is_failure(status)
    if receipt == REGISTERED_DELIVERY_RECEIPT_ON_SUCCESS:
        return is_success(status)
    return False


@dataclass(slots=True, frozen=True)
class CustomerReceipt:
    """The deliver_sm fields of a receipt. Addresses are the original ones swapped."""

    source_addr: str
    destination_addr: str
    esm_class: int
    short_message: bytes
    tlvs: dict[int, object]
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    data_coding: int = 0

    def to_deliver_sm(self, sequence_number: int = 0) -> DeliverSm:
        return DeliverSm(
            sequence_number=sequence_number,
            source_addr_ton=self.source_addr_ton,
            source_addr_npi=self.source_addr_npi,
            source_addr=self.source_addr,
            dest_addr_ton=self.dest_addr_ton,
            dest_addr_npi=self.dest_addr_npi,
            destination_addr=self.destination_addr,
            esm_class=self.esm_class,
            data_coding=self.data_coding,
            short_message=self.short_message,
            tlvs=dict(self.tlvs),
        )


def _date(moment: datetime) -> str:
    # YYMMDDhhmm; formatted by hand: strftime costs twice as much, twice a receipt.
    return (
        f"{moment.year % 100:02d}{moment.month:02d}{moment.day:02d}"
        f"{moment.hour:02d}{moment.minute:02d}"
    )


def _receipt_text(text: str) -> str:
    # The receipt is sent in the default alphabet; anything outside printable ASCII becomes "?"
    # so a customer's parser never meets a control character or a stray octet.
    head = text[:RECEIPT_TEXT_LENGTH]
    if head.isascii() and head.isprintable():  # the common case: nothing to replace
        return head
    return "".join(char if " " <= char <= "~" else "?" for char in head)


def build_customer_receipt(
    *,
    message_id: str,
    status: AnyStatus,
    submitted_at: datetime,
    done_at: datetime,
    text: str,
    original_source: str,
    original_destination: str,
    original_source_ton: int = 0,
    original_source_npi: int = 0,
    original_destination_ton: int = 0,
    original_destination_npi: int = 0,
    intermediate: bool = False,
    error: int | str = 0,
    network_error: NetworkError | None = None,
    submitted_count: int = 1,
    delivered_count: int | None = None,
) -> CustomerReceipt:
    """A receipt for OUR message id, in appendix B text and TLVs.

    `error` goes into `err:` (an int as three digits, a carrier's text as is). `delivered_count`
    defaults to all segments when delivered, none otherwise.
    """
    if delivered_count is None:
        delivered_count = submitted_count if is_success(status) else 0
    err = f"{error:03d}" if isinstance(error, int) else (error.split() or ["000"])[0]
    body = (
        f"id:{message_id} sub:{submitted_count:03d} dlvrd:{delivered_count:03d}"
        f" submit date:{_date(submitted_at)} done date:{_date(done_at)}"
        f" stat:{stat_word(status)} err:{err} text:{_receipt_text(text)}"
    )
    tlvs: dict[int, object] = {
        int(Tag.RECEIPTED_MESSAGE_ID): message_id,
        int(Tag.MESSAGE_STATE): message_state(status),
    }
    if network_error is not None:
        tlvs[int(Tag.NETWORK_ERROR_CODE)] = network_error.to_bytes()
    return CustomerReceipt(
        source_addr=original_destination,
        destination_addr=original_source,
        source_addr_ton=original_destination_ton,
        source_addr_npi=original_destination_npi,
        dest_addr_ton=original_source_ton,
        dest_addr_npi=original_source_npi,
        esm_class=ESM_CLASS_INTERMEDIATE_NOTIFICATION
        if intermediate
        else ESM_CLASS_DELIVERY_RECEIPT,
        short_message=body.encode("ascii", "replace"),
        tlvs=tlvs,
    )
