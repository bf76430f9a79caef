"""SMPP 3.4 wire codec: PDU dataclasses to bytes and back, and a stream decoder.

Owns the wire layout of every PDU (the `_LAYOUTS` table), the TLV encoding, framing of a byte
stream into PDUs, and the mapping of malformed input to the command_status to answer with. Must
never raise anything but `PduError` while decoding, whatever the input, and must never do I/O or
keep session state.

Theory of operation: each PDU's mandatory parameters are described once in `_LAYOUTS`. From that
table we generate, at import, one straight-line encoder and one decoder per PDU (no per-field
reflection at run time: a typical submit_sm is decoded by a handful of `bytes.find` calls and
index reads). `PduDecoder` finds frame boundaries and hands the decoders offsets into the bytes it
already holds, so whole frames are never copied twice.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from smpp.constants import SHORT_MESSAGE_MAX, CommandId, CommandStatus
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
from smpp.tlv import CSTRING_TLV_MAX, INTEGER_TLV_SIZES

__all__ = [
    "DEFAULT_MAX_LENGTH",
    "HEADER_LENGTH",
    "PduDecoder",
    "PduEncodeError",
    "PduError",
    "command_name",
    "decode",
    "encode",
]

HEADER_LENGTH = 16
DEFAULT_MAX_LENGTH = 65536

_HEADER = struct.Struct(">IIII")
_LENGTH = struct.Struct(">I")
_TLV_HEADER = struct.Struct(">HH")
_U32 = struct.Struct(">I")

_S = CommandStatus  # short alias for the layout table below


@dataclass(eq=True)
class PduError(Exception):
    """Malformed input: what to answer (`status`) and whether the stream can go on (`fatal`).

    `command_id` and `sequence_number` are 0 when the header could not be read. When `fatal` is
    True, framing is lost: the connection must be closed (after a generic_nack if wanted).
    """

    status: CommandStatus
    reason: str
    command_id: int = 0
    sequence_number: int = 0
    fatal: bool = False

    def __post_init__(self) -> None:
        Exception.__init__(self, self.status, self.reason)  # args, for pickling and repr tools

    def __hash__(self) -> int:  # exceptions stay hashable (tracebacks and loggers may need it)
        return id(self)

    def __str__(self) -> str:
        return (
            f"{self.status.name} ({self.reason}; command_id=0x{self.command_id:08X}, "
            f"sequence_number={self.sequence_number}, fatal={self.fatal})"
        )

    def reply(self) -> Pdu:
        """The PDU that answers this error: the request's own response, else generic_nack."""
        request = PDU_CLASSES.get(self.command_id)
        response = PDU_CLASSES.get(self.command_id | 0x80000000)
        if self.fatal or request is None or request.command_id.is_response or response is None:
            return GenericNack(sequence_number=self.sequence_number, command_status=self.status)
        return response(sequence_number=self.sequence_number, command_status=self.status)


class PduEncodeError(ValueError):
    """A PDU holds a value its wire field cannot carry (too long, out of range, wrong type)."""


