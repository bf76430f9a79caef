"""Splitting outbound messages into SMS parts, and counting them for display.

Owns per-part limits (160/153/152 septets, 70/67/66 UCS-2 units, 140/134/133 octets), the rule
that an escape pair or a surrogate pair is never split, the concatenation wrappers (UDH with an
8- or 16-bit reference, SAR TLVs, or one message_payload), the maximum-parts refusal and
`describe_text`. Must never keep state (the link owns the reference counter), build PDUs or do
I/O: it returns bytes, the UDHI flag and TLV dicts for the caller's submit_sm.

Characters, as `describe_text` counts them, are Python code points: an emoji outside the BMP is
one character although UCS-2 spends two units (a surrogate pair) on it; a flag or a ZWJ emoji
sequence counts each of its code points.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from smpp import gsm7
from smpp.constants import ESM_CLASS_UDHI, Tag
from smpp.text import AUTO, DATA_CODING_OF, Encoding, encode_choosing

SMS_OCTETS = 140
MAX_PARTS_LIMIT = 255  # the UDH and SAR part counters are one octet
DEFAULT_MAX_PARTS = MAX_PARTS_LIMIT

IEI_CONCAT_8BIT = 0x00
IEI_CONCAT_16BIT = 0x08


class Concatenation(enum.StrEnum):
    """How a link carries a multi-part message."""

    UDH8 = "udh8"  # UDH IEI 0x00, 8-bit reference, 6-octet header
    UDH16 = "udh16"  # UDH IEI 0x08, 16-bit reference, 7-octet header
    SAR = "sar"  # sar_* TLVs; the SMSC builds an 8-bit UDH, so UDH8 limits apply
    PAYLOAD = "payload"  # one PDU with message_payload; the SMSC splits as UDH8

    @property
    def header_octets(self) -> int:
        """UDH octets each part spends on the air interface."""
        return 7 if self is Concatenation.UDH16 else 6


class TooManyParts(ValueError):
    """The message needs more parts than allowed; it is refused, never truncated."""

    def __init__(self, parts_needed: int, max_parts: int, encoding: Encoding) -> None:
        self.parts_needed = parts_needed
        self.max_parts = max_parts
        self.encoding = encoding
        super().__init__(
            f"message needs {parts_needed} parts in {encoding.value}, at most {max_parts} allowed"
        )


@dataclass(slots=True)  # not frozen: built on every submit, and frozen init costs ~2x
class Segment:
    """One submit_sm's worth: short_message, data_coding, the TLVs to add, and the UDHI flag."""

    short_message: bytes
    esm_class_udhi: bool
    data_coding: int
    index: int  # 1-based
    total: int
    tlvs: dict[int, object] = field(default_factory=dict)

    @property
    def esm_class_bits(self) -> int:
        """OR these into the submit_sm's esm_class."""
        return ESM_CLASS_UDHI if self.esm_class_udhi else 0


@dataclass(slots=True, frozen=True)
class TextInfo:
    encoding: Encoding
    characters: int  # code points; see the module docstring
    units: int  # septets (extension characters count two), UCS-2 units or octets
    segments: int
    units_per_segment: int  # for this message: the single-part limit when it fits in one


def units_per_part(encoding: Encoding, header_octets: int) -> int:
    """Septets, UCS-2 units or octets that fit beside a `header_octets` UDH (0: single part)."""
    free = SMS_OCTETS - header_octets
    if encoding is Encoding.GSM7:
        return free * 8 // 7
    if encoding is Encoding.UCS2:
        return free // 2
    return free


def _octets_per_unit(encoding: Encoding) -> int:
    return 2 if encoding is Encoding.UCS2 else 1


def _chunk(encoded: bytes, encoding: Encoding, limit: int) -> list[bytes]:
    """Cut `encoded` (unpacked septets / UTF-16BE / octets) into pieces of at most `limit`
    octets, moving a cut that would split an escape or surrogate pair one unit earlier."""
    chunks: list[bytes] = []
    start = 0
    length = len(encoded)
    while start < length:
        end = start + limit
        if end < length:
            # Our GSM encoder emits 0x1B only as the first half of a pair.
            if encoding is Encoding.GSM7 and encoded[end - 1] == gsm7.ESCAPE:
                end -= 1
            elif encoding is Encoding.UCS2 and 0xD8 <= encoded[end - 2] <= 0xDB:
                end -= 2
        chunks.append(encoded[start:end])
        start = end
    return chunks


def _plan(
    encoded: bytes, encoding: Encoding, concatenation: Concatenation, max_parts: int | None
) -> list[bytes]:
    """The payload pieces, one per part; `max_parts` None only counts (never refuses)."""
    if max_parts is not None and not 1 <= max_parts <= MAX_PARTS_LIMIT:
        raise ValueError(f"max_parts must be 1..{MAX_PARTS_LIMIT}, got {max_parts}")
    octets_per_unit = _octets_per_unit(encoding)
    if len(encoded) <= units_per_part(encoding, 0) * octets_per_unit:
        return [encoded]
    limit = units_per_part(encoding, concatenation.header_octets) * octets_per_unit
    chunks = _chunk(encoded, encoding, limit)
    if max_parts is not None and len(chunks) > max_parts:
        raise TooManyParts(len(chunks), max_parts, encoding)
    return chunks


