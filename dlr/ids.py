"""Carrier message ids: the only place they are normalised.

Owns `MessageIdFormat`, `canonical_message_id` and the SMPP correlation key. Must never look
anything up or guess a format: each link's configuration says how its SMSC writes ids, once for
submit_sm_resp and once for receipts, and both sides go through `canonical_message_id`.

Rules
-----
- Surrounding whitespace and NUL octets are trimmed in every format (C-octet strings leak NULs).
- `hex`: ASCII hex digits, any case, optional `0x` prefix. Canonical form: the integer value
  written in decimal. So "0A1B", "a1b", "0x0a1b" all become "2587".
- `dec`: ASCII decimal digits. Canonical form: the integer value in decimal, so leading zeros
  cannot break a match ("002587" -> "2587").
- `str`: the exact text, trimmed; case and leading zeros are kept, because the id is opaque.
- Numeric ids longer than 64 digits are refused (SMPP message_id is at most 64 characters).
- Anything else (empty, signs, spaces inside, non-ASCII digits, letters under `dec`) raises
  `InvalidMessageId`: a wrong link configuration must be visible, not silently mismatched.

The common case "resp in hex, receipt text in decimal" is then: resp "0A1B" (hex) -> "2587" and
receipt "2587" (dec) -> "2587": the same key.
"""

from __future__ import annotations

import enum
import re
from typing import NamedTuple


class MessageIdFormat(enum.StrEnum):
    HEX = "hex"
    DEC = "dec"
    STR = "str"


class InvalidMessageId(ValueError):
    """The raw id cannot be read under the configured format."""

    def __init__(self, raw: str, fmt: MessageIdFormat) -> None:
        super().__init__(f"message id {raw!r} is not valid {fmt.value}")
        self.raw = raw
        self.fmt = fmt


_TRIM = " \t\r\n\x00"
_HEX = re.compile(r"(?:0[xX])?([0-9A-Fa-f]+)")
_DEC = re.compile(r"[0-9]+")
_MAX_DIGITS = 64


def canonical_message_id(raw: str, fmt: MessageIdFormat) -> str:
    """Normalise a carrier id written in `fmt` to the canonical text used as a key."""
    text = raw.strip(_TRIM)
    if fmt is MessageIdFormat.DEC:
        if len(text) > _MAX_DIGITS or _DEC.fullmatch(text) is None:
            raise InvalidMessageId(raw, fmt)
        # Skipping int() for ids that are already canonical keeps the hot path cheap.
        if text[0] != "0" or text == "0":
            return text
        return str(int(text))
    if fmt is MessageIdFormat.HEX:
        match = _HEX.fullmatch(text)
        if match is None or len(match.group(1)) > _MAX_DIGITS:
            raise InvalidMessageId(raw, fmt)
        return str(int(match.group(1), 16))
    if not text:
        raise InvalidMessageId(raw, fmt)
    return text


class LinkReceiptKey(NamedTuple):
    """Correlation key of a part on any link: (link name, the link's key for the part). An SMPP
    link's key is the canonical carrier id; a modem link's is its TP-MR narrowed by the
    recipient (`gateway.links.modem`)."""

    link: str
    carrier_id: str


# The SMPP link's keys are link keys whose second half is a canonical carrier id.
SmppReceiptKey = LinkReceiptKey


def smpp_receipt_key(link: str, raw_id: str, fmt: MessageIdFormat) -> SmppReceiptKey:
    return SmppReceiptKey(link, canonical_message_id(raw_id, fmt))
