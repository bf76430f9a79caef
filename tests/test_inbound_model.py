"""The inbound model and its SMPP conversion: what a carrier's deliver_sm becomes and back."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.inbound.model import Concat, ConcatScheme, InboundMessage, InboundPart, is_binary
from gateway.inbound.smpp_pdus import deliver_sm_for_message, deliver_sm_for_part, part_from_pdu
from smpp.constants import Tag
from smpp.pdu import DataSm, DeliverSm
from smpp.text import encode_text


def test_a_gsm_text_mo_is_decoded_with_its_addresses() -> None:
    pdu = DeliverSm(
        source_addr="447400123456",
        destination_addr="12345",
        dest_addr_ton=3,
        short_message=b"STOP",
        schedule_delivery_time="261203114500000+",
    )
    part = part_from_pdu("carrier", pdu, 1000.0)
    assert (part.link, part.source, part.destination, part.text) == (
        "carrier",
        "447400123456",
        "12345",
        "STOP",
    )
    assert part.concat is None and part.destination_ton == 3 and part.received_at == 1000.0
    assert part.carrier_timestamp == 1796298300.0


def test_ucs2_and_latin1_are_decoded_and_binary_kept_as_bytes() -> None:
    ucs2 = part_from_pdu(
        "l", DeliverSm(data_coding=8, short_message="Привет".encode("utf-16-be")), 0
    )
    latin1 = part_from_pdu("l", DeliverSm(data_coding=3, short_message="café".encode("latin-1")), 0)
    binary = part_from_pdu("l", DeliverSm(data_coding=4, short_message=b"\x00\xff"), 0)
    assert ucs2.text == "Привет" and latin1.text == "café"
    assert binary.text is None and binary.payload == b"\x00\xff" and binary.is_binary


def test_udh8_udh16_and_sar_parts_carry_their_place() -> None:
    udh8 = DeliverSm(esm_class=0x40, short_message=bytes((5, 0, 3, 7, 2, 1)) + b"ab")
    udh16 = DeliverSm(esm_class=0x40, short_message=bytes((6, 8, 4, 1, 2, 3, 2)) + b"cd")
    sar = DataSm(
        tlvs={
            Tag.SAR_MSG_REF_NUM: 513,
            Tag.SAR_TOTAL_SEGMENTS: 2,
            Tag.SAR_SEGMENT_SEQNUM: 2,
            Tag.MESSAGE_PAYLOAD: b"ef",
        }
    )
    assert part_from_pdu("l", udh8, 0).concat == Concat(7, 2, 1, ConcatScheme.UDH8)
    assert part_from_pdu("l", udh16, 0).concat == Concat(258, 3, 2, ConcatScheme.UDH16)
    found = part_from_pdu("l", sar, 0)
    assert found.concat == Concat(513, 2, 2, ConcatScheme.SAR) and found.payload == b"ef"


def test_a_malformed_udh_is_kept_as_data_not_refused() -> None:
    part = part_from_pdu("l", DeliverSm(esm_class=0x40, short_message=b"\x09ab"), 0)
    assert part.concat is None and part.payload == b"\x09ab"


def test_parts_join_as_octets_so_a_split_character_still_decodes() -> None:
    octets = "héllo wörld".encode("utf-16-be")
    first = InboundPart("l", "1", "2", 8, octets[:5], None, 1.0, Concat(1, 2, 1, ConcatScheme.UDH8))
    second = InboundPart(
        "l", "1", "2", 8, octets[5:], None, 2.0, Concat(1, 2, 2, ConcatScheme.UDH8)
    )
    whole = InboundMessage.joined((first, second))
    assert whole.text == "héllo wörld" and whole.received_at == 2.0 and whole.complete
    pdu = deliver_sm_for_message(whole)
    assert pdu.esm_class == 0 and pdu.short_message == octets
    assert not InboundMessage.single(first).complete


def test_a_long_whole_goes_in_message_payload() -> None:
    part = InboundPart("l", "1", "2", 0, b"x" * 300, "x" * 300, 0.0)
    pdu = deliver_sm_for_message(InboundMessage.single(part))
    assert pdu.short_message == b"" and pdu.tlvs[Tag.MESSAGE_PAYLOAD] == b"x" * 300


@settings(deadline=None)
@given(
    text=st.text(max_size=60),
    scheme=st.sampled_from([None, *ConcatScheme]),
    reference=st.integers(0, 255),
    total=st.integers(1, 9),
    data=st.data(),
)
def test_a_part_survives_the_trip_to_a_customer_and_back(
    text: str, scheme: ConcatScheme | None, reference: int, total: int, data: st.DataObject
) -> None:
    data_coding, payload = encode_text(text)
    concat = None
    if scheme is not None:
        concat = Concat(reference, total, data.draw(st.integers(1, total)), scheme)
    part = InboundPart("l", "447400123456", "12345", data_coding, payload, text, 5.0, concat)
    again = part_from_pdu("l", deliver_sm_for_part(part), 5.0)
    assert again == part


@given(st.integers(0, 255))
def test_binary_data_codings_are_never_decoded(data_coding: int) -> None:
    part = part_from_pdu("l", DeliverSm(data_coding=data_coding, short_message=b"\x80\x81"), 0)
    assert (part.text is None) == is_binary(data_coding)