def _wrap(
    chunks: list[bytes],
    whole: bytes,
    data_coding: int,
    concatenation: Concatenation,
    reference: int,
    pack_septets: bool,
) -> list[Segment]:
    total = len(chunks)
    if total == 1:
        payload = gsm7.pack(whole) if pack_septets else whole
        return [Segment(payload, False, data_coding, 1, 1)]
    if concatenation is Concatenation.PAYLOAD:
        payload = gsm7.pack(whole) if pack_septets else whole
        return [Segment(b"", False, data_coding, 1, 1, {Tag.MESSAGE_PAYLOAD: payload})]
    segments: list[Segment] = []
    for index, chunk in enumerate(chunks, start=1):
        if concatenation is Concatenation.SAR:
            tlvs: dict[int, object] = {
                Tag.SAR_MSG_REF_NUM: reference & 0xFFFF,
                Tag.SAR_TOTAL_SEGMENTS: total,
                Tag.SAR_SEGMENT_SEQNUM: index,
            }
            payload = gsm7.pack(chunk) if pack_septets else chunk
            segments.append(Segment(payload, False, data_coding, index, total, tlvs))
            continue
        if concatenation is Concatenation.UDH8:
            udh = bytes((5, IEI_CONCAT_8BIT, 3, reference & 0xFF, total, index))
        else:
            ref = reference & 0xFFFF
            udh = bytes((6, IEI_CONCAT_16BIT, 4, ref >> 8, ref & 0xFF, total, index))
        fill_bits = gsm7.fill_bits_for_header(len(udh))
        payload = gsm7.pack(chunk, fill_bits) if pack_septets else chunk
        segments.append(Segment(udh + payload, True, data_coding, index, total))
    return segments


def split_text(
    text: str,
    encoding: Encoding | str = AUTO,
    *,
    concatenation: Concatenation = Concatenation.UDH8,
    reference: int = 0,
    max_parts: int = DEFAULT_MAX_PARTS,
    gsm7_packed: bool = False,
) -> list[Segment]:
    """Text -> the parts to submit, in order. A text that fits one SMS is one part with no UDH.

    `reference` is the link's concatenation counter (taken mod 256 for UDH8, mod 65536
    otherwise). `gsm7_packed` packs GSM septets 8-into-7 (fill bits after a UDH) for SMSCs that
    want it; SMPP's usual data_coding 0 is one septet per octet.
    Raises TextEncodingError (text does not fit the encoding) or TooManyParts.
    """
    concrete, encoded = encode_choosing(text, encoding)
    chunks = _plan(encoded, concrete, concatenation, max_parts)
    packed = gsm7_packed and concrete is Encoding.GSM7
    return _wrap(chunks, encoded, DATA_CODING_OF[concrete], concatenation, reference, packed)


# Pre-encoded data whose units must not be cut apart: data_coding -> how to count and cut.
_UNITS_OF_DATA_CODING = {
    DATA_CODING_OF[Encoding.GSM7]: Encoding.GSM7,
    DATA_CODING_OF[Encoding.UCS2]: Encoding.UCS2,
}


def split_bytes(
    data: bytes,
    data_coding: int = DATA_CODING_OF[Encoding.BINARY],
    *,
    concatenation: Concatenation = Concatenation.UDH8,
    reference: int = 0,
    max_parts: int = DEFAULT_MAX_PARTS,
) -> list[Segment]:
    """Already-encoded content -> parts, e.g. binary data or a relayed message_payload.

    data_coding 0 is taken as unpacked GSM septets (153-septet parts, escape pairs kept whole),
    8 as UTF-16BE (67-unit parts, surrogate pairs kept whole); anything else is opaque octets,
    140 per part minus the UDH. Raises TooManyParts.
    """
    units = _UNITS_OF_DATA_CODING.get(data_coding, Encoding.BINARY)
    chunks = _plan(data, units, concatenation, max_parts)
    return _wrap(chunks, data, data_coding, concatenation, reference, False)


def describe_text(
    text: str,
    encoding: Encoding | str = AUTO,
    *,
    concatenation: Concatenation = Concatenation.UDH8,
) -> TextInfo:
    """Encoding, character count, units and SMS parts of `text` (as shown by the API and CLI).

    Parts are air-interface SMS, so message_payload counts as UDH8 would. Raises
    TextEncodingError when `encoding` is forced and the text does not fit it.
    """
    concrete, encoded = encode_choosing(text, encoding)
    chunks = _plan(encoded, concrete, concatenation, None)
    header = 0 if len(chunks) == 1 else concatenation.header_octets
    return TextInfo(
        encoding=concrete,
        characters=len(text),
        units=len(encoded) // _octets_per_unit(concrete),
        segments=len(chunks),
        units_per_segment=units_per_part(concrete, header),
    )
