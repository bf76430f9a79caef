"""Sender ids: the one rule for what a message may say it comes from, whatever its channel.

Owns `check_sender` (alphanumeric ids of at most 11 characters, numbers of at most 15 digits,
short codes as the `[senders]` section configures them), the TON/NPI a sender implies
(`source_address_type`) and whether a TON given with a sender fits it (`source_ton_problem`).
The HTTP models, the intake and the SMPP server all call these; none keeps a rule of its own.

Must never: truncate or rewrite a sender (a sender that breaks the rule is refused), know
about channels (callers turn `InvalidSender` into a 422 naming `from` or ESME_RINVSRCADR), or
import `gateway.config`: the config checks its `[otp] default_sender` with this rule, so the
rule sits below it and reads `[senders]` through `SenderSettings`.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from smpp.gsm7 import BASIC_TABLE

ALPHANUMERIC_MAX = 11  # what TP-OA carries packed (11 septets); carriers state the same
NUMBER_MAX_DIGITS = 15  # ITU-T E.164
NUMBER_MIN_DIGITS = 7  # the shortest international numbers in use (country code included)
SHORT_CODE_MIN_DIGITS = 3
ALPHANUMERIC_SYMBOLS = " &'+-._!"
# Letters of the GSM 7-bit default alphabet that an SMPP source_addr (Latin-1 octets) can
# carry: A-Z, a-z and a few accented ones; the Greek capitals cannot.
_GSM_LETTERS = frozenset(char for char in BASIC_TABLE if char.isalpha() and ord(char) < 256)
_ALPHANUMERIC_CHARS = _GSM_LETTERS | frozenset("0123456789") | frozenset(ALPHANUMERIC_SYMBOLS)
TON_INTERNATIONAL, TON_NATIONAL, TON_ALPHANUMERIC = 1, 2, 5
# Numeric senders without '+' of at most this many digits are short codes (the default of
# `[senders] short_code_max_digits`).
SHORT_CODE_MAX_DIGITS = 8

# For the OpenAPI document: the shape `check_sender` accepts with the default `[senders]`.
_SYMBOLS_SHOWN = " ".join(ALPHANUMERIC_SYMBOLS.strip())
SENDER_DESCRIPTION = (
    f"Sender id: an alphanumeric id of at most {ALPHANUMERIC_MAX} characters (Latin letters "
    f"of the GSM 7-bit alphabet, digits, space and {_SYMBOLS_SHOWN}; not all "
    f"digits), a number of at most {NUMBER_MAX_DIGITS} digits (E.164, '+' optional), or a "
    "short code the operator allows (`[senders]`). Anything else is refused with 422 naming "
    "`from`, never shortened."
)


class SenderKind(enum.StrEnum):
    ALPHANUMERIC = "alphanumeric"
    NUMBER = "number"
    SHORT_CODE = "short_code"


class InvalidSender(ValueError):
    """A sender that breaks the rule; `str()` is a sentence for the customer."""


class SenderSettings(Protocol):
    """What the rule reads of `[senders]` (`gateway.config.SendersConfig`)."""

    @property
    def short_code_max_digits(self) -> int: ...

    @property
    def short_codes(self) -> Sequence[str]: ...


@dataclass(frozen=True, slots=True)
class _DefaultSenders:
    """`[senders]` as it is when the config leaves it out."""

    short_code_max_digits: int = SHORT_CODE_MAX_DIGITS
    short_codes: tuple[str, ...] = ()


DEFAULT_SENDERS: SenderSettings = _DefaultSenders()


def check_sender(
    sender: str, senders: SenderSettings = DEFAULT_SENDERS, *, ton: int | None = None
) -> SenderKind:
    """What kind of sender `sender` is; raises `InvalidSender` saying why it cannot be one.

    All digits (with or without a leading '+') is a number or a short code: numbers have at
    most 15 digits, '+' ones at least 7; without '+', up to `short_code_max_digits` digits is
    a short code (at least 3 digits, and one of `short_codes` when that list is given), unless
    `ton` says it is international (SMPP writes those without '+').
    Anything else is alphanumeric: at most 11 characters of GSM letters, digits, space and
    a few symbols, not starting or ending with a space.
    """
    if not sender:
        raise InvalidSender("the sender is empty")
    international = sender.startswith("+")
    digits = sender[1:] if international else sender
    if digits.isascii() and digits.isdigit():
        count = len(digits)
        if count > NUMBER_MAX_DIGITS:
            raise InvalidSender(
                f"a numeric sender has at most {NUMBER_MAX_DIGITS} digits (E.164); "
                f"{sender!r} has {count}"
            )
        if ton == TON_INTERNATIONAL and count >= NUMBER_MIN_DIGITS:
            international = True
        if international or count > senders.short_code_max_digits:
            if count < NUMBER_MIN_DIGITS:
                raise InvalidSender(
                    f"an international number has at least {NUMBER_MIN_DIGITS} digits"
                )
            return SenderKind.NUMBER
        if count < SHORT_CODE_MIN_DIGITS:
            raise InvalidSender(f"a short code has at least {SHORT_CODE_MIN_DIGITS} digits")
        if senders.short_codes and digits not in senders.short_codes:
            raise InvalidSender(f"{sender!r} is not one of the short codes this gateway uses")
        return SenderKind.SHORT_CODE
    if international and digits.isdigit():  # '+' and non-ASCII digits
        raise InvalidSender("a number is written with the digits 0-9")
    if len(sender) > ALPHANUMERIC_MAX:
        raise InvalidSender(
            f"an alphanumeric sender has at most {ALPHANUMERIC_MAX} characters; "
            f"{sender!r} has {len(sender)}"
        )
    bad = sorted({char for char in sender if char not in _ALPHANUMERIC_CHARS})
    if bad:
        shown = ", ".join(repr(char) for char in bad)
        raise InvalidSender(
            f"an alphanumeric sender holds letters, digits, space and {_SYMBOLS_SHOWN} only, "
            f"not {shown}"
        )
    if sender != sender.strip(" "):
        raise InvalidSender("an alphanumeric sender does not start or end with a space")
    return SenderKind.ALPHANUMERIC


def source_address_type(sender: str) -> tuple[int, int]:
    """TON/NPI for a sender id, as SMSCs expect them: alphanumeric 5/0, international 1/1,
    short codes and national numbers 0/1."""
    digits = sender.removeprefix("+")
    if not digits.isdigit():
        return TON_ALPHANUMERIC, 0
    if sender.startswith("+") or len(digits) > DEFAULT_SENDERS.short_code_max_digits:
        return TON_INTERNATIONAL, 1
    return 0, 1


def source_ton_problem(kind: SenderKind, ton: int) -> str | None:
    """Why `ton` does not fit a sender of `kind` (None when it does): an alphanumeric sender
    is TON 5 and only it is; a short code is not an international number."""
    if kind is SenderKind.ALPHANUMERIC:
        if ton != TON_ALPHANUMERIC:
            return f"an alphanumeric sender needs TON {TON_ALPHANUMERIC}, not {ton}"
        return None
    if ton == TON_ALPHANUMERIC:
        return f"a numeric sender cannot have TON {TON_ALPHANUMERIC} (alphanumeric)"
    if kind is SenderKind.SHORT_CODE and ton == TON_INTERNATIONAL:
        return f"a short code cannot have TON {TON_INTERNATIONAL} (international)"
    return None
