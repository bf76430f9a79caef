"""SMPP 3.4 codec: wire layouts, round trips, tolerated variants and the statuses of refusals.

Wire bytes in these tests are written out by hand from the spec's field tables (section 4), so
the codec is checked against the spec, not against itself.
"""

from __future__ import annotations

import struct

import pytest

from smpp.codec import PduDecoder, PduEncodeError, PduError, command_name, decode, encode
from smpp.constants import CommandId, CommandStatus, Tag, status_name
from smpp.pdu import (
    PDU_CLASSES,
    AlertNotification,
    BindReceiver,
    BindReceiverResp,
    BindTransceiver,
    BindTransceiverResp,
    BindTransmitter,
    BindTransmitterResp,
    CancelSm,
    CancelSmResp,
    DataSm,
    DataSmResp,
    DeliverSm,
    DeliverSmResp,
    DistributionList,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    Outbind,
    Pdu,
    QuerySm,
    QuerySmResp,
    ReplaceSm,
    ReplaceSmResp,
    SmeAddress,
    SubmitMulti,
    SubmitMultiResp,
    SubmitSm,
    SubmitSmResp,
    Unbind,
    UnbindResp,
    UnsuccessSme,
)


def frame(command_id: int, body: bytes, *, status: int = 0, sequence: int = 1) -> bytes:
    return struct.pack(">IIII", 16 + len(body), command_id, status, sequence) + body


def tlv(tag: int, value: bytes) -> bytes:
    return struct.pack(">HH", tag, len(value)) + value


SUBMIT_SM_BODY = (
    b"\0"  # service_type
    + b"\x05\x00Tandem\0"  # source ton, npi, addr
    + b"\x01\x01447700900123\0"  # dest ton, npi, addr
    + b"\x00\x00\x00"  # esm_class, protocol_id, priority_flag
    + b"\0\0"  # schedule_delivery_time, validity_period
    + b"\x01\x00\x00\x00"  # registered_delivery, replace_if_present, data_coding, default_msg_id
    + b"\x05hello"  # sm_length, short_message
)


EXAMPLES: list[Pdu] = [
    BindTransmitter(1, 0, "esme", "secret", "OTA", 0x34, 1, 1, "^44"),
    BindReceiver(2, 0, "esme", "secret", "", 0x34, 0, 0, ""),
    BindTransceiver(3, 0, "esme", "pw", "VMS", 0x34, 5, 0, "[0-9]+"),
    BindTransmitterResp(1, 0, "smsc", {Tag.SC_INTERFACE_VERSION: 0x34}),
    BindReceiverResp(2, 0, "smsc"),
    BindTransceiverResp(3, 0, "smsc", {Tag.SC_INTERFACE_VERSION: 0x34}),
    BindTransceiverResp(3, CommandStatus.ESME_RINVPASWD),
    Outbind(4, 0, "smsc", "pw"),
    Unbind(5),
    UnbindResp(5),
    GenericNack(6, CommandStatus.ESME_RINVCMDID),
    EnquireLink(7),
    EnquireLinkResp(7),
    SubmitSm(
        8,
        0,
        "CMT",
        5,
        0,
        "Tandem",
        1,
        1,
        "447700900123",
        0x40,
        0,
        1,
        "261122063000000+",
        "000001000000000R",
        1,
        1,
        8,
        0,
        b"\x05\x00\x03\x2a\x02\x01\x00h\x00i",
        {Tag.USER_MESSAGE_REFERENCE: 7, Tag.SOURCE_PORT: 9200, Tag.QOS_TIME_TO_LIVE: 86400},
    ),
    SubmitSmResp(8, 0, "0a1b2c3d"),
    SubmitSmResp(9, CommandStatus.ESME_RTHROTTLED),
    SubmitMulti(
        10,
        0,
        "",
        1,
        1,
        "447700900001",
        [SmeAddress(1, 1, "447700900123"), DistributionList("staff"), SmeAddress(2, 8, "07700")],
        0,
        0,
        0,
        "",
        "",
        1,
        0,
        0,
        0,
        b"hello all",
        {Tag.SAR_MSG_REF_NUM: 513, Tag.SAR_TOTAL_SEGMENTS: 2, Tag.SAR_SEGMENT_SEQNUM: 1},
    ),
    SubmitMultiResp(
        10, 0, "m-1", [UnsuccessSme(1, 1, "447700900123", CommandStatus.ESME_RINVDSTADR)]
    ),
    DeliverSm(
        11,
        0,
        "",
        1,
        1,
        "447700900123",
        5,
        0,
        "Tandem",
        0x04,
        0,
        0,
        "",
        "",
        0,
        0,
        0,
        0,
        b"id:0a1b2c3d sub:001 dlvrd:001 submit date:2611220630 done date:2611220631 "
        b"stat:DELIVRD err:000 text:hello",
        {
            Tag.RECEIPTED_MESSAGE_ID: "0a1b2c3d",
            Tag.MESSAGE_STATE: 2,
            Tag.NETWORK_ERROR_CODE: b"\x03\x00\x00",
        },
    ),
    DeliverSmResp(11),
    DataSm(
        12,
        0,
        "WAP",
        1,
        1,
        "447700900001",
        1,
        1,
        "447700900123",
        0,
        1,
        4,
        {Tag.MESSAGE_PAYLOAD: bytes(range(256)) * 2, Tag.DESTINATION_PORT: 2948},
    ),
    DataSmResp(
        12,
        CommandStatus.ESME_RDELIVERYFAILURE,
        "",
        {Tag.DELIVERY_FAILURE_REASON: 1, Tag.ADDITIONAL_STATUS_INFO_TEXT: "absent subscriber"},
    ),
    QuerySm(13, 0, "0a1b2c3d", 5, 0, "Tandem"),
    QuerySmResp(13, 0, "0a1b2c3d", "261122063100000+", 2, 0),
    CancelSm(14, 0, "", "0a1b2c3d", 5, 0, "Tandem", 1, 1, "447700900123"),
    CancelSmResp(14),
    ReplaceSm(15, 0, "0a1b2c3d", 5, 0, "Tandem", "", "000002000000000R", 1, 0, b"new text"),
    ReplaceSmResp(15, CommandStatus.ESME_RREPLACEFAIL),
    AlertNotification(16, 0, 1, 1, "447700900123", 0, 0, "esme", {Tag.MS_AVAILABILITY_STATUS: 0}),
]


