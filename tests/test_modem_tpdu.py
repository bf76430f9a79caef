"""TS 23.040 TPDUs: published PDU strings, round trips of every TPDU we encode, and fuzzing.

The vectors are PDU strings published with their decoding: dreamfabric.com's SMS pages (the
"hellohello" SMS-SUBMIT and SMS-DELIVER), and the test suite of python-messaging (strings it
checked against pduspy and umts-tools): alphanumeric senders, a status report, a two-part
German message with the euro sign from the extension table, UCS-2 and a 7-bit multipart SUBMIT.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modems.tpdu import (
    DCS_8BIT,
    DCS_GSM7,
    DCS_UCS2,
    Address,
    Alphabet,
    SmsDeliver,
    SmsStatusReport,
    SmsSubmit,
    StatusGroup,
    TpduError,
    TypeOfNumber,
    UserData,
    Validity,
    ValidityFormat,
    alphabet_of,
    decode_from_network,
    decode_submit,
    decode_time_stamp,
    encode_time_stamp,
    parse_hex,
    relative_validity_octet,
    relative_validity_seconds,
    split_binary_user_data,
    split_service_centre,
    split_text_user_data,
    status_group,
    with_service_centre,
)
from smpp import gsm7
from smpp.segmentation import Concatenation, TooManyParts
from smpp.text import TextEncodingError


def received(pdu_hex: str) -> tuple[Address | None, SmsDeliver | SmsStatusReport]:
    service_centre, tpdu = split_service_centre(parse_hex(pdu_hex))
    return service_centre, decode_from_network(tpdu)


def submitted(pdu_hex: str) -> tuple[Address | None, SmsSubmit]:
    service_centre, tpdu = split_service_centre(parse_hex(pdu_hex))
    return service_centre, decode_submit(tpdu)


def hex_of(submit: SmsSubmit, service_centre: Address | None = None) -> str:
    return with_service_centre(submit.encode(), service_centre).hex().upper()


# --- published vectors: SMS-SUBMIT --------------------------------------------------------------

HELLOHELLO_SUBMIT = "0011000B916407281553F80000AA0AE8329BFD4697D9EC37"


def test_hellohello_submit_decodes_as_published() -> None:
    service_centre, submit = submitted(HELLOHELLO_SUBMIT)
    assert service_centre is None
    assert str(submit.destination) == "+46708251358"
    assert submit.user_data.text == "hellohello"
    assert submit.validity is not None and submit.validity.seconds == 4 * 86400
    assert not submit.status_report_request


def test_hellohello_submit_encodes_to_the_published_octets() -> None:
    submit = SmsSubmit(
        Address.parse("+46708251358"),
        UserData(DCS_GSM7, gsm7.encode("hellohello")),
        validity=Validity.relative(4 * 86400),
    )
    assert hex_of(submit) == HELLOHELLO_SUBMIT


def test_status_report_request_sets_tp_srr_as_published() -> None:
    submit = SmsSubmit(
        Address.parse("+34654123456"),
        UserData(DCS_GSM7, gsm7.encode("hey yo")),
        status_report_request=True,
    )
    assert hex_of(submit) == "0021000B914356143254F6000006E8721E947F03"


def test_service_centre_address_prefix_as_published() -> None:
    submit = SmsSubmit(Address.parse("+34616585119"), UserData(DCS_GSM7, gsm7.encode("hola")))
    pdu = with_service_centre(submit.encode(), Address.parse("+34646456456"))
    assert pdu.hex().upper() == "07914346466554F601000B914316565811F9000004E8373B0C"
    assert len(submit.encode()) == 17  # what AT+CMGS=<length> says: the TPDU without the SCA


def test_8bit_submit_as_published() -> None:
    submit = SmsSubmit(
        Address("01000000000", TypeOfNumber.UNKNOWN),
        UserData(DCS_8BIT, b"Hi there..."),
    )
    expected = "07914400000000F001000B811000000000F000040B48692074686572652E2E2E"
    assert with_service_centre(submit.encode(), Address.parse("+44000000000")).hex().upper() == (
        expected
    )


def test_ucs2_submit_as_published() -> None:
    (user_data,) = split_text_user_data("Русский")
    submit = SmsSubmit(Address.parse("655345678"), user_data, validity=Validity.relative(4 * 86400))
    assert hex_of(submit) == "001100098156355476F80008AA0E0420044304410441043A04380439"


KIPLING = (
    "Or walk with Kings - nor lose the common touch, if neither foes nor loving friends can hurt "
    "you, If all men count with you, but none too much; If you can fill the unforgiving minute "
    "With sixty seconds' worth of distance run, Yours is the Earth and everything thats in it, "
    "And - which is more - you will be a Man, my son"
)
KIPLING_PARTS = [
    "005100098156355476F80000AAA00500038803019E72D03DCC5E83EE693A1AB44CBBCF73500BE47ECB41ECF7BC0C"
    "A2A3CBA0F1BBDD7EBB41F4777D8C6681D26690BB9CA6A3CB7290F95D9E83DC6F3988FDB6A7DD6790599E2EBBC973"
    "D038EC06A1EB723A28FFAEB340493328CC6683DA653768FCAEBBE9A07B9A8E06E5DF7516485CA783DC6F7719447F"
    "BF41EDFA18BD0325CDA0FCBB0E1A87DD",
    "005100098156355476F80000AAA005000388030240E6349B0DA2A3CBA0BADBFC969FD3F6B4FB0C6AA7DD757A1974"
    "4DD3D1A0791A4FCF83E6E5F1DB4D9E9F40F7B79C8E06BDCD20727A4E0FBBC76590BCEE6681B2EFBA7C0E4ACF4174"
    "7419540CCBE96850D84D0695ED65799E8E4EBBCF203A3A4C9F83D26E509ACE0205DD64500B7447A7C768507A0E6A"
    "BFE565500B947FD741F7349B0D129741",
    "005100098156355476F80000AA14050003880303C2A066D8CD02B5F3A0F9DB0D",
]


def test_7bit_multipart_submit_with_udh_fill_bits_as_published() -> None:
    parts = split_text_user_data(KIPLING, reference=136)
    submits = [
        SmsSubmit(Address.parse("655345678"), part, validity=Validity.relative(4 * 86400))
        for part in parts
    ]
    assert [hex_of(submit) for submit in submits] == KIPLING_PARTS


def test_7bit_multipart_submit_decodes_back_to_the_text() -> None:
    submits = [submitted(part)[1] for part in KIPLING_PARTS]
    assert [s.user_data.concat.seqnum for s in submits if s.user_data.concat] == [1, 2, 3]
    joined = b"".join(s.user_data.payload for s in submits)
    assert gsm7.decode(joined) == KIPLING


# --- published vectors: SMS-DELIVER -------------------------------------------------------------


def test_hellohello_deliver_with_time_zone_as_published() -> None:
    service_centre, deliver = received(
        "07917283010010F5040BC87238880900F10000993092516195800AE8329BFD4697D9EC37"
    )
    assert str(service_centre) == "+27381000015"
    assert isinstance(deliver, SmsDeliver)
    assert deliver.originator == Address("27838890001", TypeOfNumber.SUBSCRIBER, 8)
    assert deliver.service_centre_time == datetime(
        1999, 3, 29, 15, 16, 59, tzinfo=timezone(timedelta(hours=2))
    )
    assert deliver.user_data.text == "hellohello"


def test_deliver_time_stamp_is_local_time_with_its_offset() -> None:
    _, deliver = received(
        "0791447758100650040C914497716247010000909010711423400A2050EC468B81C4733A"
    )
    assert isinstance(deliver, SmsDeliver)
    assert str(deliver.originator) == "+447917267410"
    assert deliver.user_data.text == "  1741 bst"
    when = deliver.service_centre_time
    assert when is not None and when.utcoffset() == timedelta(hours=1)
    assert when.astimezone(UTC).replace(tzinfo=None) == datetime(2009, 9, 1, 16, 41, 32)


@pytest.mark.parametrize(
    ("pdu", "sender", "text", "service_centre"),
    [
        (  # odd number of semi-octets
            "07919471060040340409D0C6A733390400009060920173018093CC74595C96838C4F6772085AD6DDE4"
            "320B444E9741D4B03C6D7EC3E9E9B71B9474D3CB727799DEA286CFE5B9991DA6CBC3F432E85E9793CB"
            "A0F09A9EB6A7CB72BA0B9474D3CB727799DE72D6E9FABAFB0CBAA7E56490BA4CD7D34170F91BE4ACD3"
            "F575F7794E0F9F4161F1B92C2F8FD1EE32DD054AA2E520E3D3991C82A8E5701B",
            "FONIC",
            "Lieber FONIC Kunde, die Tarifoption Internet-Tagesflatrate wurde aktiviert. "
            "Internet-Nutzung wird jetzt pro Nutzungstag abgerechnet. Ihr FONIC Team",
            "+491760000443",
        ),
        (  # even number of semi-octets
            "07919333852804000412D0F7FBDD454FB75D693A0000903002801153402BCD301E9F0605D9E9711914"
            "83C140412A35690D52832063D2F9040599A058EE05A3BD6430580E",
            "www.tim.it",
            "Maxxi Alice 100 ATTIVATA FINO AL 19/04/2009",
            "+393358824000",
        ),
    ],
)
def test_alphanumeric_originators_as_published(
    pdu: str, sender: str, text: str, service_centre: str
) -> None:
    centre, deliver = received(pdu)
    assert isinstance(deliver, SmsDeliver)
    assert deliver.originator.is_alphanumeric
    assert str(deliver.originator) == sender
    assert deliver.user_data.text == text
    assert str(centre) == service_centre


def test_ucs2_deliver_as_published() -> None:
    _, deliver = received("07914306073011F0040B914316709807F2000880604290224080084E2D5174901A8BAF")
    assert isinstance(deliver, SmsDeliver)
    assert deliver.user_data.alphabet is Alphabet.UCS2
    assert deliver.user_data.text == "中兴通讯"
    assert str(deliver.originator) == "+34610789702"


GERMAN_PARTS = [
    "07919471227210244405852122F039F101506271217180A005000319020198E9B2B82C0759DFE4B0F9ED2EB79675"
    "37B9CC02B5D37450122D2FCB41EE303DFD7687D96537881A96A7CD6F383DFD7683F46134BBEC064DD36550DA0D22"
    "A7CBF3721BE42CD3F5A0198B56036DCA20B8FC0D6A0A4170767D0EAAE540433A082E7F83A6E5F93CFD76BB40D7B2"
    "DB0D9AA6CB2072BA3C2F83926EF31BE44E8FD17450BB8C9683CA",
    "07919471227210244405852122F039F1015062712181804F050003190202E4E8309B5E7683DAFC319A5E76B340F7"
    "3D9A5D7683A6E93268FD9ED3CB6EF67B0E5AD172B19B2C2693C9602E90355D6683A6F0B007946E8382F5393BEC26"
    "BB00",
]


def test_two_part_deliver_with_fill_bits_and_the_euro_sign_as_published() -> None:
    delivers = [received(part)[1] for part in GERMAN_PARTS]
    assert all(isinstance(d, SmsDeliver) for d in delivers)
    concats = [d.user_data.concat for d in delivers if isinstance(d, SmsDeliver)]
    assert [(c.reference, c.total, c.seqnum) for c in concats if c] == [(25, 2, 1), (25, 2, 2)]
    texts = [d.user_data.text for d in delivers if isinstance(d, SmsDeliver)]
    assert texts == [
        "Lieber Vodafone-Kunde, mit Ihrer nationalen Tarifoption zahlen Sie in diesem Netz "
        "3,45 € pro MB plus 59 Ct pro Session. Wenn Sie diese Info nicht mehr e",
        "rhalten möchten, wählen Sie kostenlos +4917212220. Viel Spaß im Ausland.",
    ]


# --- published vectors: SMS-STATUS-REPORT -------------------------------------------------------


def test_status_report_as_published() -> None:
    centre, report = received("07914306073011F006270B913426565711F7012081111345400120811174054043")
    assert str(centre) == "+34607003110"
    assert isinstance(report, SmsStatusReport)
    assert report.message_reference == 0x27
    assert str(report.recipient) == "+43626575117"
    plus_one = timezone(timedelta(hours=1))
    assert report.service_centre_time == datetime(2010, 2, 18, 11, 31, 54, tzinfo=plus_one)
    assert report.discharge_time == datetime(2010, 2, 18, 11, 47, 50, tzinfo=plus_one)
    assert report.status == 0x43  # "not obtainable"
    assert report.group is StatusGroup.PERMANENT


@pytest.mark.parametrize(
    ("status", "group"),
    [
        (0x00, StatusGroup.COMPLETED),
        (0x02, StatusGroup.COMPLETED),
        (0x20, StatusGroup.TEMPORARY_TRYING),
        (0x30, StatusGroup.TEMPORARY_TRYING),
        (0x46, StatusGroup.PERMANENT),
        (0x60, StatusGroup.TEMPORARY_GAVE_UP),
        (0x80, StatusGroup.TEMPORARY_GAVE_UP),
    ],
)
def test_tp_status_groups(status: int, group: StatusGroup) -> None:
    assert status_group(status) is group
    assert group.is_final is (group is not StatusGroup.TEMPORARY_TRYING)


def test_status_report_padding_after_tp_st_does_not_cost_the_report() -> None:
    _, report = received("07914306073011F006270B913426565711F7012081111345400120811174054000FF")
    assert isinstance(report, SmsStatusReport)
    assert report.status == 0 and report.user_data is None


# --- alphabets, emoji, fields -------------------------------------------------------------------


def test_ucs2_emoji_is_a_surrogate_pair_and_never_split() -> None:
    (single,) = split_text_user_data("hi 😀")
    assert single.dcs == DCS_UCS2
    assert single.payload == "hi ".encode("utf-16-be") + bytes.fromhex("D83DDE00")
    # 66 units, then an emoji: a cut at 67 units would fall inside the pair
    parts = split_text_user_data("a" * 66 + "😀" + "b" * 10)
    assert len(parts) == 2
    assert parts[0].payload.endswith(b"\x00a")
    assert parts[1].payload.startswith(bytes.fromhex("D83DDE00"))
    assert "".join(p.text for p in parts) == "a" * 66 + "😀" + "b" * 10


def test_extension_characters_cost_two_septets_and_are_not_split() -> None:
    text = "x" * 152 + "€" + "y" * 10  # 164 septets; the 153rd is the escape
    parts = split_text_user_data(text)
    assert [len(p.payload) for p in parts] == [152, 12]
    assert parts[1].payload.startswith(b"\x1be")
    submit = SmsSubmit(Address.parse("+1555"), parts[1])
    assert decode_submit(submit.encode()).user_data.text == "€" + "y" * 10


def test_16bit_concatenation_uses_iei_8_and_152_septets() -> None:
    parts = split_text_user_data("z" * 200, concatenation=Concatenation.UDH16, reference=0x1234)
    assert [p.header for p in parts] == [bytes.fromhex("0608041234020" + str(n)) for n in (1, 2)]
    assert len(parts[0].payload) == 152
    for part in parts:
        assert decode_submit(SmsSubmit(Address.parse("+1"), part).encode()).user_data == part


def test_binary_user_data_parts() -> None:
    parts = split_binary_user_data(bytes(range(200)), reference=7)
    assert [len(p.payload) for p in parts] == [134, 66]
    assert all(p.alphabet is Alphabet.EIGHT_BIT for p in parts)


def test_modems_refuse_what_a_handset_cannot_take() -> None:
    with pytest.raises(ValueError):
        split_text_user_data("hi", "latin1")
    with pytest.raises(ValueError):
        split_text_user_data("hi", concatenation=Concatenation.SAR)
    with pytest.raises(TextEncodingError):
        split_text_user_data("😀", "gsm7")
    with pytest.raises(TooManyParts):
        split_text_user_data("x" * 1000, max_parts=2)
    with pytest.raises(TpduError):
        SmsSubmit(Address.parse("+1"), UserData(DCS_GSM7, b"x" * 161)).encode()
    with pytest.raises(TpduError):
        Address.parse("ThisSenderIsTooLong").encode()


@pytest.mark.parametrize(
    ("dcs", "alphabet"),
    [
        (0x00, Alphabet.GSM7),
        (0x04, Alphabet.EIGHT_BIT),
        (0x08, Alphabet.UCS2),
        (0x10, Alphabet.GSM7),  # class 0
        (0x18, Alphabet.UCS2),
        (0x24, Alphabet.EIGHT_BIT),  # compressed
        (0x0C, Alphabet.GSM7),  # reserved alphabet: default
        (0xC0, Alphabet.GSM7),
        (0xE0, Alphabet.UCS2),
        (0xF1, Alphabet.GSM7),
        (0xF6, Alphabet.EIGHT_BIT),
        (0x90, Alphabet.GSM7),  # reserved group
    ],
)
def test_data_coding_scheme_alphabets(dcs: int, alphabet: Alphabet) -> None:
    assert alphabet_of(dcs) is alphabet


@pytest.mark.parametrize(
    ("octet", "seconds"),
    [(0, 300), (143, 12 * 3600), (167, 24 * 3600), (168, 2 * 86400), (197, 5 * 7 * 86400)],
)
def test_relative_validity_period(octet: int, seconds: int) -> None:
    assert relative_validity_seconds(octet) == seconds
    assert relative_validity_octet(seconds) == octet


def test_time_stamp_with_negative_offset() -> None:
    minus_three = datetime(1999, 2, 12, 5, 57, 30, tzinfo=timezone(timedelta(hours=-3)))
    octets = encode_time_stamp(minus_three)
    assert octets == bytes([0x99, 0x20, 0x21, 0x50, 0x75, 0x03, 0x29])
    assert decode_time_stamp(octets) == minus_three


def test_a_garbage_time_stamp_decodes_as_none_and_keeps_the_message() -> None:
    assert decode_time_stamp(bytes.fromhex("FF999999999900")) is None  # month 99
    deliver = SmsDeliver(Address.parse("+1"), datetime(2020, 1, 1, tzinfo=UTC))
    raw = bytearray(deliver.encode())
    raw[6:13] = b"\xff" * 7  # after first octet, 3-octet address, TP-PID and TP-DCS
    decoded = decode_from_network(bytes(raw))
    assert isinstance(decoded, SmsDeliver) and decoded.service_centre_time is None


# --- round trips --------------------------------------------------------------------------------

digits = st.text(alphabet="0123456789*#abc", max_size=20)
numeric_address = st.builds(
    Address,
    digits,
    st.sampled_from([t for t in TypeOfNumber if t != TypeOfNumber.ALPHANUMERIC]),
    st.integers(0, 15),
)
GSM_CHARACTERS = sorted(set(gsm7.BASIC_TABLE.replace("\x1b", "")) | set("^{}\\[~]|€\x0c"))
alphanumeric_address = (
    st.text(alphabet=GSM_CHARACTERS, max_size=11)
    .filter(lambda text: len(gsm7.encode(text)) <= 11)
    .map(lambda text: Address(text, TypeOfNumber.ALPHANUMERIC, 0))
)
addresses = numeric_address | alphanumeric_address
time_stamps = st.builds(
    lambda moment, quarters: moment.replace(tzinfo=timezone(timedelta(minutes=15 * quarters))),
    st.datetimes(datetime(1970, 1, 1), datetime(2069, 12, 31, 23, 59, 59)).map(
        lambda moment: moment.replace(microsecond=0)
    ),
    st.integers(-79, 79),
)
concat_headers = st.builds(
    lambda ref, total, seq: bytes((5, 0, 3, ref, total, seq)),
    st.integers(0, 255),
    st.integers(1, 255),
    st.integers(1, 255),
) | st.builds(
    lambda ref, total, seq: bytes((6, 8, 4, ref >> 8, ref & 0xFF, total, seq)),
    st.integers(0, 0xFFFF),
    st.integers(1, 255),
    st.integers(1, 255),
)
headers = st.just(b"") | concat_headers


@st.composite
def user_data(draw: st.DrawFn) -> UserData:
    dcs = draw(st.sampled_from([0x00, 0x04, 0x08, 0x11, 0xF2, 0xF4, 0x24]))
    header = draw(headers)
    if alphabet_of(dcs) is Alphabet.GSM7:
        room = 160 - ((len(header) * 8 + 6) // 7 if header else 0)
        payload = draw(st.binary(max_size=room).map(lambda b: bytes(x & 0x7F for x in b)))
    else:
        payload = draw(st.binary(max_size=140 - len(header)))
    return UserData(dcs, payload, header)


validities = (
    st.none()
    | st.builds(
        lambda octet: Validity(ValidityFormat.RELATIVE, bytes((octet,))), st.integers(0, 255)
    )
    | st.builds(
        Validity,
        st.sampled_from([ValidityFormat.ABSOLUTE, ValidityFormat.ENHANCED]),
        st.binary(min_size=7, max_size=7),
    )
)
submits = st.builds(
    SmsSubmit,
    destination=addresses,
    user_data=user_data(),
    message_reference=st.integers(0, 255),
    status_report_request=st.booleans(),
    validity=validities,
    protocol_id=st.integers(0, 255),
    reject_duplicates=st.booleans(),
    reply_path=st.booleans(),
)
delivers = st.builds(
    SmsDeliver,
    originator=addresses,
    service_centre_time=time_stamps,
    user_data=user_data(),
    protocol_id=st.integers(0, 255),
    more_messages_to_send=st.booleans(),
    status_report_indication=st.booleans(),
    reply_path=st.booleans(),
    loop_prevention=st.booleans(),
)
reports = st.builds(
    SmsStatusReport,
    message_reference=st.integers(0, 255),
    recipient=addresses,
    service_centre_time=time_stamps,
    discharge_time=time_stamps,
    status=st.integers(0, 255),
    for_command=st.booleans(),
    more_messages_to_send=st.booleans(),
    loop_prevention=st.booleans(),
    protocol_id=st.none() | st.integers(0, 255),
    user_data=st.none() | user_data(),
)
service_centres = st.none() | st.builds(
    Address, st.text(alphabet="0123456789", max_size=20), st.sampled_from([1, 0, 2])
)


@settings(deadline=None)
@given(submits, service_centres)
def test_submit_round_trip(submit: SmsSubmit, centre: Address | None) -> None:
    found_centre, tpdu = split_service_centre(with_service_centre(submit.encode(), centre))
    assert decode_submit(tpdu) == submit
    if centre is not None and centre.number:
        assert found_centre == centre


@settings(deadline=None)
@given(delivers)
def test_deliver_round_trip(deliver: SmsDeliver) -> None:
    assert decode_from_network(deliver.encode()) == deliver


@settings(deadline=None)
@given(reports)
def test_status_report_round_trip(report: SmsStatusReport) -> None:
    assert decode_from_network(report.encode()) == report


@settings(deadline=None)
@given(st.text(max_size=600), st.sampled_from([Concatenation.UDH8, Concatenation.UDH16]))
def test_any_text_splits_into_parts_that_encode_and_join_back(
    text: str, concatenation: Concatenation
) -> None:
    try:
        parts = split_text_user_data(text, concatenation=concatenation, reference=99)
    except TextEncodingError:  # lone surrogates
        return
    tpdus = [SmsSubmit(Address.parse("+4479"), part).encode() for part in parts]
    decoded = [decode_submit(tpdu).user_data for tpdu in tpdus]
    joined = b"".join(part.payload for part in decoded)
    alphabet = decoded[0].alphabet
    assert (gsm7.decode(joined) if alphabet is Alphabet.GSM7 else joined.decode("utf-16-be")) == (
        text
    )


# --- fuzz: only TpduError ----------------------------------------------------------------------


@settings(deadline=None)
@given(st.binary(max_size=200))
def test_random_octets_raise_only_tpdu_error(data: bytes) -> None:
    for decode in (decode_from_network, decode_submit, split_service_centre):
        try:
            decode(data)
        except TpduError:
            pass


@settings(deadline=None)
@given(reports | delivers | submits, st.data())
def test_mutated_tpdus_raise_only_tpdu_error(tpdu: object, data: st.DataObject) -> None:
    assert isinstance(tpdu, SmsSubmit | SmsDeliver | SmsStatusReport)
    octets = bytearray(tpdu.encode())
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(octets) - 1))
        octets[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(octets)))
    for decode in (decode_from_network, decode_submit):
        try:
            decode(bytes(octets[:cut]))
        except TpduError:
            pass


def test_a_reserved_message_type_is_read_as_an_sms_deliver() -> None:
    deliver = SmsDeliver(Address.parse("+1"), datetime(2020, 1, 1, tzinfo=UTC))
    tpdu = bytearray(deliver.encode())
    tpdu[0] |= 0x03
    assert decode_from_network(bytes(tpdu)) == deliver
    tpdu[0] = (tpdu[0] & ~0x03) | 0x01  # SMS-SUBMIT-REPORT
    with pytest.raises(TpduError):
        decode_from_network(bytes(tpdu))


def test_not_hex_is_a_tpdu_error() -> None:
    with pytest.raises(TpduError):
        parse_hex("0011zz")
