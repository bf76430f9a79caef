"""Keyword replies: the one configured answer to STOP, START or HELP, sent back through intake.

Owns `KeywordReplies`: picks the `[[inbound.replies]]` entry for the keyword's class, the sender
group of the number the MO was sent to and the keyword's language (an entry for the group
before one for every sender, an entry in the language before one for any language), and sends
it from that number to the subscriber as an ordinary MT (`gateway.intake`: routed, stored,
receipts), on the internal channel. The confirmation of an opt-out carries the opt-out it
confirms (`MessageRequest.confirms_optout`): the only message the opt-out policy lets past it.

Never does: decide what a keyword changes (the handler and the opt-out registry), or send more
than one reply per MO (each reply carries the reference `mo:<id>`; the handler asks
`sent_already` before it sends a reply the store still owed after a restart).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import cast

from gateway.config import InboundReplyConfig
from gateway.inbound.model import InboundMessage
from gateway.intake import MessageIntake, MessageRequest
from gateway.messages import Channel, Tenant
from gateway.optouts.keywords import KeywordClass, KeywordMatch
from gateway.optouts.registry import OptOutOutcome
from gateway.optouts.senders import SenderGroups, sender_key
from gateway.store.base import CustomerDeliveryStore

log = logging.getLogger("tandem.inbound")

REPLY_ACCOUNT = "inbound-replies"  # the principal internal replies are stored under


class KeywordReplies:
    """`await replies(message, inbound_id, match, outcome)`; see the module docstring."""

    def __init__(
        self,
        replies: Sequence[InboundReplyConfig],
        intake: MessageIntake,
        groups: SenderGroups,
    ) -> None:
        self.replies = list(replies)
        self.intake = intake
        self.groups = groups

    def pick(self, keyword_class: KeywordClass, sender: str, language: str) -> str | None:
        """The text of the reply for a keyword of `keyword_class` in `language` sent to
        `sender`; None when none is configured."""
        group = self.groups.group_of(sender_key(sender))
        group_name = group.name if group is not None else None
        best: tuple[int, int] | None = None
        text: str | None = None
        for reply in self.replies:
            if reply.kind != keyword_class.value:
                continue
            if reply.sender_group is not None and reply.sender_group != group_name:
                continue
            if reply.language is not None and reply.language != language:
                continue
            rank = (reply.sender_group is not None, reply.language is not None)
            score = (int(rank[0]), int(rank[1]))
            if best is None or score > best:
                best, text = score, reply.text
        return text

    def owes(self, match: KeywordMatch, sender: str) -> bool:
        return self.pick(match.keyword_class, sender, match.language) is not None

    async def sent_already(self, inbound_id: int) -> bool:
        # The gateway's one store is every store interface; intake types it as MessageStore.
        store = cast(CustomerDeliveryStore, self.intake.store)
        tenant = Tenant(Channel.INTERNAL, REPLY_ACCOUNT)
        return bool(await store.find_references(tenant, _reference(inbound_id)))

    async def __call__(
        self,
        message: InboundMessage,
        inbound_id: int,
        match: KeywordMatch,
        outcome: object,
    ) -> bool:
        """Send the reply, if one is configured; True when intake accepted it."""
        text = self.pick(match.keyword_class, message.destination, match.language)
        if text is None:
            return False
        confirms = None
        if match.keyword_class is KeywordClass.OPT_OUT and isinstance(outcome, OptOutOutcome):
            confirms = outcome.confirmation
        request = MessageRequest(
            account=REPLY_ACCOUNT,
            channel=Channel.INTERNAL,
            to=message.source,
            sender=message.destination,
            text=text,
            reference=_reference(inbound_id),
            assume_international=True,
            confirms_optout=confirms,
        )
        await self.intake.accept([request])
        return True


def _reference(inbound_id: int) -> str:
    return f"mo:{inbound_id}"