def test_examples_cover_every_operation_of_smpp_3_4() -> None:
    assert {type(pdu) for pdu in EXAMPLES} == set(PDU_CLASSES.values())


@pytest.mark.parametrize("pdu", EXAMPLES, ids=lambda pdu: type(pdu).__name__)
def test_every_pdu_type_round_trips_and_its_header_is_right(pdu: Pdu) -> None:
    wire = encode(pdu)
    length, command_id, status, sequence = struct.unpack(">IIII", wire[:16])
    assert (length, command_id, status, sequence) == (
        len(wire),
        pdu.command_id,
        pdu.command_status,
        pdu.sequence_number,
    )
    assert decode(wire) == pdu
    assert type(decode(wire)) is type(pdu)


def test_submit_sm_is_laid_out_as_in_spec_section_4_4_1() -> None:
    pdu = SubmitSm(
        sequence_number=1,
        source_addr_ton=5,
        source_addr="Tandem",
        dest_addr_ton=1,
        dest_addr_npi=1,
        destination_addr="447700900123",
        registered_delivery=1,
        short_message=b"hello",
    )
    assert encode(pdu) == frame(CommandId.SUBMIT_SM, SUBMIT_SM_BODY)
    assert decode(frame(CommandId.SUBMIT_SM, SUBMIT_SM_BODY)) == pdu


def test_tlvs_are_typed_by_tag_and_keep_wire_order() -> None:
    body = SUBMIT_SM_BODY + (
        tlv(Tag.SOURCE_PORT, b"\x23\xf0")
        + tlv(Tag.RECEIPTED_MESSAGE_ID, b"abc\0")
        + tlv(Tag.QOS_TIME_TO_LIVE, b"\x00\x01\x51\x80")
        + tlv(Tag.CALLBACK_NUM, b"\x01\x01\x0112345")
        + tlv(Tag.USER_MESSAGE_REFERENCE, b"\x00\x07")
    )
    pdu = decode(frame(CommandId.SUBMIT_SM, body))
    assert isinstance(pdu, SubmitSm)
    assert list(pdu.tlvs.items()) == [
        (Tag.SOURCE_PORT, 9200),
        (Tag.RECEIPTED_MESSAGE_ID, "abc"),
        (Tag.QOS_TIME_TO_LIVE, 86400),
        (Tag.CALLBACK_NUM, b"\x01\x01\x0112345"),
        (Tag.USER_MESSAGE_REFERENCE, 7),
    ]
    assert encode(pdu) == frame(CommandId.SUBMIT_SM, body)


