"""The codec against two independent SMPP implementations: smpplib and aiosmpplib.

Each side encodes and the other decodes; where both implement the same PDU, the bytes must be
identical. These play the role of a test against a reference implementation.
"""

from __future__ import annotations

import smpplib.smpp
from aiosmpplib import (
    NPI,
    TON,
    OptionalParam,
    PhoneNumber,
    SmppMessage,
)
from aiosmpplib import (
    BindTransceiver as PeerBindTransceiver,
)
from aiosmpplib import (
    BindTransceiverResp as PeerBindTransceiverResp,
)
from aiosmpplib import (
    DeliverSm as PeerDeliverSm,
)
from aiosmpplib import (
    SubmitSm as PeerSubmitSm,
)
from aiosmpplib import (
    SubmitSmResp as PeerSubmitSmResp,
)

from smpp.codec import decode, encode
from smpp.constants import Tag
from smpp.pdu import BindTransceiver, BindTransceiverResp, DeliverSm, SubmitSm, SubmitSmResp

TEXT = ("Tandem test message " * 8)[:153]


class _SequenceSource:
    """smpplib asks its client for sequence numbers; these tests fix them instead."""

    sequence = 7

    def next_sequence(self) -> int:
        return 7


def typical_submit_sm() -> SubmitSm:
    return SubmitSm(
        sequence_number=7,
        source_addr_ton=5,
        source_addr="Tandem",
        dest_addr_ton=1,
        dest_addr_npi=1,
        destination_addr="447700900123",
        registered_delivery=1,
        short_message=TEXT.encode("ascii"),
        tlvs={Tag.USER_MESSAGE_REFERENCE: 42, Tag.SOURCE_PORT: 1234},
    )


def test_submit_sm_bytes_equal_smpplib_and_aiosmpplib_output() -> None:
    smpplib_pdu = smpplib.smpp.make_pdu(
        "submit_sm",
        client=_SequenceSource(),
        sequence=7,
        source_addr_ton=5,
        source_addr_npi=0,
        source_addr="Tandem",
        dest_addr_ton=1,
        dest_addr_npi=1,
        destination_addr="447700900123",
        registered_delivery=1,
        short_message=TEXT.encode("ascii"),
        user_message_reference=42,
        source_port=1234,
    )
    aiosmpplib_pdu = PeerSubmitSm(
        sequence_num=7,
        short_message=TEXT,
        source=PhoneNumber("Tandem", TON.ALPHANUMERIC, NPI.UNKNOWN),
        destination=PhoneNumber("447700900123", TON.INTERNATIONAL, NPI.ISDN),
        registered_delivery=1,
        optional_params=[
            OptionalParam(Tag.USER_MESSAGE_REFERENCE, 42),
            OptionalParam(Tag.SOURCE_PORT, 1234),
        ],
    )
    ours = encode(typical_submit_sm())
    assert ours == smpplib_pdu.generate()
    assert ours == aiosmpplib_pdu.pdu()
    assert decode(smpplib_pdu.generate()) == typical_submit_sm()


def test_smpplib_reads_our_delivery_receipt() -> None:
    receipt = DeliverSm(
        sequence_number=3,
        source_addr_ton=1,
        source_addr_npi=1,
        source_addr="447700900123",
        destination_addr="Tandem",
        esm_class=0x04,
        short_message=b"id:0a1b2c3d sub:001 dlvrd:001 stat:DELIVRD err:000 text:",
        tlvs={
            Tag.RECEIPTED_MESSAGE_ID: "0a1b2c3d",
            Tag.MESSAGE_STATE: 2,
            Tag.NETWORK_ERROR_CODE: b"\x03\x00\x00",
        },
    )
    parsed = smpplib.smpp.parse_pdu(encode(receipt), client=_SequenceSource())
    assert parsed.command == "deliver_sm"
    assert parsed.sequence == 3
    assert parsed.source_addr == b"447700900123"
    assert parsed.esm_class == 0x04
    assert parsed.receipted_message_id == b"0a1b2c3d"
    assert parsed.message_state == 2
    assert parsed.network_error_code == b"\x03\x00\x00"


def test_we_read_smpplib_delivery_receipt_with_typed_tlvs() -> None:
    receipt = smpplib.smpp.make_pdu(
        "deliver_sm",
        client=_SequenceSource(),
        source_addr="447700900123",
        destination_addr="Tandem",
        esm_class=0x04,
        short_message=b"id:abc stat:UNDELIV",
        receipted_message_id="abc",
        message_state=5,
    )
    receipt.sequence = 9  # smpplib ignores a sequence keyword when its client has one
    wire = receipt.generate()
    pdu = decode(wire)
    assert isinstance(pdu, DeliverSm)
    assert pdu.sequence_number == 9
    assert pdu.tlvs[Tag.RECEIPTED_MESSAGE_ID] == "abc"
    assert pdu.tlvs[Tag.MESSAGE_STATE] == 5
    assert encode(pdu) == wire


def test_aiosmpplib_reads_our_submit_sm_and_resp() -> None:
    wire = encode(typical_submit_sm())
    parsed = PeerSubmitSm.from_pdu(wire, SmppMessage.parse_header(wire), "ascii")
    assert isinstance(parsed, PeerSubmitSm)
    assert parsed.short_message == TEXT
    assert parsed.destination.number == "447700900123"
    params = [(param.tag, param.value) for param in parsed.optional_params or []]
    assert params == [(Tag.USER_MESSAGE_REFERENCE, 42), (Tag.SOURCE_PORT, 1234)]

    resp_wire = encode(SubmitSmResp(sequence_number=7, message_id="0a1b2c3d"))
    resp = PeerSubmitSmResp.from_pdu(resp_wire, SmppMessage.parse_header(resp_wire))
    assert isinstance(resp, PeerSubmitSmResp)
    assert (resp.sequence_num, resp.message_id) == (7, "0a1b2c3d")


def test_bind_transceiver_exchange_with_aiosmpplib() -> None:
    bind = PeerBindTransceiver(sequence_num=1, system_id="esme", password="secret")
    assert decode(bind.pdu()) == BindTransceiver(
        sequence_number=1, system_id="esme", password="secret", interface_version=0x34
    )
    ours = encode(
        BindTransceiverResp(
            sequence_number=1, system_id="smsc", tlvs={Tag.SC_INTERFACE_VERSION: 0x34}
        )
    )
    parsed = PeerBindTransceiverResp.from_pdu(ours, SmppMessage.parse_header(ours))
    assert isinstance(parsed, PeerBindTransceiverResp)
    assert (parsed.system_id, parsed.sc_interface_version) == ("smsc", 0x34)


def test_aiosmpplib_deliver_sm_decodes() -> None:
    peer = PeerDeliverSm(
        sequence_num=4,
        short_message="MO text",
        source=PhoneNumber("447700900123", TON.INTERNATIONAL, NPI.ISDN),
        destination=PhoneNumber("12345"),
        registered_delivery=0,
    )
    pdu = decode(peer.pdu())
    assert isinstance(pdu, DeliverSm)
    assert (pdu.source_addr, pdu.destination_addr, pdu.short_message) == (
        "447700900123",
        "12345",
        b"MO text",
    )
