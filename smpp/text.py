"""Text <-> short_message octets for SMPP data_coding values.

Owns the choice of encoding (GSM 7-bit when every character fits, else UCS-2), encoding text for
data_coding 0 (GSM 03.38 unpacked), 3 (Latin-1) and 8 (UCS-2 as UTF-16BE, astral characters as
surrogate pairs), and lenient decoding of any data_coding. Must never split messages or build
UDHs (that is `smpp.segmentation`) and never touch PDUs.

Decoding never raises:
- data_coding 0 and GSM-DCS 7-bit classes: as `smpp.gsm7.decode` (bad septets become ``?``);
- 8 and UCS-2 classes: UTF-16BE with U+FFFD for a lone surrogate or an odd trailing octet;
- 1 (IA5) as ASCII, 3 Latin-1, 5/6/7/10/13/14 with the matching Python codec, undecodable
  octets as U+FFFD;
- binary classes (2, 4, 8-bit GSM DCS, compressed) and unknown values: each octet becomes the
  code point of the same value (Latin-1), so nothing is lost; keep the bytes if they matter.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

from smpp import gsm7


class Encoding(enum.StrEnum):
    GSM7 = "gsm7"
    UCS2 = "ucs2"
    LATIN1 = "latin1"
    BINARY = "binary"


AUTO = "auto"


class DataCoding(enum.IntEnum):
    """SMPP 3.4 data_coding values (5.2.19)."""

    SMSC_DEFAULT = 0x00
    IA5 = 0x01
    OCTET_UNSPECIFIED_2 = 0x02
    LATIN1 = 0x03
    OCTET_UNSPECIFIED = 0x04
    JIS = 0x05
    CYRILLIC = 0x06
    LATIN_HEBREW = 0x07
    UCS2 = 0x08
    PICTOGRAM = 0x09
    ISO_2022_JP = 0x0A
    EXTENDED_KANJI = 0x0D
    KS_C_5601 = 0x0E


DATA_CODING_OF: dict[Encoding, int] = {
    Encoding.GSM7: DataCoding.SMSC_DEFAULT,
    Encoding.UCS2: DataCoding.UCS2,
    Encoding.LATIN1: DataCoding.LATIN1,
    Encoding.BINARY: DataCoding.OCTET_UNSPECIFIED,
}


class TextEncodingError(ValueError):
    """The text cannot be carried in the requested encoding; `characters` lists the culprits."""

    def __init__(self, encoding: Encoding, characters: str, detail: str = "") -> None:
        self.encoding = encoding
        self.characters = characters
        shown = ", ".join(repr(char) for char in characters)
        super().__init__(detail or f"not representable in {encoding.value}: {shown}")


def resolve_encoding(text: str, encoding: Encoding | str = AUTO) -> Encoding:
    """The concrete encoding for `text`: "auto" picks GSM 7-bit when every character fits.

    Raises ValueError for an unknown name.
    """
    if encoding == AUTO:
        return Encoding.GSM7 if gsm7.is_representable(text) else Encoding.UCS2
    return Encoding(encoding)


def encode_as(text: str, encoding: Encoding) -> bytes:
    """Text -> octets in a concrete text encoding; raises TextEncodingError when it cannot."""
    if encoding is Encoding.GSM7:
        try:
            return gsm7.encode(text)
        except gsm7.Gsm7EncodeError as error:
            raise TextEncodingError(encoding, error.characters) from None
    if encoding is Encoding.UCS2:
        try:
            return text.encode("utf-16-be")
        except UnicodeEncodeError:
            lone = "".join(dict.fromkeys(c for c in text if 0xD800 <= ord(c) <= 0xDFFF))
            raise TextEncodingError(
                encoding, lone, "text holds unpaired surrogate code points"
            ) from None
    if encoding is Encoding.LATIN1:
        try:
            return text.encode("latin-1")
        except UnicodeEncodeError:
            outside = "".join(dict.fromkeys(c for c in text if ord(c) > 0xFF))
            raise TextEncodingError(encoding, outside) from None
    raise ValueError("binary content is bytes, not text: use smpp.segmentation.split_bytes")


def encode_choosing(text: str, encoding: Encoding | str = AUTO) -> tuple[Encoding, bytes]:
    """(concrete encoding, octets): "auto" tries GSM 7-bit and falls back to UCS-2.

    Raises TextEncodingError when a forced encoding does not fit, ValueError for unknown names.
    """
    if encoding == AUTO:
        septets = gsm7.try_encode(text)
        if septets is not None:
            return Encoding.GSM7, septets
        return Encoding.UCS2, encode_as(text, Encoding.UCS2)
    concrete = Encoding(encoding)
    return concrete, encode_as(text, concrete)


def encode_text(text: str, encoding: Encoding | str = AUTO) -> tuple[int, bytes]:
    """Text -> (data_coding, octets). `encoding`: "auto", "gsm7", "ucs2" or "latin1".

    GSM 7-bit is unpacked (one septet per octet), as SMPP data_coding 0 expects.
    Raises TextEncodingError when the text does not fit the requested encoding.
    """
    concrete, data = encode_choosing(text, encoding)
    return DATA_CODING_OF[concrete], data


def _decode_gsm7(data: bytes) -> str:
    return gsm7.decode(data)


def _decode_ucs2(data: bytes) -> str:
    return data.decode("utf-16-be", "replace")


def _decode_octets(data: bytes) -> str:
    return data.decode("latin-1")


def _codec_decoder(codec: str) -> Callable[[bytes], str]:
    def decode(data: bytes) -> str:
        try:
            return data.decode(codec, "replace")
        except Exception:  # a stateful codec may still choke on garbage: fall back losslessly
            return data.decode("latin-1")

    return decode


# SMPP's own values 0x00-0x0F (they differ from the TS 23.038 reading of the same numbers).
_SMPP_DECODERS: dict[int, Callable[[bytes], str]] = {
    DataCoding.SMSC_DEFAULT: _decode_gsm7,
    DataCoding.IA5: _codec_decoder("ascii"),
    DataCoding.OCTET_UNSPECIFIED_2: _decode_octets,
    DataCoding.LATIN1: _decode_octets,
    DataCoding.OCTET_UNSPECIFIED: _decode_octets,
    DataCoding.JIS: _codec_decoder("shift_jis"),
    DataCoding.CYRILLIC: _codec_decoder("iso8859_5"),
    DataCoding.LATIN_HEBREW: _codec_decoder("iso8859_8"),
    DataCoding.UCS2: _decode_ucs2,
    DataCoding.ISO_2022_JP: _codec_decoder("iso2022_jp"),
    DataCoding.EXTENDED_KANJI: _codec_decoder("euc_jis_2004"),
    DataCoding.KS_C_5601: _codec_decoder("euc_kr"),
}


def _decoder_for(data_coding: int) -> Callable[[bytes], str]:
    known = _SMPP_DECODERS.get(data_coding)
    if known is not None:
        return known
    if 0x10 <= data_coding <= 0x7F:  # TS 23.038 general data coding / automatic deletion groups
        if data_coding & 0x20:  # compressed: we cannot decompress
            return _decode_octets
        alphabet = (data_coding >> 2) & 0x03
        return {1: _decode_octets, 2: _decode_ucs2}.get(alphabet, _decode_gsm7)
    if 0xE0 <= data_coding <= 0xEF:  # message waiting indication, UCS-2
        return _decode_ucs2
    if 0xF0 <= data_coding <= 0xFF:  # data coding / message class
        return _decode_octets if data_coding & 0x04 else _decode_gsm7
    if 0x80 <= data_coding <= 0xDF:  # reserved groups read as the default alphabet (23.038 4)
        return _decode_gsm7
    return _decode_octets


def decode_text(data: bytes, data_coding: int) -> str:
    """short_message octets -> text. Never raises; see the module docstring for what odd
    input becomes."""
    return _decoder_for(data_coding)(data)