class _BodyError(Exception):
    """Raised inside decoders; turned into a PduError carrying the header's id and sequence."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(status, reason)
        self.status = status
        self.reason = reason


# --- layouts ------------------------------------------------------------------------------------

# Field kinds. A C-Octet String's size is its maximum including the NUL (as the spec states it).
_U8 = "u8"
_CSTR = "cstr"
_SHORT_MESSAGE = "short_message"  # sm_length (1 octet) then that many octets
_DEST_ADDRESSES = "dest_addresses"  # number_of_dests then dest_flag-tagged entries
_UNSUCCESS_SME = "unsuccess_sme"  # no_unsuccess then entries

_Field = tuple[str, str, int, int]  # (name, kind, size, status when malformed)


def _u8(name: str) -> _Field:
    return (name, _U8, 1, _S.ESME_RINVCMDLEN)


def _cstr(name: str, size: int, status: int) -> _Field:
    return (name, _CSTR, size, status)


def _source(max_addr: int) -> list[_Field]:
    return [
        _u8("source_addr_ton"),
        _u8("source_addr_npi"),
        _cstr("source_addr", max_addr, _S.ESME_RINVSRCADR),
    ]


def _destination(max_addr: int) -> list[_Field]:
    return [
        _u8("dest_addr_ton"),
        _u8("dest_addr_npi"),
        _cstr("destination_addr", max_addr, _S.ESME_RINVDSTADR),
    ]


_SERVICE_TYPE = _cstr("service_type", 6, _S.ESME_RINVSERTYP)
_MESSAGE_ID = _cstr("message_id", 65, _S.ESME_RINVMSGID)
_SCHEDULE = _cstr("schedule_delivery_time", 17, _S.ESME_RINVSCHED)
_VALIDITY = _cstr("validity_period", 17, _S.ESME_RINVEXPIRY)
_SM = ("short_message", _SHORT_MESSAGE, SHORT_MESSAGE_MAX, _S.ESME_RINVMSGLEN)

_BIND = [
    _cstr("system_id", 16, _S.ESME_RINVSYSID),
    _cstr("password", 9, _S.ESME_RINVPASWD),
    _cstr("system_type", 13, _S.ESME_RINVSYSTYP),
    _u8("interface_version"),
    _u8("addr_ton"),
    _u8("addr_npi"),
    _cstr("address_range", 41, _S.ESME_RINVSRCADR),
]
_BIND_RESP = [_cstr("system_id", 16, _S.ESME_RINVSYSID)]
_SM_TAIL = [
    _u8("esm_class"),
    _u8("protocol_id"),
    _u8("priority_flag"),
    _SCHEDULE,
    _VALIDITY,
    _u8("registered_delivery"),
    _u8("replace_if_present_flag"),
    _u8("data_coding"),
    _u8("sm_default_msg_id"),
    _SM,
]
_SUBMIT = [_SERVICE_TYPE, *_source(21), *_destination(21), *_SM_TAIL]

_LAYOUTS: dict[type[Pdu], list[_Field]] = {
    BindTransmitter: _BIND,
    BindReceiver: _BIND,
    BindTransceiver: _BIND,
    BindTransmitterResp: _BIND_RESP,
    BindReceiverResp: _BIND_RESP,
    BindTransceiverResp: _BIND_RESP,
    Outbind: [_cstr("system_id", 16, _S.ESME_RINVSYSID), _cstr("password", 9, _S.ESME_RINVPASWD)],
    Unbind: [],
    UnbindResp: [],
    GenericNack: [],
    EnquireLink: [],
    EnquireLinkResp: [],
    SubmitSm: _SUBMIT,
    SubmitSmResp: [_MESSAGE_ID],
    DeliverSm: _SUBMIT,
    DeliverSmResp: [_MESSAGE_ID],
    SubmitMulti: [
        _SERVICE_TYPE,
        *_source(21),
        ("dest_addresses", _DEST_ADDRESSES, 0, _S.ESME_RINVNUMDESTS),
        *_SM_TAIL,
    ],
    SubmitMultiResp: [_MESSAGE_ID, ("unsuccess_sme", _UNSUCCESS_SME, 0, _S.ESME_RINVCMDLEN)],
    DataSm: [
        _SERVICE_TYPE,
        *_source(65),
        *_destination(65),
        _u8("esm_class"),
        _u8("registered_delivery"),
        _u8("data_coding"),
    ],
    DataSmResp: [_MESSAGE_ID],
    QuerySm: [_MESSAGE_ID, *_source(21)],
    QuerySmResp: [
        _MESSAGE_ID,
        _cstr("final_date", 17, _S.ESME_RINVSCHED),
        _u8("message_state"),
        _u8("error_code"),
    ],
    CancelSm: [_SERVICE_TYPE, _MESSAGE_ID, *_source(21), *_destination(21)],
    CancelSmResp: [],
    ReplaceSm: [
        _MESSAGE_ID,
        *_source(21),
        _SCHEDULE,
        _VALIDITY,
        _u8("registered_delivery"),
        _u8("sm_default_msg_id"),
        _SM,
    ],
    ReplaceSmResp: [],
    AlertNotification: [
        *_source(65),
        _u8("esme_addr_ton"),
        _u8("esme_addr_npi"),
        _cstr("esme_addr", 65, _S.ESME_RINVDSTADR),
    ],
}

assert set(_LAYOUTS) == set(PDU_CLASSES.values()), "every PDU class needs a wire layout"


def _has_tlvs(cls: type[Pdu]) -> bool:
    return "tlvs" in cls.__dataclass_fields__


# --- TLVs ---------------------------------------------------------------------------------------

_INT_FORMATS = {1: ">HHB", 2: ">HHH", 4: ">HHI"}  # tag, length, value


def _decode_tlvs(b: bytes, pos: int, end: int) -> dict[int, object]:
    tlvs: dict[int, object] = {}
    int_sizes = INTEGER_TLV_SIZES
    unpack_header = _TLV_HEADER.unpack_from
    while pos < end:
        if pos + 4 > end:
            raise _BodyError(_S.ESME_RINVOPTPARSTREAM, "TLV header cut short by the PDU end")
        tag, length = unpack_header(b, pos)
        pos += 4
        value_end = pos + length
        if value_end > end:
            raise _BodyError(
                _S.ESME_RINVOPTPARSTREAM, f"TLV 0x{tag:04X} of {length} octets overruns the PDU"
            )
        size = int_sizes.get(tag)
        if size == length:
            if size == 1:
                tlvs[tag] = b[pos]
            elif size == 2:
                tlvs[tag] = b[pos] << 8 | b[pos + 1]
            else:
                tlvs[tag] = int.from_bytes(b[pos:value_end])
        elif size is not None:
            raise _BodyError(
                _S.ESME_RINVPARLEN, f"TLV 0x{tag:04X} must be {size} octets, not {length}"
            )
        else:
            cstring_max = CSTRING_TLV_MAX.get(tag)
            if cstring_max is None:
                tlvs[tag] = b[pos:value_end]
            else:
                # Tolerated: some SMSCs omit the NUL of receipted_message_id. Keep what precedes it.
                nul = b.find(b"\0", pos, value_end)
                text_end = value_end if nul < 0 else nul
                if text_end - pos >= cstring_max:
                    raise _BodyError(
                        _S.ESME_RINVPARLEN,
                        f"TLV 0x{tag:04X} longer than {cstring_max - 1} octets",
                    )
                tlvs[tag] = b[pos:text_end].decode("latin-1")
        pos = value_end
    return tlvs


_TLV_INT_PACKERS: dict[int, Callable[[int], bytes]] = {
    tag: functools.partial(struct.Struct(_INT_FORMATS[size]).pack, tag, size)
    for tag, size in INTEGER_TLV_SIZES.items()
}


def _encode_tlvs(tlvs: dict[int, object]) -> bytes:
    out = b""
    int_packers = _TLV_INT_PACKERS
    for tag, value in tlvs.items():
        pack_int = int_packers.get(tag)
        if pack_int is not None and value.__class__ is int:
            out += pack_int(value)
        else:
            out += _encode_other_tlv(tag, value)
    return out


def _encode_other_tlv(tag: int, value: object) -> bytes:
    if isinstance(value, bytes):
        # Raw value: unknown tags, or a caller that pre-encoded a known one.
        return _TLV_HEADER.pack(tag, len(value)) + value
    if tag in INTEGER_TLV_SIZES:
        if not isinstance(value, int):
            raise PduEncodeError(f"TLV 0x{tag:04X} holds an integer, got {value!r}")
        return _TLV_INT_PACKERS[tag](int(value))
    if tag in CSTRING_TLV_MAX:
        if not isinstance(value, str):
            raise PduEncodeError(f"TLV 0x{tag:04X} holds a string, got {value!r}")
        raw = value.encode("latin-1")
        if len(raw) >= CSTRING_TLV_MAX[tag] or b"\0" in raw:
            raise PduEncodeError(f"TLV 0x{tag:04X}: {value!r} too long or holds a NUL")
        return _TLV_HEADER.pack(tag, len(raw) + 1) + raw + b"\0"
    raise PduEncodeError(f"TLV 0x{tag:04X} holds octets: its value must be bytes")


# --- submit_multi address lists -----------------------------------------------------------------


def _cstring_at(b: bytes, pos: int, end: int, size: int, status: int, name: str) -> tuple[str, int]:
    limit = pos + size if pos + size < end else end
    nul = b.find(b"\0", pos, limit)
    if nul < 0:
        raise _BodyError(status, f"{name}: no NUL within {size} octets")
    return b[pos:nul].decode("latin-1"), nul + 1


def _decode_dest_addresses(
    b: bytes, pos: int, end: int
) -> tuple[list[SmeAddress | DistributionList], int]:
    if pos >= end:
        raise _BodyError(_S.ESME_RINVCMDLEN, "body ends before number_of_dests")
    count = b[pos]
    pos += 1
    dests: list[SmeAddress | DistributionList] = []
    for _ in range(count):
        if pos >= end:
            raise _BodyError(_S.ESME_RINVNUMDESTS, "fewer dest_addresses than number_of_dests")
        flag = b[pos]
        pos += 1
        if flag == 1:
            if pos + 2 > end:
                raise _BodyError(_S.ESME_RINVCMDLEN, "body ends inside a dest_address")
            ton, npi = b[pos], b[pos + 1]
            address, pos = _cstring_at(b, pos + 2, end, 21, _S.ESME_RINVDSTADR, "destination_addr")
            dests.append(SmeAddress(ton, npi, address))
        elif flag == 2:
            name, pos = _cstring_at(b, pos, end, 21, _S.ESME_RINVDLNAME, "dl_name")
            dests.append(DistributionList(name))
        else:
            raise _BodyError(_S.ESME_RINVDESTFLAG, f"dest_flag {flag} is neither 1 nor 2")
    return dests, pos


def _encode_dest_addresses(dests: list[SmeAddress | DistributionList]) -> bytes:
    if len(dests) > 255:
        raise PduEncodeError(f"{len(dests)} dest_addresses: at most 255 fit number_of_dests")
    parts = [bytes((len(dests),))]
    for dest in dests:
        if isinstance(dest, SmeAddress):
            parts.append(b"%c%c%c" % (1, dest.dest_addr_ton, dest.dest_addr_npi))
            parts.append(_cstring_bytes(dest.destination_addr, 21, "destination_addr"))
        elif isinstance(dest, DistributionList):
            parts.append(b"\x02")
            parts.append(_cstring_bytes(dest.dl_name, 21, "dl_name"))
        else:
            raise PduEncodeError(f"dest_addresses holds {dest!r}")
    return b"".join(parts)


def _decode_unsuccess_sme(b: bytes, pos: int, end: int) -> tuple[list[UnsuccessSme], int]:
    if pos >= end:
        raise _BodyError(_S.ESME_RINVCMDLEN, "body ends before no_unsuccess")
    count = b[pos]
    pos += 1
    entries: list[UnsuccessSme] = []
    for _ in range(count):
        if pos + 2 > end:
            raise _BodyError(_S.ESME_RINVCMDLEN, "body ends inside unsuccess_sme")
        ton, npi = b[pos], b[pos + 1]
        address, pos = _cstring_at(b, pos + 2, end, 21, _S.ESME_RINVDSTADR, "destination_addr")
        if pos + 4 > end:
            raise _BodyError(_S.ESME_RINVCMDLEN, "body ends inside error_status_code")
        (error,) = _U32.unpack_from(b, pos)
        pos += 4
        entries.append(UnsuccessSme(ton, npi, address, error))
    return entries, pos


def _encode_unsuccess_sme(entries: list[UnsuccessSme]) -> bytes:
    if len(entries) > 255:
        raise PduEncodeError(f"{len(entries)} unsuccess_sme entries: at most 255 fit")
    parts = [bytes((len(entries),))]
    for entry in entries:
        parts.append(b"%c%c" % (entry.dest_addr_ton, entry.dest_addr_npi))
        parts.append(_cstring_bytes(entry.destination_addr, 21, "destination_addr"))
        parts.append(_U32.pack(entry.error_status_code))
    return b"".join(parts)


def _cstring_bytes(value: str, size: int, name: str) -> bytes:
    raw = value.encode("latin-1")
    if len(raw) >= size or b"\0" in raw:
        raise PduEncodeError(f"{name}: {value!r} is longer than {size - 1} octets or holds a NUL")
    return raw + b"\0"


# --- generation of per-PDU encoders and decoders ------------------------------------------------
#
# Generated rather than interpreted so that the hot path has no loop over field descriptors; the
# source of each function stays inspectable in `_GENERATED_SOURCE` for debugging.

_Decoder = Callable[[bytes, int, int, int, int], Pdu]
_Encoder = Callable[[Any], bytes]


def _decoder_source(cls: type[Pdu], fields: list[_Field]) -> str:
    name = cls.__name__
    lines = [f"def _decode_{name}(b, pos, end, seq, status):"]
    if cls.command_id.is_response and fields:
        # Error responses (and some successful ones, e.g. deliver_sm_resp) come without a body.
        lines.append("    if pos == end:")
        lines.append(f"        return {name}(seq, status)")
    args: list[str] = []
    index = 0
    while index < len(fields):
        field_name, kind, size, status = fields[index]
        var = f"v{index}"
        if kind == _U8:
            run = 1
            while index + run < len(fields) and fields[index + run][1] == _U8:
                run += 1
            names = ", ".join(f[0] for f in fields[index : index + run])
            lines.append(f"    if pos + {run} > end:")
            lines.append(
                f"        raise _BodyError({int(_S.ESME_RINVCMDLEN)}, 'body ends in {names}')"
            )
            for offset in range(run):
                lines.append(f"    v{index + offset} = b[pos + {offset}]")
                args.append(f"v{index + offset}")
            lines.append(f"    pos += {run}")
            index += run
            continue
        if kind == _CSTR:
            # Empty strings (service_type, schedule_delivery_time, ...) are the common case.
            lines.append("    if pos < end and b[pos] == 0:")
            lines.append(f"        {var} = ''")
            lines.append("        pos += 1")
            lines.append("    else:")
            lines.append(f"        limit = pos + {size}")
            lines.append("        if limit > end:")
            lines.append("            limit = end")
            lines.append("        nul = b.find(b'\\0', pos, limit)")
            lines.append("        if nul < 0:")
            lines.append(
                f"            raise _BodyError({int(status)}, "
                f"'{field_name}: no NUL within {size} octets')"
            )
            lines.append(f"        {var} = b[pos:nul].decode('latin-1')")
            lines.append("        pos = nul + 1")
        elif kind == _SHORT_MESSAGE:
            lines.append("    if pos >= end:")
            lines.append(f"        raise _BodyError({int(status)}, 'body ends before sm_length')")
            lines.append("    sm_length = b[pos]")
            lines.append("    pos += 1")
            lines.append(f"    if sm_length > {size} or pos + sm_length > end:")
            lines.append(
                f"        raise _BodyError({int(status)}, "
                "f'sm_length {sm_length} exceeds the body or the limit')"
            )
            lines.append(f"    {var} = b[pos:pos + sm_length]")
            lines.append("    pos += sm_length")
        elif kind == _DEST_ADDRESSES:
            lines.append(f"    {var}, pos = _decode_dest_addresses(b, pos, end)")
        elif kind == _UNSUCCESS_SME:
            lines.append(f"    {var}, pos = _decode_unsuccess_sme(b, pos, end)")
        else:  # pragma: no cover - layout table typo
            raise AssertionError(kind)
        args.append(var)
        index += 1
    if _has_tlvs(cls):
        lines.append("    tlvs = _decode_tlvs(b, pos, end) if pos < end else {}")
        args.append("tlvs")
    else:
        lines.append("    if pos != end:")
        lines.append(
            f"        raise _BodyError({int(_S.ESME_RINVCMDLEN)}, "
            "f'{end - pos} octets after the last parameter')"
        )
    lines.append(f"    return {name}(seq, status{''.join(', ' + a for a in args)})")
    return "\n".join(lines) + "\n"


def _encoder_source(cls: type[Pdu], fields: list[_Field]) -> str:
    name = cls.__name__
    command_id = int(cls.command_id)
    lines = [f"def _encode_{name}(p):"]
    has_tlvs = _has_tlvs(cls)
    if cls.command_id.is_response and fields:
        # An error response whose body is all defaults goes out without a body (spec 4.1-4.4).
        defaults = [f"p.{f[0]} == {cls.__dataclass_fields__[f[0]].default!r}" for f in fields]
        for f in fields:
            if f[1] == _UNSUCCESS_SME:
                defaults[fields.index(f)] = f"not p.{f[0]}"
        if has_tlvs:
            defaults.append("not p.tlvs")
        lines.append(f"    if p.command_status and {' and '.join(defaults)}:")
        lines.append(
            f"        return _pack_header(16, {command_id}, p.command_status, p.sequence_number)"
        )
    template: list[str] = []
    values: list[str] = []
    for index, (field_name, kind, size, _status) in enumerate(fields):
        var = f"v{index}"
        if kind == _U8:
            template.append("%c")
            values.append(f"p.{field_name}")
        elif kind == _CSTR:
            lines.append(f"    {var} = p.{field_name}")
            lines.append(f"    if {var}:")
            lines.append(f"        {var} = {var}.encode('latin-1')")
            lines.append(f"        if len({var}) > {size - 1} or b'\\0' in {var}:")
            lines.append(
                f"            raise PduEncodeError('{field_name}: ' + repr(p.{field_name}) + "
                f"' is longer than {size - 1} octets or holds a NUL')"
            )
            lines.append("    else:")
            lines.append(f"        {var} = b''")
            template.append("%s\\0")
            values.append(var)
        elif kind == _SHORT_MESSAGE:
            lines.append(f"    {var} = p.{field_name}")
            lines.append(f"    if len({var}) > {size}:")
            lines.append(
                f"        raise PduEncodeError('short_message: ' + str(len({var})) + "
                f"' octets, at most {size} (use message_payload)')"
            )
            template.append("%c%s")
            values.append(f"len({var})")
            values.append(var)
        elif kind == _DEST_ADDRESSES:
            template.append("%s")
            values.append(f"_encode_dest_addresses(p.{field_name})")
        elif kind == _UNSUCCESS_SME:
            template.append("%s")
            values.append(f"_encode_unsuccess_sme(p.{field_name})")
        else:  # pragma: no cover - layout table typo
            raise AssertionError(kind)
    if template:
        lines.append(f"    body = b'{''.join(template)}' % ({', '.join(values)},)")
    else:
        lines.append("    body = b''")
    if has_tlvs:
        lines.append("    if p.tlvs:")
        lines.append("        body += _encode_tlvs(p.tlvs)")
    lines.append(
        f"    return _pack_header(16 + len(body), {command_id}, p.command_status, "
        "p.sequence_number) + body"
    )
    return "\n".join(lines) + "\n"


def _generate() -> tuple[dict[int, _Decoder], dict[type[Pdu], _Encoder], str]:
    namespace: dict[str, Any] = {
        "_BodyError": _BodyError,
        "PduEncodeError": PduEncodeError,
        "_decode_tlvs": _decode_tlvs,
        "_encode_tlvs": _encode_tlvs,
        "_decode_dest_addresses": _decode_dest_addresses,
        "_encode_dest_addresses": _encode_dest_addresses,
        "_decode_unsuccess_sme": _decode_unsuccess_sme,
        "_encode_unsuccess_sme": _encode_unsuccess_sme,
        "_pack_header": _HEADER.pack,
    }
    sources: list[str] = []
    for cls, fields in _LAYOUTS.items():
        namespace[cls.__name__] = cls
        sources.append(_decoder_source(cls, fields))
        sources.append(_encoder_source(cls, fields))
    source = "\n".join(sources)
    exec(compile(source, "<smpp.codec generated>", "exec"), namespace)
    decoders = {int(cls.command_id): namespace[f"_decode_{cls.__name__}"] for cls in _LAYOUTS}
    encoders = {cls: namespace[f"_encode_{cls.__name__}"] for cls in _LAYOUTS}
    return decoders, encoders, source


_DECODERS, _ENCODERS, _GENERATED_SOURCE = _generate()

_ENCODE_FAILURES = (struct.error, OverflowError, TypeError, AttributeError, UnicodeEncodeError)


# --- public API ---------------------------------------------------------------------------------


def encode(pdu: Pdu) -> bytes:
    """The wire form of `pdu`, header included. Raises PduEncodeError for unrepresentable values."""
    encoder = _ENCODERS.get(type(pdu))
    if encoder is None:
        raise PduEncodeError(f"not an SMPP PDU: {pdu!r}")
    try:
        return encoder(pdu)
    except PduEncodeError:
        raise
    except _ENCODE_FAILURES as error:
        raise PduEncodeError(f"{type(pdu).__name__}: {error}") from error


def _decode_body(
    b: bytes, start: int, end: int, command_id: int, status: int, sequence_number: int
) -> Pdu | PduError:
    """Decode the body b[start:end] of a frame whose header was read and length checked."""
    decoder = _DECODERS.get(command_id)
    if decoder is None:
        return _unknown_command(command_id, sequence_number)
    try:
        return decoder(b, start, end, sequence_number, status)
    except Exception as error:
        return _body_error(error, command_id, sequence_number)


def _unknown_command(command_id: int, sequence_number: int) -> PduError:
    return PduError(
        CommandStatus.ESME_RINVCMDID,
        f"unknown command_id 0x{command_id:08X}",
        command_id,
        sequence_number,
    )


def _body_error(error: Exception, command_id: int, sequence_number: int) -> PduError:
    if isinstance(error, _BodyError):
        return PduError(CommandStatus(error.status), error.reason, command_id, sequence_number)
    # A decoder bug must not take the connection down with it: the peer is told, we go on.
    return PduError(
        CommandStatus.ESME_RSYSERR, f"decoder failure: {error!r}", command_id, sequence_number
    )


def decode(frame: bytes) -> Pdu:
    """Decode exactly one whole PDU. Raises PduError (and nothing else) for malformed input."""
    if not isinstance(frame, bytes):
        try:
            frame = bytes(frame)
        except Exception as error:
            raise PduError(CommandStatus.ESME_RSYSERR, f"not bytes: {error!r}") from None
    size = len(frame)
    if size < HEADER_LENGTH:
        raise PduError(
            CommandStatus.ESME_RINVCMDLEN, f"{size} octets: shorter than a header", fatal=True
        )
    command_length, command_id, status, sequence_number = _HEADER.unpack_from(frame, 0)
    if command_length != size:
        raise PduError(
            CommandStatus.ESME_RINVCMDLEN,
            f"command_length {command_length} but the frame has {size} octets",
            command_id,
            sequence_number,
            fatal=True,
        )
    decoder = _DECODERS.get(command_id)
    if decoder is None:
        raise _unknown_command(command_id, sequence_number)
    try:
        return decoder(frame, HEADER_LENGTH, size, sequence_number, status)
    except Exception as error:
        raise _body_error(error, command_id, sequence_number) from None


class PduDecoder:
    """Splits a byte stream, fed in pieces of any size, into PDUs and PduErrors.

    A command_length below 16 or above `max_length` is refused as soon as its four octets arrive,
    before any of the body is buffered; the error is `fatal` and the decoder then ignores all
    further input (the connection must close).
    """

    __slots__ = ("_buffer", "_failed", "max_length")

    def __init__(self, max_length: int = DEFAULT_MAX_LENGTH) -> None:
        if max_length < HEADER_LENGTH:
            raise ValueError(f"max_length {max_length} is below the header length")
        self.max_length = max_length
        self._buffer = bytearray()
        self._failed = False

    @property
    def failed(self) -> bool:
        """True once framing was lost: nothing more will be decoded."""
        return self._failed

    @property
    def buffered(self) -> int:
        """Octets held waiting for the rest of their PDU."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Pdu | PduError]:
        """Take the next piece of the stream; return every PDU (or PduError) it completes."""
        if self._failed or not data:
            return []
        if self._buffer:
            self._buffer += data
            pending = self._buffer
            if len(pending) < 4:
                return []
            (command_length,) = _LENGTH.unpack_from(pending, 0)
            if HEADER_LENGTH <= command_length <= self.max_length and len(pending) < command_length:
                return []  # still waiting: do not copy the buffer per piece fed
            # One copy of what is buffered; decoders then work on offsets into it.
            buffer = bytes(pending)
        else:
            buffer = data if isinstance(data, bytes) else bytes(data)
        results: list[Pdu | PduError] = []
        pos = 0
        available = len(buffer)
        max_length = self.max_length
        unpack_length = _LENGTH.unpack_from
        unpack_header = _HEADER.unpack_from
        while True:
            remaining = available - pos
            if remaining >= HEADER_LENGTH:
                command_length, command_id, status, sequence_number = unpack_header(buffer, pos)
            elif remaining >= 4:
                # Enough to judge the length (and refuse it before buffering), not to decode.
                (command_length,) = unpack_length(buffer, pos)
                command_id = status = sequence_number = 0
            else:
                break
            if command_length < HEADER_LENGTH or command_length > max_length:
                results.append(
                    PduError(
                        CommandStatus.ESME_RINVCMDLEN,
                        f"command_length {command_length} outside 16..{max_length}",
                        command_id,
                        sequence_number,
                        fatal=True,
                    )
                )
                self._failed = True
                self._buffer = bytearray()
                return results
            end = pos + command_length
            if end > available:
                break
            results.append(_decode_body(buffer, pos + 16, end, command_id, status, sequence_number))
            pos = end
        # Keep only the incomplete tail (one copy, through a memoryview).
        self._buffer = bytearray(memoryview(buffer)[pos:]) if pos < available else bytearray()
        return results


def command_name(command_id: int) -> str:
    """Spec-style name of a command_id, or its hex form for unknown ones (for logs)."""
    try:
        return CommandId(command_id).name.lower()
    except ValueError:
        return f"0x{command_id & 0xFFFFFFFF:08X}"
