"""The GSM 03.38 (3GPP TS 23.038) default alphabet and its extension table.

Owns the septet tables, unpacked encoding (one septet per octet, SMPP data_coding 0), lenient
decoding, and septet packing with fill bits (what a GSM modem's TPDU carries after a UDH).
Must never choose encodings, split messages or know about PDUs: `smpp.text` and
`smpp.segmentation` build on this.

Decoding never raises, whatever the input:
- an octet above 0x7F (not a septet) decodes as ``?``;
- an escape (0x1B) followed by a code the extension table lacks decodes as the basic-table
  character for that code, as TS 23.038 tells receivers to do;
- an escape followed by another escape, or at the very end, decodes as a space.
"""

from __future__ import annotations

import codecs

ESCAPE = 0x1B

# Index = septet value. Position 0x1B is the escape to the extension table, never a character.
BASIC_TABLE = (
    "@\u00a3$\u00a5\u00e8\u00e9\u00f9\u00ec\u00f2\u00c7\n\u00d8\u00f8\r\u00c5\u00e5"
    "\u0394_\u03a6\u0393\u039b\u03a9\u03a0\u03a8\u03a3\u0398\u039e\x1b\u00c6\u00e6\u00df\u00c9"
    " !\"#\u00a4%&'()*+,-./"
    "0123456789:;<=>?"
    "\u00a1ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZ\u00c4\u00d6\u00d1\u00dc\u00a7"
    "\u00bfabcdefghijklmno"
    "pqrstuvwxyz\u00e4\u00f6\u00f1\u00fc\u00e0"
)
assert len(BASIC_TABLE) == 128

# Septet after the escape -> character. Each costs two septets on the air.
EXTENSION_TABLE: dict[int, str] = {
    0x0A: "\x0c",
    0x14: "^",
    0x28: "{",
    0x29: "}",
    0x2F: "\\",
    0x3C: "[",
    0x3D: "~",
    0x3E: "]",
    0x40: "|",
    0x65: "\u20ac",
}

_UNREPRESENTABLE = "\u0100"  # any non-ASCII marker: encoded output is pure ASCII otherwise


def _build_encode_map() -> dict[int, str]:
    table: dict[int, str] = {code: _UNREPRESENTABLE for code in range(128)}
    for septet, char in enumerate(BASIC_TABLE):
        if septet != ESCAPE:
            table[ord(char)] = chr(septet)
    for septet, char in EXTENSION_TABLE.items():
        table[ord(char)] = chr(ESCAPE) + chr(septet)
    return table


# str.translate with this map turns text into a str of septet values (all < 0x80) in one C pass;
# ASCII characters outside the alphabet map to a non-ASCII marker, and every other character
# not in the map stays itself (non-ASCII), so `isascii()` tells whether the text was encodable.
_ENCODE_MAP = _build_encode_map()

# Fast path for plain ASCII text (most traffic): one bytes.translate. ASCII characters that need
# an escape or are not in the alphabet map to 0x80, which sends the text down the general path.
_ASCII_SEPTETS = bytes(
    ord(_ENCODE_MAP[code]) if len(_ENCODE_MAP[code]) == 1 and _ENCODE_MAP[code] < "\x80" else 0x80
    for code in range(128)
) + bytes([0x80] * 128)

_REPRESENTABLE = frozenset(BASIC_TABLE.replace("\x1b", "")) | frozenset(EXTENSION_TABLE.values())
_EXTENSION_CHARS = frozenset(EXTENSION_TABLE.values())

# 256 entries so codecs.charmap_decode never meets an undefined octet.
_DECODE_TABLE = BASIC_TABLE.replace("\x1b", " ") + "?" * 128
_EXTENSION_DECODE = tuple(EXTENSION_TABLE.get(code, BASIC_TABLE[code]) for code in range(128))


class Gsm7EncodeError(ValueError):
    """The text holds characters the GSM 7-bit alphabet cannot carry."""

    def __init__(self, characters: str) -> None:
        self.characters = characters
        shown = ", ".join(repr(char) for char in characters)
        super().__init__(f"not representable in the GSM 7-bit alphabet: {shown}")