def test_unknown_and_vendor_tlvs_are_preserved_byte_for_byte_in_order() -> None:
    body = SUBMIT_SM_BODY + (
        tlv(0x1401, b"\x00\xff\x00")
        + tlv(Tag.SAR_MSG_REF_NUM, b"\x01\x02")
        + tlv(0x3FFF, b"")
        + tlv(0x0099, b"vendor text without nul")
    )
    wire = frame(CommandId.DELIVER_SM, body, sequence=77)
    pdu = decode(wire)
    assert isinstance(pdu, DeliverSm)
    assert pdu.tlvs[0x1401] == b"\x00\xff\x00"
    assert pdu.tlvs[0x3FFF] == b""
    assert encode(pdu) == wire


def test_receipted_message_id_without_its_nul_is_tolerated() -> None:
    body = SUBMIT_SM_BODY + tlv(Tag.RECEIPTED_MESSAGE_ID, b"0a1b2c3d")
    pdu = decode(frame(CommandId.DELIVER_SM, body))
    assert isinstance(pdu, DeliverSm)
    assert pdu.tlvs[Tag.RECEIPTED_MESSAGE_ID] == "0a1b2c3d"


def test_vendor_command_status_is_kept_as_a_plain_int() -> None:
    wire = frame(CommandId.SUBMIT_SM_RESP, b"", status=0x00000401, sequence=3)
    pdu = decode(wire)
    assert pdu.command_status == 0x401
    assert type(pdu.command_status) is int
    assert encode(pdu) == wire
    assert status_name(pdu.command_status) == "0x00000401"
    assert status_name(0x58) == "ESME_RTHROTTLED"


@pytest.mark.parametrize(
    "response_class", [SubmitSmResp, DeliverSmResp, DataSmResp, BindTransmitterResp, QuerySmResp]
)
def test_error_response_without_body_decodes_and_is_encoded_without_body(
    response_class: type[Pdu],
) -> None:
    wire = frame(response_class.command_id, b"", status=CommandStatus.ESME_RSYSERR, sequence=9)
    pdu = decode(wire)
    assert pdu == response_class(sequence_number=9, command_status=CommandStatus.ESME_RSYSERR)
    assert encode(pdu) == wire


def test_error_response_that_does_carry_a_body_is_decoded() -> None:
    wire = frame(CommandId.SUBMIT_SM_RESP, b"\0", status=CommandStatus.ESME_RINVDSTADR)
    assert decode(wire) == SubmitSmResp(1, CommandStatus.ESME_RINVDSTADR, "")


def test_successful_response_keeps_its_body_even_when_empty() -> None:
    assert encode(DeliverSmResp(sequence_number=4)) == frame(
        CommandId.DELIVER_SM_RESP, b"\0", sequence=4
    )


def test_submit_multi_carries_sme_addresses_and_distribution_lists() -> None:
    body = (
        b"\0\x01\x01447700900001\0"
        + b"\x02"  # number_of_dests
        + b"\x01\x01\x01447700900123\0"  # dest_flag 1: SME address
        + b"\x02staff\0"  # dest_flag 2: distribution list
        + b"\x00\x00\x00\0\0\x00\x00\x00\x00"
        + b"\x02hi"
    )
    pdu = decode(frame(CommandId.SUBMIT_MULTI, body))
    assert isinstance(pdu, SubmitMulti)
    assert pdu.dest_addresses == [SmeAddress(1, 1, "447700900123"), DistributionList("staff")]
    assert pdu.short_message == b"hi"
    assert encode(pdu) == frame(CommandId.SUBMIT_MULTI, body)


def test_submit_multi_resp_lists_unsuccessful_destinations() -> None:
    body = b"m-1\0" + b"\x01" + b"\x01\x01447700900123\0" + struct.pack(">I", 0x0B)
    pdu = decode(frame(CommandId.SUBMIT_MULTI_RESP, body))
    assert pdu == SubmitMultiResp(1, 0, "m-1", [UnsuccessSme(1, 1, "447700900123", 0x0B)])


def test_request_response_keeps_the_sequence_number() -> None:
    request = SubmitSm(sequence_number=0x7FFFFFFF, short_message=b"x")
    response = request.response(message_id="abc")
    assert response == SubmitSmResp(sequence_number=0x7FFFFFFF, message_id="abc")
    assert EnquireLink(sequence_number=5).response() == EnquireLinkResp(sequence_number=5)


# --- refusals: what the peer is told ------------------------------------------------------------


def decode_error(wire: bytes) -> PduError:
    with pytest.raises(PduError) as caught:
        decode(wire)
    return caught.value


