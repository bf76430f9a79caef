"""The deliver_sm receipt a customer gets for one of its messages (`dlr.customer_receipt` builds
the text). Pure: no I/O, no server state.
"""

from __future__ import annotations

from datetime import UTC, datetime

from dlr.customer_receipt import build_customer_receipt
from dlr.status import MessageStatus, is_intermediate
from gateway.messages import Message
from smpp.constants import ESM_CLASS_UDHI
from smpp.pdu import DeliverSm
from smpp.text import decode_text


def _customer_receipt(
    message: Message, status: MessageStatus, error: int | str, segments: int
) -> DeliverSm:
    receipt = build_customer_receipt(
        # A submit_multi's destinations after the first carry the id it was answered with.
        message_id=message.reference or message.id,
        status=status,
        submitted_at=_utc(message.created_at),
        done_at=_utc(message.updated_at),
        text=_text_of(message),
        original_source=message.source_addr,
        original_destination=message.destination,
        original_source_ton=message.source_ton,
        original_source_npi=message.source_npi,
        original_destination_ton=1,
        original_destination_npi=1,
        intermediate=is_intermediate(status),
        error=error,
        submitted_count=segments,
    )
    return receipt.to_deliver_sm()


def _text_of(message: Message) -> str:
    if message.text is not None:
        return message.text
    body = message.body
    if message.esm_class & ESM_CLASS_UDHI and body:
        body = body[1 + body[0] :]
    try:
        return decode_text(body, message.data_coding)
    except (ValueError, LookupError):
        return ""


def _utc(instant: float) -> datetime:
    return datetime.fromtimestamp(instant, UTC)
