"""The opt-out check every MT passes: the `PolicyCheck` intake runs for HTTP sends, SMPP
submits (each destination of a submit_multi), OTP sends and re-sends, and internal replies.

Owns `OptOutPolicy` and the refusal it gives (`recipient_opted_out`: HTTP 403; SMPP the
account's `optout_status`, ESME_RX_P_APPN by default, see `AccountConfig.optout_status`).
Never does: changing the list, awaiting, or anything slower than a dict lookup for a number
that has no opt-out (every message pays for it).

What passes an opt-out: an OTP from a sender marked `[optouts] otp_exempt` (a login code is
not marketing), and the confirmation of the opt-out itself (`MessageRequest.confirms_optout`,
set by the inbound handler only): it passes the opt-out it confirms and no other.

Queued before the STOP: a message accepted before its recipient opted out is checked again when
a link takes it from the send queue (`stops_queued`, the same O(1) lookup), and finishes REJECTED
instead of going out. The gateway's own keyword replies (the internal channel) are not checked
there: they answered the subscriber's own MO and were checked at intake, and the confirmation of
a STOP is queued after the opt-out it confirms.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from gateway.intake import IntakeRefusal, MessageRequest
from gateway.messages import Channel, Message, MessageKind
from gateway.optouts.registry import OptOutRegistry, OptOutStats
from gateway.optouts.senders import sender_key
from routing import ResolvedNumber, RouteDecision
from smpp.constants import CommandStatus

REFUSAL_CODE = "recipient_opted_out"
HTTP_STATUS = 403
# Why this default: see `gateway.config.AccountConfig.optout_status`.
DEFAULT_SMPP_STATUS = CommandStatus.ESME_RX_P_APPN


class OptOutPolicy:
    """Refuses an MT to a number that opted out of its sender; see the module docstring."""

    __slots__ = ("enabled", "otp_exempt", "registry", "stats")

    def __init__(
        self,
        registry: OptOutRegistry,
        *,
        otp_exempt: Iterable[str] = (),
        stats: OptOutStats | None = None,
        enabled: bool = True,
    ) -> None:
        self.registry = registry
        self.otp_exempt = frozenset(sender_key(sender) for sender in otp_exempt)
        self.stats = stats if stats is not None else registry.stats
        # Off: the check is skipped (bench/optout.py measures its cost against this).
        self.enabled = enabled

    def check(
        self, request: MessageRequest, number: ResolvedNumber, decision: RouteDecision
    ) -> IntakeRefusal | None:
        if not self.enabled:
            return None
        # The sender the message will carry: the route may rewrite the customer's.
        sender = decision.sender if decision.sender is not None else request.sender
        recipient = number.e164[1:]
        registry = self.registry
        if not registry.blocks(recipient, sender):
            return None
        stats = self.stats
        if request.kind is MessageKind.OTP and sender_key(sender) in self.otp_exempt:
            stats.otp_exempt_passed += 1
            return None
        confirms = request.confirms_optout
        if confirms is not None and registry.blocking_keys(recipient, sender) <= {confirms}:
            stats.confirmations_passed += 1
            return None
        status = request.optout_status
        return IntakeRefusal(
            REFUSAL_CODE,
            "to",
            f"the recipient opted out of messages from {sender or 'this sender'}",
            HTTP_STATUS,
            DEFAULT_SMPP_STATUS if status is None else status,
            count=functools.partial(_count_refusal, stats, request),
        )

    def stops_queued(self, message: Message) -> bool:
        """Has the recipient of this queued message opted out of its sender since it was
        accepted? Called as a link takes it (see the module docstring); counts what it stops."""
        if not self.enabled or message.channel is Channel.INTERNAL:
            return False
        sender = message.source_addr
        if not self.registry.blocks(message.destination, sender):
            return False
        if message.kind is MessageKind.OTP and sender_key(sender) in self.otp_exempt:
            return False
        self.stats.refused_queued += 1
        return True


QUEUED_REFUSAL = f"{REFUSAL_CODE}: the recipient opted out after the message was accepted"


def _count_refusal(stats: OptOutStats, request: MessageRequest) -> None:
    if request.kind is MessageKind.OTP:
        stats.refused_otp += 1
    elif request.channel is Channel.HTTP:
        stats.refused_http += 1
    elif request.channel is Channel.SMPP:
        stats.refused_smpp += 1
    else:
        stats.refused_internal += 1