def test_unknown_command_id_is_refused_with_rinvcmdid_and_the_stream_goes_on() -> None:
    unknown = frame(0x00000099, b"whatever", sequence=21)
    decoder = PduDecoder()
    items = decoder.feed(unknown + encode(EnquireLink(sequence_number=22)))
    assert len(items) == 2
    error = items[0]
    assert isinstance(error, PduError)
    assert (error.status, error.command_id, error.sequence_number, error.fatal) == (
        CommandStatus.ESME_RINVCMDID,
        0x99,
        21,
        False,
    )
    assert error.reply() == GenericNack(21, CommandStatus.ESME_RINVCMDID)
    assert items[1] == EnquireLink(sequence_number=22)


@pytest.mark.parametrize(
    ("field_bytes", "status"),
    [
        (b"\0\x01\x01" + b"4" * 21 + b"\0", CommandStatus.ESME_RINVSRCADR),
        (b"toolong\0\x01\x01x\0", CommandStatus.ESME_RINVSERTYP),
        (b"\0\x01\x01x\0\x01\x01" + b"9" * 30 + b"\0", CommandStatus.ESME_RINVDSTADR),
    ],
    ids=["source_addr", "service_type", "destination_addr"],
)
def test_c_octet_string_over_its_spec_maximum_is_refused_with_its_field_status(
    field_bytes: bytes, status: CommandStatus
) -> None:
    error = decode_error(frame(CommandId.SUBMIT_SM, field_bytes + b"\0" * 40, sequence=31))
    assert error.status == status
    assert error.sequence_number == 31
    assert not error.fatal
    assert error.reply() == SubmitSmResp(31, status)


def test_c_octet_string_missing_its_nul_is_refused() -> None:
    error = decode_error(frame(CommandId.BIND_TRANSMITTER, b"esme"))
    assert error.status == CommandStatus.ESME_RINVSYSID
    assert error.reply() == BindTransmitterResp(1, CommandStatus.ESME_RINVSYSID)


def test_sm_length_beyond_the_body_is_refused_with_rinvmsglen() -> None:
    truncated = SUBMIT_SM_BODY[:-6] + b"\x09hello"
    assert decode_error(frame(CommandId.SUBMIT_SM, truncated)).status == (
        CommandStatus.ESME_RINVMSGLEN
    )


def test_body_ending_inside_fixed_fields_is_refused_with_rinvcmdlen() -> None:
    cut = SUBMIT_SM_BODY[: SUBMIT_SM_BODY.index(b"447700900123\0") + 14]
    assert decode_error(frame(CommandId.SUBMIT_SM, cut)).status == CommandStatus.ESME_RINVCMDLEN


def test_tlv_running_past_the_pdu_is_refused_with_rinvoptparstream() -> None:
    broken = SUBMIT_SM_BODY + struct.pack(">HH", Tag.MESSAGE_PAYLOAD, 50) + b"short"
    assert decode_error(frame(CommandId.SUBMIT_SM, broken)).status == (
        CommandStatus.ESME_RINVOPTPARSTREAM
    )
    dangling = SUBMIT_SM_BODY + b"\x02\x04\x00"
    assert decode_error(frame(CommandId.SUBMIT_SM, dangling)).status == (
        CommandStatus.ESME_RINVOPTPARSTREAM
    )


def test_integer_tlv_of_the_wrong_size_is_refused_with_rinvparlen() -> None:
    wrong = SUBMIT_SM_BODY + tlv(Tag.SAR_TOTAL_SEGMENTS, b"\x00\x02")
    assert decode_error(frame(CommandId.SUBMIT_SM, wrong)).status == CommandStatus.ESME_RINVPARLEN


def test_octets_after_the_last_parameter_of_a_pdu_without_tlvs_are_refused() -> None:
    error = decode_error(frame(CommandId.ENQUIRE_LINK, b"\x00", sequence=2))
    assert error.status == CommandStatus.ESME_RINVCMDLEN
    assert error.reply() == EnquireLinkResp(2, CommandStatus.ESME_RINVCMDLEN)


def test_submit_multi_with_a_bad_dest_flag_is_refused_with_rinvdestflag() -> None:
    body = b"\0\x01\x01x\0\x01\x07junk\0"
    assert decode_error(frame(CommandId.SUBMIT_MULTI, body)).status == (
        CommandStatus.ESME_RINVDESTFLAG
    )


def test_malformed_response_is_answered_with_generic_nack() -> None:
    error = decode_error(frame(CommandId.SUBMIT_SM_RESP, b"no nul", sequence=8))
    assert error.status == CommandStatus.ESME_RINVMSGID
    assert error.reply() == GenericNack(8, CommandStatus.ESME_RINVMSGID)


