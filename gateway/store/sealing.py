"""Sealing what the store must keep but its files must not show: AES-256-GCM under a key file.

Owns `Sealer` (seal and open bytes or text, each bound to the row it belongs to) and the marks
that tell a sealed value from a clear one. The store seals two things (see gateway.store.sqlite):
the content of an OTP message until it is sent (the SMS carries the code, and a crash before
sending must not lose it) and each API key's callback secret (it must be kept whole to sign
with). The key is `<data_dir>/store.key` (32 random bytes, 0600, made on first use), beside the
OTP pepper: a copy of the database, its WAL or a backup of them without the key shows neither.

Every value is sealed with a fresh random nonce and with its context (e.g. the message id) as
associated data, so a sealed value moved to another row does not open there.

Never does: decide what is sealed, or hold the key anywhere but in memory.
"""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.store.base import StoreError

KEY_BYTES = 32
SEALED_MARK = b"\x00tandem-sealed-1\x00"  # starts sealed bytes (no text or SMS body starts so)
SEALED_TEXT_MARK = "sealed1:"  # starts sealed text (a callback secret starts "whsec_")
_NONCE_BYTES = 12


class UnsealError(StoreError):
    """A sealed value does not open: the key file is not the one it was sealed with, or the
    value was changed."""


def is_sealed(data: bytes) -> bool:
    return data.startswith(SEALED_MARK)


def is_sealed_text(value: str) -> bool:
    return value.startswith(SEALED_TEXT_MARK)


class Sealer:
    """AES-256-GCM with one key; `context` names the row a value belongs to."""

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"a store key is {KEY_BYTES} bytes, not {len(key)}")
        self._aead = AESGCM(key)

    def seal(self, plaintext: bytes, context: str) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return SEALED_MARK + nonce + self._aead.encrypt(nonce, plaintext, context.encode())

    def open(self, sealed: bytes, context: str) -> bytes:
        body = sealed[len(SEALED_MARK) :]
        try:
            return self._aead.decrypt(body[:_NONCE_BYTES], body[_NONCE_BYTES:], context.encode())
        except InvalidTag:
            raise UnsealError(
                f"{context}: a sealed value does not open with this store key"
            ) from None

    def seal_text(self, text: str, context: str) -> str:
        sealed = self.seal(text.encode(), context)[len(SEALED_MARK) :]
        return SEALED_TEXT_MARK + base64.urlsafe_b64encode(sealed).decode()

    def open_text(self, value: str, context: str) -> str:
        """The text `value` seals; a value that is not sealed (from before sealing) as it is."""
        if not is_sealed_text(value):
            return value
        sealed = base64.urlsafe_b64decode(value[len(SEALED_TEXT_MARK) :])
        return self.open(SEALED_MARK + sealed, context).decode()
