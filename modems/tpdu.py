"""SMS transfer-layer PDUs (3GPP TS 23.040) as a GSM modem carries them in PDU mode (+CMGF=0).

Owns encoding and decoding of SMS-SUBMIT, SMS-DELIVER and SMS-STATUS-REPORT, their address,
time stamp, validity period and data coding fields, the user data (packed GSM 7-bit with septet
fill bits after a header, UCS-2, 8-bit data), the service centre address prefix that TS 27.005
puts before the TPDU in +CMGS/+CMGL/+CMGR/+CMT/+CDS, and turning a text into the user data of
its SMS parts.

Must never choose how text is encoded or cut (that is `smpp.text` / `smpp.segmentation`, reused
here: the parts a modem sends are the parts an SMPP link would send), never do I/O, never read a
clock. Decoding untrusted octets raises `TpduError` and nothing else.

User data is kept unpacked: `UserData.payload` holds one septet per octet for GSM 7-bit (as
`smpp.gsm7` and SMPP data_coding 0 do), so parts can be joined before decoding and an escape
split across two parts still decodes right.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from smpp import gsm7
from smpp.reassembly import ConcatInfo, MalformedUdh, parse_udh
from smpp.segmentation import (
    DEFAULT_MAX_PARTS,
    SMS_OCTETS,
    Concatenation,
    Segment,
    split_bytes,
    split_text,
)
from smpp.text import AUTO, DataCoding, Encoding, decode_text

MAX_SEPTETS = 160
MAX_ADDRESS_DIGITS = 20
MAX_ALPHANUMERIC_SEPTETS = 11  # 10 octets of packed septets (TS 23.040 9.1.2.5)


class TpduError(ValueError):
    """The octets are not a TPDU this codec can read, or a field cannot be encoded."""


# --- data coding (TS 23.038 clause 4) ----------------------------------------------------------


class Alphabet(enum.Enum):
    GSM7 = "gsm7"
    EIGHT_BIT = "8bit"
    UCS2 = "ucs2"


DCS_GSM7 = 0x00
DCS_8BIT = 0x04
DCS_UCS2 = 0x08


def alphabet_of(dcs: int) -> Alphabet:
    """The alphabet a TP-DCS value names. Compressed text is kept as octets (we cannot
    decompress it); reserved codings are read as the default alphabet, as TS 23.038 says."""
    group = dcs >> 4
    if group <= 0x7:  # general data coding and automatic deletion groups
        if dcs & 0x20:
            return Alphabet.EIGHT_BIT
        return {1: Alphabet.EIGHT_BIT, 2: Alphabet.UCS2}.get((dcs >> 2) & 0x03, Alphabet.GSM7)
    if group == 0xE:  # message waiting indication, UCS-2
        return Alphabet.UCS2
    if group == 0xF:  # data coding / message class
        return Alphabet.EIGHT_BIT if dcs & 0x04 else Alphabet.GSM7
    return Alphabet.GSM7


# SMPP's data_coding values 0, 4 and 8 read the same as TS 23.038's.
_DCS_OF_SMPP_CODING = {
    DataCoding.SMSC_DEFAULT: DCS_GSM7,
    DataCoding.OCTET_UNSPECIFIED: DCS_8BIT,
    DataCoding.UCS2: DCS_UCS2,
}


# --- user data ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UserData:
    """TP-DCS with TP-UD: `payload` is unpacked septets for GSM 7-bit, else the octets;
    `header` is the user data header including its length octet (b"" when there is none)."""

    dcs: int = DCS_GSM7
    payload: bytes = b""
    header: bytes = b""

    @property
    def alphabet(self) -> Alphabet:
        return alphabet_of(self.dcs)

    @property
    def text(self) -> str:
        """The payload as text (8-bit data as Latin-1, so no octet is lost). Never raises."""
        alphabet = self.alphabet
        if alphabet is Alphabet.GSM7:
            return gsm7.decode(self.payload)
        if alphabet is Alphabet.UCS2:
            return decode_text(self.payload, DataCoding.UCS2)
        return self.payload.decode("latin-1")

    @property
    def concat(self) -> ConcatInfo | None:
        """Concatenation reference, total and sequence number from the header, if any."""
        if not self.header:
            return None
        try:
            return parse_udh(self.header).concat
        except MalformedUdh:
            return None


def _header_septets(header_octets: int) -> int:
    return (header_octets * 8 + 6) // 7


def _encode_user_data(user_data: UserData) -> tuple[int, bytes]:
    """(TP-UDL, TP-UD) for the user data; raises TpduError when it does not fit one SMS."""
    header = user_data.header
    if header and (len(header) < 2 or header[0] != len(header) - 1):
        raise TpduError("user data header length octet does not match the header")
    if user_data.alphabet is Alphabet.GSM7:
        fill_bits = gsm7.fill_bits_for_header(len(header)) if header else 0
        septets = (_header_septets(len(header)) if header else 0) + len(user_data.payload)
        if septets > MAX_SEPTETS:
            raise TpduError(f"user data needs {septets} septets, at most {MAX_SEPTETS} fit")
        return septets, header + gsm7.pack(user_data.payload, fill_bits)
    octets = len(header) + len(user_data.payload)
    if octets > SMS_OCTETS:
        raise TpduError(f"user data needs {octets} octets, at most {SMS_OCTETS} fit")
    return octets, header + user_data.payload


def _decode_user_data(dcs: int, has_header: bool, length: int, data: bytes) -> UserData:
    """TP-UD of TP-UDL `length` (septets or octets by `dcs`) from `data` (what follows TP-UDL)."""
    alphabet = alphabet_of(dcs)
    if alphabet is Alphabet.GSM7:
        if length > MAX_SEPTETS:
            raise TpduError(f"TP-UDL {length} septets exceeds {MAX_SEPTETS}")
        octets = gsm7.packed_length(length)
    else:
        if length > SMS_OCTETS:
            raise TpduError(f"TP-UDL {length} octets exceeds {SMS_OCTETS}")
        octets = length
    if len(data) < octets:
        raise TpduError(f"TP-UDL says {octets} octets of user data, {len(data)} present")
    data = data[:octets]
    header = b""
    if has_header:
        try:
            header_end = parse_udh(data).header_octets
        except MalformedUdh as error:
            raise TpduError(f"user data header: {error}") from None
        header = data[:header_end]
    if alphabet is not Alphabet.GSM7:
        return UserData(dcs, data[len(header) :], header)
    if not header:
        return UserData(dcs, gsm7.unpack(data, length), b"")
    header_septets = _header_septets(len(header))
    if header_septets > length:
        raise TpduError("user data header is longer than TP-UDL")
    fill_bits = gsm7.fill_bits_for_header(len(header))
    payload = gsm7.unpack(data[len(header) :], length - header_septets, fill_bits)
    return UserData(dcs, payload, header)


# --- addresses (TS 23.040 9.1.2.5) -------------------------------------------------------------


class TypeOfNumber(enum.IntEnum):
    UNKNOWN = 0
    INTERNATIONAL = 1
    NATIONAL = 2
    NETWORK_SPECIFIC = 3
    SUBSCRIBER = 4
    ALPHANUMERIC = 5
    ABBREVIATED = 6
    RESERVED = 7


NPI_UNKNOWN = 0
NPI_ISDN = 1  # E.164

# Semi-octet digits 0-9, then 0xA-0xE as TS 23.040 9.1.2.3 names them; 0xF is the filler.
_SEMI_OCTET_DIGITS = "0123456789*#abc"


def _pack_semi_octets(digits: str) -> bytes:
    try:
        values = [_SEMI_OCTET_DIGITS.index(digit) for digit in digits]
    except ValueError:
        raise TpduError(f"{digits!r} holds a character that is not an address digit") from None
    if len(values) % 2:
        values.append(0xF)
    return bytes(values[i] | (values[i + 1] << 4) for i in range(0, len(values), 2))


def _unpack_semi_octets(data: bytes, count: int) -> str:
    digits: list[int] = []
    for octet in data:
        digits.extend((octet & 0x0F, octet >> 4))
    digits = digits[:count]
    if 0xF in digits:  # a filler before the end: what precedes it is the number
        digits = digits[: digits.index(0xF)]
    return "".join(_SEMI_OCTET_DIGITS[digit] for digit in digits)


@dataclass(frozen=True, slots=True)
class Address:
    """TP-OA, TP-DA, TP-RA or the service centre address: digits (or text, for an
    alphanumeric address) with type of number and numbering plan."""

    number: str
    type_of_number: int = TypeOfNumber.INTERNATIONAL
    numbering_plan: int = NPI_ISDN

    @classmethod
    def parse(cls, value: str) -> Address:
        """ "+4479..." is international, "0791..." unknown-type digits, anything else
        (e.g. "Tandem") an alphanumeric sender."""
        if value.startswith("+") and value[1:].isdigit():
            return cls(value[1:], TypeOfNumber.INTERNATIONAL, NPI_ISDN)
        if value.isdigit():
            return cls(value, TypeOfNumber.UNKNOWN, NPI_ISDN)
        return cls(value, TypeOfNumber.ALPHANUMERIC, NPI_UNKNOWN)

    @property
    def is_alphanumeric(self) -> bool:
        return self.type_of_number == TypeOfNumber.ALPHANUMERIC

    def __str__(self) -> str:
        if self.type_of_number == TypeOfNumber.INTERNATIONAL:
            return "+" + self.number
        return self.number

    @property
    def type_octet(self) -> int:
        return 0x80 | (self.type_of_number & 0x07) << 4 | (self.numbering_plan & 0x0F)

    def encode(self) -> bytes:
        """Length (in useful semi-octets), type of address, value: as in a TPDU."""
        if self.is_alphanumeric:
            try:
                septets = gsm7.encode(self.number)
            except gsm7.Gsm7EncodeError as error:
                raise TpduError(f"alphanumeric address: {error}") from None
            if len(septets) > MAX_ALPHANUMERIC_SEPTETS:
                raise TpduError(f"alphanumeric address {self.number!r} exceeds 11 septets")
            packed = gsm7.pack(septets)
            semi_octets = (len(septets) * 7 + 3) // 4
            return bytes((semi_octets, self.type_octet)) + packed
        if len(self.number) > MAX_ADDRESS_DIGITS:
            raise TpduError(f"address {self.number!r} exceeds {MAX_ADDRESS_DIGITS} digits")
        return bytes((len(self.number), self.type_octet)) + _pack_semi_octets(self.number)

    def encode_service_centre(self) -> bytes:
        """As the SC address before a TPDU in PDU mode: the length counts octets, type included."""
        if self.is_alphanumeric:
            raise TpduError("a service centre address cannot be alphanumeric")
        if len(self.number) > MAX_ADDRESS_DIGITS:
            raise TpduError(f"address {self.number!r} exceeds {MAX_ADDRESS_DIGITS} digits")
        value = _pack_semi_octets(self.number)
        return bytes((len(value) + 1, self.type_octet)) + value


def _address_from(type_octet: int, number_octets: bytes, semi_octets: int) -> Address:
    type_of_number = (type_octet >> 4) & 0x07
    numbering_plan = type_octet & 0x0F
    if type_of_number == TypeOfNumber.ALPHANUMERIC:
        septets = gsm7.unpack(number_octets, semi_octets * 4 // 7)
        return Address(gsm7.decode(septets), type_of_number, numbering_plan)
    return Address(_unpack_semi_octets(number_octets, semi_octets), type_of_number, numbering_plan)


def _decode_address(data: bytes, position: int) -> tuple[Address, int]:
    """The address at `position` and the position after it."""
    if position + 2 > len(data):
        raise TpduError(f"address cut at octet {position}")
    semi_octets, type_octet = data[position], data[position + 1]
    if semi_octets > MAX_ADDRESS_DIGITS:
        raise TpduError(f"address length {semi_octets} exceeds {MAX_ADDRESS_DIGITS} semi-octets")
    end = position + 2 + (semi_octets + 1) // 2
    if end > len(data):
        raise TpduError(f"address of {semi_octets} semi-octets cut at octet {len(data)}")
    return _address_from(type_octet, data[position + 2 : end], semi_octets), end


def split_service_centre(pdu: bytes) -> tuple[Address | None, bytes]:
    """A PDU-mode PDU (+CMGS, +CMGL, +CMT, +CDS) -> (service centre address or None for
    "the SIM's default", the TPDU)."""
    if not pdu:
        raise TpduError("empty PDU")
    length = pdu[0]
    if length == 0:
        return None, pdu[1:]
    if length > 1 + MAX_ADDRESS_DIGITS // 2 or 1 + length > len(pdu):
        raise TpduError(f"service centre address length {length} does not fit the PDU")
    type_octet, value = pdu[1], pdu[2 : 1 + length]
    address = _address_from(type_octet, value, len(value) * 2)
    return address, pdu[1 + length :]


def with_service_centre(tpdu: bytes, service_centre: Address | None = None) -> bytes:
    """The PDU that AT+CMGS takes: the service centre address ("00": the SIM's) + the TPDU.
    AT+CMGS=<length> counts only the TPDU's octets."""
    prefix = b"\x00" if service_centre is None else service_centre.encode_service_centre()
    return prefix + tpdu


def parse_hex(text: str) -> bytes:
    """A PDU as the modem prints it (hex digits) -> octets; raises TpduError."""
    try:
        return bytes.fromhex(text.strip())
    except ValueError:
        raise TpduError("PDU is not hexadecimal") from None


# --- time stamps (TS 23.040 9.2.3.11) ----------------------------------------------------------


def _semi_octets(value: int) -> int:
    """Two decimal digits, the first in the low nibble (TS 23.040 9.1.2.3)."""
    return (value % 10) << 4 | (value // 10)


def encode_time_stamp(moment: datetime) -> bytes:
    """TP-SCTS / TP-DT: local time with its offset from UTC in quarter hours."""
    offset = moment.utcoffset()
    if offset is None:
        raise TpduError("a time stamp needs a time zone")
    quarters, remainder = divmod(int(offset.total_seconds()), 900)
    if remainder or not -79 <= quarters <= 79:
        raise TpduError(f"time zone offset {offset} is not a whole number of quarter hours")
    if not 1970 <= moment.year <= 2069:
        raise TpduError(f"year {moment.year} does not fit a two-digit time stamp")
    zone = _semi_octets(abs(quarters)) | (0x08 if quarters < 0 else 0)
    fields = (moment.year % 100, moment.month, moment.day, moment.hour, moment.minute)
    return bytes(_semi_octets(value) for value in (*fields, moment.second)) + bytes((zone,))


def decode_time_stamp(octets: bytes) -> datetime | None:
    """7 octets -> an aware datetime; None when they do not name a real instant (a modem's
    garbage time stamp must not cost the message)."""
    digits = []
    for octet in octets[:6]:
        low, high = octet & 0x0F, octet >> 4
        if low > 9 or high > 9:
            return None
        digits.append(low * 10 + high)
    zone = octets[6]
    tens, units = zone & 0x07, zone >> 4
    if units > 9:
        return None
    quarters = (tens * 10 + units) * (-1 if zone & 0x08 else 1)
    year = digits[0] + (2000 if digits[0] < 70 else 1900)
    month, day, hour, minute, second = digits[1:6]
    try:
        zone_info = timezone(timedelta(minutes=15 * quarters))
        return datetime(year, month, day, hour, minute, second, tzinfo=zone_info)
    except ValueError:
        return None


# --- validity period (TS 23.040 9.2.3.12) ------------------------------------------------------


class ValidityFormat(enum.IntEnum):
    NONE = 0
    ENHANCED = 1
    RELATIVE = 2
    ABSOLUTE = 3


_MINUTE = 60
_DAY = 86400


def relative_validity_seconds(octet: int) -> int:
    """What a relative TP-VP octet means, in seconds."""
    if octet <= 143:
        return (octet + 1) * 5 * _MINUTE
    if octet <= 167:
        return 12 * 3600 + (octet - 143) * 30 * _MINUTE
    if octet <= 196:
        return (octet - 166) * _DAY
    return (octet - 192) * 7 * _DAY


def relative_validity_octet(seconds: float) -> int:
    """The smallest relative TP-VP covering `seconds` (capped at 63 weeks, the longest)."""
    for octet in range(256):
        if relative_validity_seconds(octet) >= seconds:
            return octet
    return 255


@dataclass(frozen=True, slots=True)
class Validity:
    """TP-VPF with TP-VP: one octet when relative, seven when absolute or enhanced."""

    format: ValidityFormat
    octets: bytes

    @classmethod
    def relative(cls, seconds: float) -> Validity:
        return cls(ValidityFormat.RELATIVE, bytes((relative_validity_octet(seconds),)))

    @property
    def seconds(self) -> int | None:
        """The relative period in seconds; None for the other formats."""
        if self.format is ValidityFormat.RELATIVE:
            return relative_validity_seconds(self.octets[0])
        return None


_VALIDITY_LENGTH = {
    ValidityFormat.NONE: 0,
    ValidityFormat.ENHANCED: 7,
    ValidityFormat.RELATIVE: 1,
    ValidityFormat.ABSOLUTE: 7,
}


# --- the TPDUs ---------------------------------------------------------------------------------

MTI_DELIVER = 0b00
MTI_SUBMIT = 0b01
MTI_STATUS_REPORT = 0b10
MTI_RESERVED = 0b11

_BIT_MMS = 0x04  # set: no more messages are waiting
_BIT_RD = 0x04  # SUBMIT: reject duplicates
_BIT_LP = 0x08  # loop prevention
_BIT_SRR = 0x20  # SUBMIT: status report request
_BIT_SRI = 0x20  # DELIVER: status report indication
_BIT_SRQ = 0x20  # STATUS-REPORT: the report is for a COMMAND
_BIT_UDHI = 0x40
_BIT_RP = 0x80


@dataclass(frozen=True, slots=True)
class SmsSubmit:
    """SMS-SUBMIT: what the modem sends to the service centre."""

    destination: Address
    user_data: UserData = field(default_factory=UserData)
    message_reference: int = 0  # the modem assigns its own in +CMGS: n
    status_report_request: bool = False
    validity: Validity | None = None
    protocol_id: int = 0
    reject_duplicates: bool = False
    reply_path: bool = False

    def encode(self) -> bytes:
        validity_format = ValidityFormat.NONE if self.validity is None else self.validity.format
        validity = b"" if self.validity is None else self.validity.octets
        if len(validity) != _VALIDITY_LENGTH[validity_format]:
            raise TpduError(f"a {validity_format.name.lower()} validity period is wrong length")
        first = (
            MTI_SUBMIT
            | (_BIT_RD if self.reject_duplicates else 0)
            | validity_format << 3
            | (_BIT_SRR if self.status_report_request else 0)
            | (_BIT_UDHI if self.user_data.header else 0)
            | (_BIT_RP if self.reply_path else 0)
        )
        length, user_data = _encode_user_data(self.user_data)
        return (
            bytes((first, self.message_reference & 0xFF))
            + self.destination.encode()
            + bytes((self.protocol_id & 0xFF, self.user_data.dcs & 0xFF))
            + validity
            + bytes((length,))
            + user_data
        )


@dataclass(frozen=True, slots=True)
class SmsDeliver:
    """SMS-DELIVER: a message the service centre delivers to the modem (an MO for us)."""

    originator: Address
    service_centre_time: datetime | None
    user_data: UserData = field(default_factory=UserData)
    protocol_id: int = 0
    more_messages_to_send: bool = False
    status_report_indication: bool = False
    reply_path: bool = False
    loop_prevention: bool = False

    def encode(self) -> bytes:
        if self.service_centre_time is None:
            raise TpduError("an SMS-DELIVER needs its service centre time stamp")
        first = (
            MTI_DELIVER
            | (0 if self.more_messages_to_send else _BIT_MMS)
            | (_BIT_LP if self.loop_prevention else 0)
            | (_BIT_SRI if self.status_report_indication else 0)
            | (_BIT_UDHI if self.user_data.header else 0)
            | (_BIT_RP if self.reply_path else 0)
        )
        length, user_data = _encode_user_data(self.user_data)
        return (
            bytes((first,))
            + self.originator.encode()
            + bytes((self.protocol_id & 0xFF, self.user_data.dcs & 0xFF))
            + encode_time_stamp(self.service_centre_time)
            + bytes((length,))
            + user_data
        )


class StatusGroup(enum.Enum):
    """The four kinds of TP-Status (TS 23.040 9.2.3.15)."""

    COMPLETED = "completed"  # delivered (or forwarded, or replaced)
    TEMPORARY_TRYING = "temporary_trying"  # the SC is still trying: not final
    PERMANENT = "permanent"  # the SC gave up: final
    TEMPORARY_GAVE_UP = "temporary_gave_up"  # temporary error, but the SC no longer tries: final

    @property
    def is_final(self) -> bool:
        return self is not StatusGroup.TEMPORARY_TRYING


def status_group(status: int) -> StatusGroup:
    """The kind of a TP-Status value; reserved and SC-specific values count with their range,
    and values with bit 7 set (all reserved) as a final failure."""
    if status < 0x20:
        return StatusGroup.COMPLETED
    if status < 0x40:
        return StatusGroup.TEMPORARY_TRYING
    if status < 0x60:
        return StatusGroup.PERMANENT
    return StatusGroup.TEMPORARY_GAVE_UP


TP_STATUS_VALIDITY_EXPIRED = 0x46


@dataclass(frozen=True, slots=True)
class SmsStatusReport:
    """SMS-STATUS-REPORT: the service centre's word on a message we submitted, found by its
    TP-MR (`message_reference`)."""

    message_reference: int
    recipient: Address
    service_centre_time: datetime | None
    discharge_time: datetime | None
    status: int
    for_command: bool = False  # TP-SRQ: the report is for an SMS-COMMAND
    more_messages_to_send: bool = False
    loop_prevention: bool = False
    protocol_id: int | None = None
    user_data: UserData | None = None

    @property
    def group(self) -> StatusGroup:
        return status_group(self.status)

    def encode(self) -> bytes:
        if self.service_centre_time is None or self.discharge_time is None:
            raise TpduError("an SMS-STATUS-REPORT needs both of its time stamps")
        first = (
            MTI_STATUS_REPORT
            | (0 if self.more_messages_to_send else _BIT_MMS)
            | (_BIT_LP if self.loop_prevention else 0)
            | (_BIT_SRQ if self.for_command else 0)
            | (_BIT_UDHI if self.user_data is not None and self.user_data.header else 0)
        )
        out = (
            bytes((first, self.message_reference & 0xFF))
            + self.recipient.encode()
            + encode_time_stamp(self.service_centre_time)
            + encode_time_stamp(self.discharge_time)
            + bytes((self.status & 0xFF,))
        )
        indicator = (1 if self.protocol_id is not None else 0) | (
            0b110 if self.user_data is not None else 0
        )
        if not indicator:
            return out
        out += bytes((indicator,))
        if self.protocol_id is not None:
            out += bytes((self.protocol_id & 0xFF,))
        if self.user_data is not None:
            length, user_data = _encode_user_data(self.user_data)
            out += bytes((self.user_data.dcs & 0xFF, length)) + user_data
        return out


Tpdu = SmsSubmit | SmsDeliver | SmsStatusReport


def _need(data: bytes, end: int, what: str) -> None:
    if end > len(data):
        raise TpduError(f"TPDU ends before its {what} (needs {end} octets, has {len(data)})")


def _decode_deliver(data: bytes) -> SmsDeliver:
    first = data[0]
    originator, position = _decode_address(data, 1)
    _need(data, position + 10, "user data length")
    protocol_id, dcs = data[position], data[position + 1]
    time_stamp = decode_time_stamp(data[position + 2 : position + 9])
    length = data[position + 9]
    user_data = _decode_user_data(dcs, bool(first & _BIT_UDHI), length, data[position + 10 :])
    return SmsDeliver(
        originator=originator,
        service_centre_time=time_stamp,
        user_data=user_data,
        protocol_id=protocol_id,
        more_messages_to_send=not first & _BIT_MMS,
        status_report_indication=bool(first & _BIT_SRI),
        reply_path=bool(first & _BIT_RP),
        loop_prevention=bool(first & _BIT_LP),
    )


def _decode_optional_fields(data: bytes, position: int) -> tuple[int | None, UserData | None]:
    """TP-PI at `position` and the TP-PID, TP-DCS, TP-UDL and TP-UD it announces."""
    first = data[0]
    indicator = data[position]
    position += 1
    while data[position - 1] & 0x80 and position < len(data):  # extension octets
        position += 1
    protocol_id: int | None = None
    user_data: UserData | None = None
    if indicator & 0x01:
        _need(data, position + 1, "protocol identifier")
        protocol_id = data[position]
        position += 1
    dcs = DCS_GSM7
    if indicator & 0x02:
        _need(data, position + 1, "data coding scheme")
        dcs = data[position]
        position += 1
        user_data = UserData(dcs)
    if indicator & 0x04:
        _need(data, position + 1, "user data length")
        length = data[position]
        udhi = bool(first & _BIT_UDHI)
        user_data = _decode_user_data(dcs, udhi, length, data[position + 1 :])
    return protocol_id, user_data


def _decode_status_report(data: bytes) -> SmsStatusReport:
    first = data[0]
    _need(data, 2, "message reference")
    recipient, position = _decode_address(data, 2)
    _need(data, position + 15, "status")
    service_centre_time = decode_time_stamp(data[position : position + 7])
    discharge_time = decode_time_stamp(data[position + 7 : position + 14])
    status = data[position + 14]
    position += 15
    protocol_id: int | None = None
    user_data: UserData | None = None
    # TP-PI is optional; some SCs end the report at TP-ST, and extension octets (bit 7) precede
    # the fields (TS 23.040 9.2.3.27).
    # the fields. What the report says is in TP-ST; optional fields that do not decode (some
    # SCs pad with 0xFF) are dropped rather than costing the report.
    if position < len(data):
        try:
            protocol_id, user_data = _decode_optional_fields(data, position)
        except TpduError:
            protocol_id, user_data = None, None
    return SmsStatusReport(
        message_reference=data[1],
        recipient=recipient,
        service_centre_time=service_centre_time,
        discharge_time=discharge_time,
        status=status,
        for_command=bool(first & _BIT_SRQ),
        more_messages_to_send=not first & _BIT_MMS,
        loop_prevention=bool(first & _BIT_LP),
        protocol_id=protocol_id,
        user_data=user_data,
    )


def _decode_submit(data: bytes) -> SmsSubmit:
    first = data[0]
    _need(data, 2, "message reference")
    destination, position = _decode_address(data, 2)
    validity_format = ValidityFormat((first >> 3) & 0x03)
    validity_length = _VALIDITY_LENGTH[validity_format]
    _need(data, position + 3 + validity_length, "user data length")
    protocol_id, dcs = data[position], data[position + 1]
    position += 2
    validity = None
    if validity_format is not ValidityFormat.NONE:
        validity = Validity(validity_format, data[position : position + validity_length])
    position += validity_length
    length = data[position]
    user_data = _decode_user_data(dcs, bool(first & _BIT_UDHI), length, data[position + 1 :])
    return SmsSubmit(
        destination=destination,
        user_data=user_data,
        message_reference=data[1],
        status_report_request=bool(first & _BIT_SRR),
        validity=validity,
        protocol_id=protocol_id,
        reject_duplicates=bool(first & _BIT_RD),
        reply_path=bool(first & _BIT_RP),
    )


def decode_from_network(tpdu: bytes) -> SmsDeliver | SmsStatusReport:
    """A TPDU the service centre sent the modem (+CMT, +CDS, +CMGL/+CMGR of a received
    message): SMS-DELIVER or SMS-STATUS-REPORT. Raises TpduError."""
    if not tpdu:
        raise TpduError("empty TPDU")
    kind = tpdu[0] & 0x03
    # TS 23.040 9.2.3.1: a reserved TP-MTI (3) is processed as an SMS-DELIVER.
    if kind in (MTI_DELIVER, MTI_RESERVED):
        return _decode_deliver(tpdu)
    if kind == MTI_STATUS_REPORT:
        return _decode_status_report(tpdu)
    raise TpduError("message type indicator 1 (SMS-SUBMIT-REPORT) is not read here")


def decode_submit(tpdu: bytes) -> SmsSubmit:
    """An SMS-SUBMIT as a modem sends it (what the emulator reads from +CMGS). Raises
    TpduError."""
    if not tpdu:
        raise TpduError("empty TPDU")
    if tpdu[0] & 0x03 != MTI_SUBMIT:
        raise TpduError(f"message type indicator {tpdu[0] & 0x03} is not SMS-SUBMIT")
    return _decode_submit(tpdu)


# --- SMS-DELIVER-REPORT (what +CNMA may carry back) --------------------------------------------

# TS 23.040 9.2.3.22 TP-Failure-Cause values for an SMS-DELIVER-REPORT.
FCS_MEMORY_CAPACITY_EXCEEDED = 0xD3  # the SC then waits for the MS to say it has room: avoid
FCS_UNSPECIFIED = 0xFF


def deliver_report_error(failure_cause: int = FCS_UNSPECIFIED) -> bytes:
    """An SMS-DELIVER-REPORT for RP-ERROR (TS 23.040 9.2.2.1a): TP-MTI 0, no UDH, TP-FCS,
    TP-PI 0 (no optional fields). The TPDU only: +CNMA takes no service centre address."""
    if not 0x80 <= failure_cause <= 0xFF:
        raise TpduError(f"TP-FCS 0x{failure_cause:02X} is not a failure cause (0x80-0xFF)")
    return bytes((MTI_DELIVER, failure_cause, 0x00))


def deliver_report_failure_cause(tpdu: bytes) -> int:
    """The TP-FCS of an SMS-DELIVER-REPORT for RP-ERROR. Raises TpduError."""
    if len(tpdu) < 3 or tpdu[0] & 0x03 != MTI_DELIVER:
        raise TpduError("not an SMS-DELIVER-REPORT for RP-ERROR")
    return tpdu[1]


# --- text into parts ---------------------------------------------------------------------------


def _user_data_of(segment: Segment) -> UserData:
    dcs = _DCS_OF_SMPP_CODING[DataCoding(segment.data_coding)]
    message = segment.short_message
    if not segment.esm_class_udhi:
        return UserData(dcs, message)
    header_end = message[0] + 1
    return UserData(dcs, message[header_end:], message[:header_end])


def _check_concatenation(concatenation: Concatenation) -> None:
    if concatenation not in (Concatenation.UDH8, Concatenation.UDH16):
        raise ValueError(f"a modem concatenates with a UDH (udh8 or udh16), not {concatenation}")


def split_text_user_data(
    text: str,
    encoding: Encoding | str = AUTO,
    *,
    concatenation: Concatenation = Concatenation.UDH8,
    reference: int = 0,
    max_parts: int = DEFAULT_MAX_PARTS,
) -> list[UserData]:
    """Text -> the user data of each SMS part, cut exactly as `smpp.segmentation` cuts for an
    SMPP link (escape and surrogate pairs never split). `encoding`: "auto", "gsm7" or "ucs2".

    Raises TextEncodingError, TooManyParts, or ValueError for an encoding or concatenation a
    handset cannot take (Latin-1, SAR, message_payload).
    """
    _check_concatenation(concatenation)
    if encoding not in (AUTO, Encoding.GSM7, Encoding.UCS2):
        raise ValueError(f"SMS user data is gsm7 or ucs2 text, not {encoding}")
    segments = split_text(
        text, encoding, concatenation=concatenation, reference=reference, max_parts=max_parts
    )
    return [_user_data_of(segment) for segment in segments]


def split_binary_user_data(
    data: bytes,
    *,
    concatenation: Concatenation = Concatenation.UDH8,
    reference: int = 0,
    max_parts: int = DEFAULT_MAX_PARTS,
) -> list[UserData]:
    """8-bit data -> the user data of each SMS part (TP-DCS 0x04). Raises TooManyParts."""
    _check_concatenation(concatenation)
    segments = split_bytes(
        data,
        DataCoding.OCTET_UNSPECIFIED,
        concatenation=concatenation,
        reference=reference,
        max_parts=max_parts,
    )
    return [_user_data_of(segment) for segment in segments]