def test_decode_refuses_a_frame_whose_command_length_disagrees() -> None:
    wire = encode(EnquireLink(sequence_number=1))
    assert decode_error(wire + b"\0").status == CommandStatus.ESME_RINVCMDLEN
    assert decode_error(wire[:12]).status == CommandStatus.ESME_RINVCMDLEN


# --- stream framing -----------------------------------------------------------------------------


def test_stream_fed_one_octet_at_a_time_yields_each_pdu_once_complete() -> None:
    pdus = [EXAMPLES[13], EnquireLink(sequence_number=2), EXAMPLES[20]]
    stream = b"".join(encode(pdu) for pdu in pdus)
    decoder = PduDecoder()
    items: list[object] = []
    completed_at: list[int] = []
    for index in range(len(stream)):
        got = decoder.feed(stream[index : index + 1])
        if got:
            completed_at.append(index + 1)
        items += got
    assert items == pdus
    assert completed_at == [
        len(encode(pdus[0])),
        len(encode(pdus[0])) + 16,
        len(stream),
    ]
    assert decoder.buffered == 0


def test_command_length_above_the_maximum_is_refused_before_the_body_is_buffered() -> None:
    decoder = PduDecoder(max_length=1024)
    items = decoder.feed(struct.pack(">I", 1025))
    assert len(items) == 1
    error = items[0]
    assert isinstance(error, PduError)
    assert error.fatal
    assert error.status == CommandStatus.ESME_RINVCMDLEN
    assert decoder.failed
    assert decoder.buffered == 0
    assert decoder.feed(b"\0" * 2000 + encode(EnquireLink())) == []
    assert decoder.buffered == 0


def test_command_length_below_the_header_size_is_fatal() -> None:
    decoder = PduDecoder()
    good = encode(EnquireLink(sequence_number=1))
    items = decoder.feed(good + struct.pack(">IIII", 15, CommandId.ENQUIRE_LINK, 0, 2))
    assert items[0] == EnquireLink(sequence_number=1)
    error = items[1]
    assert isinstance(error, PduError)
    assert error.fatal
    assert (error.command_id, error.sequence_number) == (CommandId.ENQUIRE_LINK, 2)
    assert isinstance(error.reply(), GenericNack)


def test_pdu_of_exactly_max_length_is_accepted() -> None:
    payload = b"p" * (300 - 16 - len(encode(DataSm())) + 16 - 4)
    pdu = DataSm(sequence_number=1, tlvs={Tag.MESSAGE_PAYLOAD: payload})
    wire = encode(pdu)
    assert len(wire) == 300
    assert PduDecoder(max_length=300).feed(wire) == [pdu]
    refused = PduDecoder(max_length=299).feed(wire)
    assert isinstance(refused[0], PduError) and refused[0].fatal


# --- encoding refuses what the wire cannot carry ------------------------------------------------


@pytest.mark.parametrize(
    "pdu",
    [
        SubmitSm(source_addr="4" * 21),
        SubmitSm(short_message=b"x" * 255),
        SubmitSm(esm_class=256),
        SubmitSm(sequence_number=2**32),
        SubmitSm(destination_addr="a\0b"),
        SubmitSm(source_addr="Ωmega"),
        SubmitSm(tlvs={Tag.SAR_MSG_REF_NUM: 65536}),
        SubmitSm(tlvs={Tag.SAR_MSG_REF_NUM: "1"}),
        SubmitSm(tlvs={Tag.RECEIPTED_MESSAGE_ID: "x" * 65}),
        SubmitSm(tlvs={0x1400: 5}),
        BindTransmitter(password="0123456789"),
        SubmitMulti(dest_addresses=[SmeAddress(1, 1, "4" * 21)]),
    ],
    ids=repr,
)
def test_values_the_wire_cannot_carry_raise_pdu_encode_error(pdu: Pdu) -> None:
    with pytest.raises(PduEncodeError):
        encode(pdu)


def test_known_tag_may_be_given_pre_encoded_as_bytes() -> None:
    wire = encode(SubmitSm(tlvs={Tag.SOURCE_PORT: b"\x23\xf0"}))
    decoded = decode(wire)
    assert isinstance(decoded, SubmitSm)
    assert decoded.tlvs == {Tag.SOURCE_PORT: 9200}


def test_command_names_for_logs_cover_unknown_ids() -> None:
    assert command_name(0x80000004) == "submit_sm_resp"
    assert command_name(0x00010203) == "0x00010203"
