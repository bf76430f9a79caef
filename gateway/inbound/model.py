"""The inbound (MO) data model: what one received part is and what a whole MO is, link-neutral.

Owns: `InboundPart` (one part exactly as a link received it: an SMPP deliver_sm/data_sm that is
not a receipt, or a GSM modem's SMS-DELIVER), `Concat` (where that part sits in a concatenated
message, read from a UDH 8/16-bit reference or the SAR TLVs), `InboundMessage` (the whole after
reassembly, with the parts it was made of, or one part given up on), and `is_binary`.

Never does: I/O, protocol parsing, clocks or persistence. A link converts its own wire format
into an `InboundPart` (gateway.inbound.smpp_pdus for SMPP); everything after that (reassembly,
storage, keywords, routing) sees only this model.

Conventions:
- `source` and `destination` are the addresses as the link received them (for SMPP international
  numbers that is E.164 digits without '+'); `source_ton`/`source_npi`/`destination_ton`/
  `destination_npi` keep how the carrier qualified them so a customer receives them unchanged.
- `data_coding` is an SMPP data_coding value (a modem maps its TP-DCS onto it: 0x00 GSM 7-bit,
  0x04 8-bit data, 0x08 UCS-2 are the same numbers in both).
- `payload` is the user data without any UDH: GSM 7-bit as one septet per octet (unpacked, as
  SMPP carries it), UCS-2 as big-endian octets, 8-bit as is. Parts are joined as octets before
  decoding, so a character split across parts still decodes.
- `text` is the decoded payload, or None for binary data (then only `payload` means anything).
- `received_at` and `carrier_timestamp` are unix seconds (they must survive a restart).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from smpp.text import decode_text


class ConcatScheme(enum.StrEnum):
    """How the sender marked a part as one of several."""

    UDH8 = "udh8"  # UDH information element 0x00, 8-bit reference
    UDH16 = "udh16"  # UDH information element 0x08, 16-bit reference
    SAR = "sar"  # SMPP sar_msg_ref_num / sar_total_segments / sar_segment_seqnum TLVs


@dataclass(slots=True, frozen=True)
class Concat:
    """Where a part sits in its message: `sequence` is 1-based, at most `total`."""

    reference: int
    total: int
    sequence: int
    scheme: ConcatScheme


def is_binary(data_coding: int) -> bool:
    """True when `data_coding` says 8-bit data rather than an alphabet (SMPP 0x02/0x04, the
    TS 23.038 general and message-class groups with the 8-bit alphabet, compressed text)."""
    if data_coding in (0x02, 0x04):
        return True
    if 0x10 <= data_coding <= 0x7F:
        return bool(data_coding & 0x20) or (data_coding >> 2) & 0x03 == 1
    if 0xF0 <= data_coding <= 0xFF:
        return bool(data_coding & 0x04)
    return False


def decoded_text(payload: bytes, data_coding: int) -> str | None:
    """The text of `payload`, or None when the data coding says it is binary data."""
    if is_binary(data_coding):
        return None
    return decode_text(payload, data_coding)


@dataclass(slots=True, frozen=True)
class InboundPart:
    """One MO part as a link received it (a single-part MO is one part with `concat` None)."""

    link: str
    source: str
    destination: str
    data_coding: int
    payload: bytes
    text: str | None
    received_at: float
    concat: Concat | None = None
    carrier_timestamp: float | None = None
    source_ton: int = 1
    source_npi: int = 1
    destination_ton: int = 1
    destination_npi: int = 1
    # UDH information elements other than concatenation (application ports, ...): (IEI, data).
    udh_elements: tuple[tuple[int, bytes], ...] = ()
    service_type: str = ""
    protocol_id: int = 0

    @property
    def is_binary(self) -> bool:
        return self.text is None

    @property
    def is_part_of_several(self) -> bool:
        return self.concat is not None and self.concat.total > 1


@dataclass(slots=True, frozen=True)
class InboundMessage:
    """An MO as the gateway handles it: a whole message joined from its parts, or a single
    part (a one-part MO, or a part whose other parts never arrived: `complete` False)."""

    parts: tuple[InboundPart, ...]  # in sequence order
    payload: bytes  # the parts' payloads joined
    text: str | None  # None for binary data
    complete: bool = True

    @classmethod
    def single(cls, part: InboundPart, *, complete: bool | None = None) -> InboundMessage:
        """A message of one part; a part of several taken alone is not `complete`."""
        if complete is None:
            complete = not part.is_part_of_several
        return cls((part,), part.payload, part.text, complete)

    @classmethod
    def joined(cls, parts: tuple[InboundPart, ...]) -> InboundMessage:
        """The whole of `parts` (every part of one message, in sequence order)."""
        if not parts:
            raise ValueError("a message has at least one part")
        payload = b"".join(part.payload for part in parts)
        return cls(parts, payload, decoded_text(payload, parts[0].data_coding), True)

    @property
    def first(self) -> InboundPart:
        return self.parts[0]

    @property
    def link(self) -> str:
        return self.parts[0].link

    @property
    def source(self) -> str:
        return self.parts[0].source

    @property
    def destination(self) -> str:
        return self.parts[0].destination

    @property
    def data_coding(self) -> int:
        return self.parts[0].data_coding

    @property
    def received_at(self) -> float:
        """When the last part arrived: the message was whole (or given up on) then."""
        return max(part.received_at for part in self.parts)

    @property
    def carrier_timestamp(self) -> float | None:
        return self.parts[0].carrier_timestamp
