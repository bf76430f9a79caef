"""Who an opt-out is about on our side: sender keys and sender groups.

Owns `sender_key` (the one spelling of a sender the opt-out list, the keyword matcher and the
policy compare: a number or short code without '+', an alphanumeric id case-folded),
`number_key` (a subscriber's number as digits without '+') and `SenderGroups` (which group a
sender belongs to, and whether an opt-out sent to one member applies to the whole group).

Never does: I/O or config parsing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from routing import InvalidNumber, NumberResolver


def sender_key(sender: str) -> str:
    """The spelling of a sender that opt-outs are kept under: '+12345' and '12345' are one
    sender, 'Acme' and 'ACME' are one alphanumeric sender."""
    sender = sender.strip()
    if sender.startswith("+"):
        sender = sender[1:]
    return sender if sender.isdigit() else sender.casefold()


class InvalidOptOutNumber(ValueError):
    """A subscriber number that is not digits (with an optional leading '+')."""


def number_key(number: str) -> str:
    """A subscriber's number as the digits of its E.164 form (no '+')."""
    digits = number.strip().removeprefix("+")
    if not digits.isdigit() or not 1 <= len(digits) <= 15 or not digits.isascii():
        raise InvalidOptOutNumber(f"{number!r} is not an international number (digits, at most 15)")
    return digits


def resolve_number(numbers: NumberResolver, raw: str) -> str:
    """A subscriber number given by an operator (API, CLI, CSV) as E.164 digits: '+44...',
    national with the configured region, or international digits without '+'. Raises
    `routing.InvalidNumber`."""
    try:
        return numbers.normalise(raw).e164[1:]
    except InvalidNumber:
        if not raw.strip().isdigit():
            raise
        return numbers.normalise(raw, assume_international=True).e164[1:]


@dataclass(frozen=True, slots=True)
class SenderGroup:
    """Senders that share opt-outs: with `shared_optout`, a STOP sent to one member stops all."""

    name: str
    senders: frozenset[str]
    shared_optout: bool = True


@dataclass(slots=True)
class SenderGroups:
    """Sender to group, O(1). A sender belongs to one group at most (config checks it)."""

    groups: dict[str, SenderGroup] = field(default_factory=dict)
    _of_sender: dict[str, SenderGroup] = field(default_factory=dict)

    @classmethod
    def of(cls, groups: Iterable[SenderGroup]) -> SenderGroups:
        made = cls()
        for group in groups:
            made.groups[group.name] = group
            for sender in group.senders:
                made._of_sender[sender_key(sender)] = group
        return made

    def group_of(self, sender: str) -> SenderGroup | None:
        """The group of a sender given as `sender_key` spells it."""
        return self._of_sender.get(sender)
