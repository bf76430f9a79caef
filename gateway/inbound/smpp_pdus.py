"""SMPP wire format <-> the inbound model: a carrier's deliver_sm/data_sm into an `InboundPart`,
and an `InboundPart` or `InboundMessage` back into the deliver_sm a customer ESME receives.

Owns only that conversion. Never does I/O, storage or decisions about where an MO goes.
"""

from __future__ import annotations

from gateway.inbound.model import (
    Concat,
    ConcatScheme,
    InboundMessage,
    InboundPart,
    decoded_text,
)
from smpp.constants import ESM_CLASS_UDHI, Tag
from smpp.pdu import DataSm, DeliverSm
from smpp.reassembly import MalformedUdh, parse_udh, sar_concat_info
from smpp.segmentation import IEI_CONCAT_8BIT, IEI_CONCAT_16BIT
from smpp.timefmt import InvalidSmppTime, parse_smpp_time

SAR_TAGS = (Tag.SAR_MSG_REF_NUM, Tag.SAR_TOTAL_SEGMENTS, Tag.SAR_SEGMENT_SEQNUM)
MAX_SHORT_MESSAGE = 254


def part_from_pdu(link: str, pdu: DeliverSm | DataSm, received_at: float) -> InboundPart:
    """The part a carrier's MO deliver_sm/data_sm carries.

    The user data is message_payload when present, else short_message. A UDH is taken off it
    (its concatenation element read); a UDH that overruns is kept as data (a part on its own
    beats a refused MO). Without a UDH, the SAR TLVs say where the part sits.
    """
    raw_payload = pdu.tlvs.get(Tag.MESSAGE_PAYLOAD)
    user_data = (
        raw_payload if isinstance(raw_payload, bytes) else getattr(pdu, "short_message", b"")
    )
    concat: Concat | None = None
    elements: tuple[tuple[int, bytes], ...] = ()
    payload = user_data
    if pdu.esm_class & ESM_CLASS_UDHI:
        try:
            header = parse_udh(user_data)
        except MalformedUdh:
            header = None
        if header is not None:
            payload = header.payload
            elements = header.elements
            if header.concat is not None:
                found = header.concat
                scheme = ConcatScheme.UDH16 if found.reference_bits == 16 else ConcatScheme.UDH8
                concat = Concat(found.reference, found.total, found.seqnum, scheme)
    else:
        sar = sar_concat_info(pdu.tlvs)
        if sar is not None:
            concat = Concat(sar.reference, sar.total, sar.seqnum, ConcatScheme.SAR)
    carrier_timestamp = None
    schedule = getattr(pdu, "schedule_delivery_time", "")
    if schedule:  # some SMSCs put the service centre time stamp here; ignored when unreadable
        try:
            carrier_timestamp = parse_smpp_time(schedule, received_at)
        except InvalidSmppTime:
            carrier_timestamp = None
    return InboundPart(
        link=link,
        source=pdu.source_addr,
        destination=pdu.destination_addr,
        data_coding=pdu.data_coding,
        payload=payload,
        text=decoded_text(payload, pdu.data_coding),
        received_at=received_at,
        concat=concat,
        carrier_timestamp=carrier_timestamp,
        source_ton=pdu.source_addr_ton,
        source_npi=pdu.source_addr_npi,
        destination_ton=pdu.dest_addr_ton,
        destination_npi=pdu.dest_addr_npi,
        udh_elements=elements,
        service_type=pdu.service_type,
        protocol_id=int(getattr(pdu, "protocol_id", 0)),
    )


def _udh(elements: list[tuple[int, bytes]]) -> bytes:
    body = b"".join(bytes((iei, len(data))) + data for iei, data in elements)
    return bytes((len(body),)) + body


def _deliver_sm(
    part: InboundPart, payload: bytes, concat: Concat | None, data_coding: int
) -> DeliverSm:
    elements = list(part.udh_elements)
    tlvs: dict[int, object] = {}
    if concat is not None and concat.scheme is ConcatScheme.SAR:
        tlvs[Tag.SAR_MSG_REF_NUM] = concat.reference
        tlvs[Tag.SAR_TOTAL_SEGMENTS] = concat.total
        tlvs[Tag.SAR_SEGMENT_SEQNUM] = concat.sequence
    elif concat is not None and concat.scheme is ConcatScheme.UDH16:
        ref = concat.reference
        elements.insert(
            0, (IEI_CONCAT_16BIT, bytes((ref >> 8, ref & 0xFF, concat.total, concat.sequence)))
        )
    elif concat is not None:
        elements.insert(
            0, (IEI_CONCAT_8BIT, bytes((concat.reference & 0xFF, concat.total, concat.sequence)))
        )
    esm_class = 0
    user_data = payload
    if elements:
        esm_class = ESM_CLASS_UDHI
        user_data = _udh(elements) + payload
    short_message = user_data
    if len(user_data) > MAX_SHORT_MESSAGE:
        short_message = b""
        tlvs[Tag.MESSAGE_PAYLOAD] = user_data
    return DeliverSm(
        service_type=part.service_type,
        source_addr_ton=part.source_ton,
        source_addr_npi=part.source_npi,
        source_addr=part.source,
        dest_addr_ton=part.destination_ton,
        dest_addr_npi=part.destination_npi,
        destination_addr=part.destination,
        esm_class=esm_class,
        protocol_id=part.protocol_id,
        data_coding=data_coding,
        short_message=short_message,
        tlvs=tlvs,
    )


def deliver_sm_for_part(part: InboundPart) -> DeliverSm:
    """The deliver_sm that hands a customer this part as the carrier sent it (its UDH or SAR
    concatenation kept, so the customer can join it)."""
    return _deliver_sm(part, part.payload, part.concat, part.data_coding)


def deliver_sm_for_message(message: InboundMessage) -> DeliverSm:
    """One deliver_sm carrying the whole message (message_payload when it is too long for
    short_message); a message given up on goes as its single part."""
    if not message.complete or (len(message.parts) == 1 and message.first.concat is None):
        return deliver_sm_for_part(message.first)
    return _deliver_sm(message.first, message.payload, None, message.data_coding)