def is_representable(text: str) -> bool:
    """True when every character of `text` is in the basic or extension table."""
    return _REPRESENTABLE.issuperset(text)


def unrepresentable_characters(text: str) -> str:
    """The distinct characters of `text` outside the alphabet, in order of first appearance."""
    return "".join(dict.fromkeys(char for char in text if char not in _REPRESENTABLE))


def extension_count(text: str) -> int:
    """How many characters of `text` need an escape (each costs two septets)."""
    return sum(1 for char in text if char in _EXTENSION_CHARS)


def try_encode(text: str) -> bytes | None:
    """Like `encode`, but None instead of an error (cheap test-and-encode for "auto")."""
    if text.isascii():
        fast = text.encode("ascii").translate(_ASCII_SEPTETS)
        if 0x80 not in fast:
            return fast
    septets = text.translate(_ENCODE_MAP)
    return septets.encode("ascii") if septets.isascii() else None


def encode(text: str) -> bytes:
    """Text -> unpacked septets (one per octet), extension characters as 0x1B + code.

    Raises Gsm7EncodeError naming the characters the alphabet lacks.
    """
    septets = try_encode(text)
    if septets is None:
        raise Gsm7EncodeError(unrepresentable_characters(text))
    return septets


def septet_length(text: str) -> int:
    """Septets `text` needs (extension characters count two). Raises like `encode`."""
    return len(encode(text))


def decode(septets: bytes) -> str:
    """Unpacked septets -> text. Never raises; see the module docstring for odd input."""
    if ESCAPE not in septets:
        return codecs.charmap_decode(septets, "strict", _DECODE_TABLE)[0]
    chunks = septets.split(b"\x1b")
    pieces = [codecs.charmap_decode(chunks[0], "strict", _DECODE_TABLE)[0]]
    for chunk in chunks[1:]:
        if not chunk:
            pieces.append(" ")
            continue
        code = chunk[0]
        pieces.append(_EXTENSION_DECODE[code] if code < 0x80 else "?")
        pieces.append(codecs.charmap_decode(chunk[1:], "strict", _DECODE_TABLE)[0])
    return "".join(pieces)


def fill_bits_for_header(header_octets: int) -> int:
    """Fill bits after a UDH of `header_octets` so the first septet starts on a septet edge."""
    return (7 - (header_octets * 8) % 7) % 7


def packed_length(septet_count: int, fill_bits: int = 0) -> int:
    """Octets that `septet_count` packed septets occupy after `fill_bits` fill bits."""
    return (septet_count * 7 + fill_bits + 7) // 8


def pack(septets: bytes, fill_bits: int = 0) -> bytes:
    """Pack septets 8-into-7 (TS 23.038 6.1.2.1), after `fill_bits` zero bits (0-6).

    Only the low 7 bits of each input octet are used.
    """
    if not 0 <= fill_bits <= 6:
        raise ValueError(f"fill_bits must be 0..6, got {fill_bits}")
    value = 0
    shift = fill_bits
    for septet in septets:
        value |= (septet & 0x7F) << shift
        shift += 7
    return value.to_bytes(packed_length(len(septets), fill_bits), "little")


def unpack(packed: bytes, septet_count: int | None = None, fill_bits: int = 0) -> bytes:
    """Packed octets -> unpacked septets, skipping `fill_bits` leading fill bits (0-6).

    `septet_count` is the TP-UDL septet count; pass it, because 7 spare bits at the end are
    otherwise indistinguishable from a trailing '@'. A count larger than the data holds is cut to
    what is there (never raises on short data).
    """
    if not 0 <= fill_bits <= 6:
        raise ValueError(f"fill_bits must be 0..6, got {fill_bits}")
    available = max(0, (len(packed) * 8 - fill_bits) // 7)
    count = available if septet_count is None else max(0, min(septet_count, available))
    value = int.from_bytes(packed, "little") >> fill_bits
    out = bytearray(count)
    for index in range(count):
        out[index] = value & 0x7F
        value >>= 7
    return bytes(out)
