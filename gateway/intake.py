"""Intake: the one door every mobile-terminated message comes through, whatever its channel.

Owns `MessageRequest` (what an HTTP body or an SMPP submit_sm asks for), `IntakeRefusal` (why a
request is refused, with the HTTP status and SMPP command status each channel answers with), the
`PolicyCheck` hook (the opt-out list and other send policies plug in here, so no channel can skip
them) and `MessageIntake`, which turns requests into stored, queued `Message`s.

Order of work for each request: normalise the destination (E.164), find its operator, choose the
route (refused at the edge when none matches), apply the route's sender rewrite, run every policy
check, encode and count parts (refused above the route's or link's maximum, never truncated), then
store the batch durably and only then hand it to the dispatcher. The caller acknowledges (HTTP 202,
submit_sm_resp) after `accept` returns, so nothing acknowledged is ever only in memory.

Never does: protocol work (channels parse their own wire format), sending, or waiting on links.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from dlr.status import MessageStatus
from gateway.addresses import InvalidSender, check_sender, source_address_type
from gateway.backlog import BACKLOG_FULL, HTTP_STATUS, SMPP_STATUS, Backlog, BacklogFull
from gateway.config import SendersConfig
from gateway.messages import Channel, Message, MessageKind
from gateway.stages import now as stage_clock
from gateway.stages import recording
from gateway.store.base import MessageStore
from routing import (
    InvalidNumber,
    LinkStates,
    NoRoute,
    NumberResolver,
    ResolvedNumber,
    RouteDecision,
    RouteFacts,
    RouteTable,
)
from smpp.constants import CommandStatus
from smpp.segmentation import Concatenation, TooManyParts, split_bytes
from smpp.text import TextEncodingError, encode_text

UDHI = 0x40
DEFAULT_MAX_PARTS = 10


@dataclass(slots=True)
class MessageRequest:
    """One MT as a channel received it, before any checks. Exactly one of `text` / `body`."""

    account: str
    channel: Channel
    to: str
    sender: str = ""
    text: str | None = None
    body: bytes | None = None  # already encoded per `data_coding` (binary, or SMPP passthrough)
    data_coding: int | None = None
    encoding: str = "auto"  # for text: auto | gsm7 | ucs2 | latin1
    kind: MessageKind = MessageKind.TRANSACTIONAL
    tags: frozenset[str] = frozenset()  # route tags (an SMPP account's route_tags)
    source_ton: int | None = None
    source_npi: int | None = None
    esm_class: int = 0  # UDHI set: `body` is one part with its own UDH, sent as it is
    registered_delivery: int = 1
    validity_at: float | None = None
    send_at: float | None = None
    callback_url: str | None = None
    reference: str | None = None
    # SMPP TON 1 (international) numbers come without '+'; HTTP input may be national.
    assume_international: bool = False
    # The command_status an SMPP customer is answered with when the recipient opted out (the
    # account's `optout_status`); None: the opt-out policy's default.
    optout_status: int | None = None
    # Set by the inbound handler on the confirmation of an opt-out it just recorded: the
    # opt-out (`gateway.optouts.registry.OptOutOutcome.confirmation`) this message may pass.
    # No channel sets it from customer input.
    confirms_optout: str | None = None


@dataclass(slots=True)
class IntakeRefusal(Exception):
    """A request that cannot be accepted. `code` is stable and machine-readable, `field` names
    the input at fault, `reason` is a sentence for people."""

    code: str
    field: str
    reason: str
    http_status: int = 422
    smpp_status: int = CommandStatus.ESME_RSUBMITFAIL
    retry_after: float | None = None  # seconds; set when the refusal is only for now
    # Counts the refusal where it is final (`accept` with count_refused): a check that is run
    # again (a batch offered one by one, the HTTP API naming `to[i]`) is counted once.
    count: Callable[[], None] | None = None

    def __str__(self) -> str:
        return f"{self.code}: {self.field}: {self.reason}"


class PolicyCheck(Protocol):
    """A send policy consulted for every request of every channel (opt-out list, ...).

    Returns a refusal to stop the request, or None to let it through. Must not block.
    """

    def check(
        self, request: MessageRequest, number: ResolvedNumber, decision: RouteDecision
    ) -> IntakeRefusal | None: ...


class Dispatch(Protocol):
    """Where accepted messages go next: the send queue, through the dispatcher."""

    def enqueue(self, message: Message) -> None: ...


@dataclass(slots=True)
class Prepared:
    """A request that passed every check: the message to store and how many parts it has."""

    message: Message
    parts: int
    encoding: str
    decision: RouteDecision


@dataclass(slots=True)
class IntakeStats:
    """What the intake took and refused, for the metrics exporter. Keys are bounded: channel,
    route name (None: no route) and refusal code, never a number or a message."""

    accepted: dict[tuple[str, str | None], int] = field(default_factory=dict)
    segments: dict[tuple[str, str | None], int] = field(default_factory=dict)  # parts accepted
    refused: dict[tuple[str, str], int] = field(default_factory=dict)  # (channel, code)

    def count_accepted(self, prepared: Sequence[Prepared]) -> None:
        accepted, segments = self.accepted, self.segments
        for item in prepared:
            key = (item.message.channel.value, item.message.route)
            accepted[key] = accepted.get(key, 0) + 1
            segments[key] = segments.get(key, 0) + item.parts

    def count_refused(self, channel: Channel, code: str, times: int = 1) -> None:
        key = (channel.value, code)
        self.refused[key] = self.refused.get(key, 0) + times


@dataclass
class MessageIntake:
    """Checks, stores and queues MTs. One instance serves every channel of the daemon."""

    numbers: NumberResolver
    routes: RouteTable
    link_states: LinkStates
    store: MessageStore
    dispatch: Dispatch
    link_max_parts: Callable[[str], int] = lambda _link: DEFAULT_MAX_PARTS
    link_concatenation: Callable[[str], Concatenation] = lambda _link: Concatenation.UDH8
    policies: list[PolicyCheck] = field(default_factory=list)
    clock: Callable[[], float] = time.time
    backlog: Backlog | None = None  # None: no limits on what may wait queued
    senders: SendersConfig = field(default_factory=SendersConfig)
    stats: IntakeStats = field(default_factory=IntakeStats)

    def prepare(self, request: MessageRequest) -> Prepared:
        """Every check for one request; raises `IntakeRefusal`. Pure CPU, no awaits."""
        if request.sender:  # none: the route's sender or the carrier's default
            try:
                check_sender(request.sender, self.senders)
            except InvalidSender as exc:
                raise IntakeRefusal(
                    "invalid_sender", "from", str(exc), 422, CommandStatus.ESME_RINVSRCADR
                ) from None
        try:
            number = self.numbers.resolve(
                request.to,
                assume_international=request.assume_international,
                numbering_plan=self.routes.matches_operator,
            )
        except InvalidNumber as exc:
            raise IntakeRefusal(
                "invalid_number", "to", exc.reason, 422, CommandStatus.ESME_RINVDSTADR
            ) from None
        facts = RouteFacts.from_resolved(
            number,
            sender=request.sender or None,
            account=request.account,
            kind=request.kind,
            tags=request.tags,
        )
        now = self.clock()
        try:
            decision = self.routes.resolve(facts, now, self.link_states)
        except NoRoute as exc:
            raise IntakeRefusal(
                "no_route", "to", exc.reason, 422, CommandStatus.ESME_RINVDSTADR
            ) from None
        for policy in self.policies:
            refusal = policy.check(request, number, decision)
            if refusal is not None:
                raise refusal
        if request.validity_at is not None and request.validity_at <= now:
            raise IntakeRefusal(
                "expired",
                "validity",
                "the validity period has already ended",
                422,
                CommandStatus.ESME_RINVEXPIRY,
            )
        first_link = decision.first_target or decision.targets[0].link
        max_parts = decision.max_parts or self.link_max_parts(first_link)
        data_coding, body, encoding, parts = self._encode(request, first_link, max_parts)
        sender = decision.sender if decision.sender is not None else request.sender
        ton, npi = source_address_type(sender) if sender else (0, 0)
        if request.source_ton is not None and not decision.sender_rewritten:
            ton = request.source_ton
        if request.source_npi is not None and not decision.sender_rewritten:
            npi = request.source_npi
        message = Message(
            account=request.account,
            channel=request.channel,
            source_addr=sender,
            destination=number.e164.removeprefix("+"),
            body=body,
            source_ton=ton,
            source_npi=npi,
            kind=request.kind,
            data_coding=data_coding,
            text=request.text,
            esm_class=request.esm_class,
            registered_delivery=request.registered_delivery,
            validity_at=request.validity_at,
            send_at=request.send_at,
            route=decision.route,
            targets=[target.link for target in decision.targets],
            strategy=decision.strategy.value,
            link=decision.first_target,
            callback_url=request.callback_url,
            reference=request.reference,
            status=MessageStatus.QUEUED,
            created_at=now,
        )
        return Prepared(message, parts, encoding, decision)

    def _encode(
        self, request: MessageRequest, link: str, max_parts: int
    ) -> tuple[int, bytes, str, int]:
        concatenation = self.link_concatenation(link)
        try:
            if request.text is not None:
                # Encoded once; parts are counted on the octets, which split the same way
                # (escape and surrogate pairs kept whole) as the link will split them.
                data_coding, body = encode_text(request.text, request.encoding)
                parts = len(
                    split_bytes(body, data_coding, concatenation=concatenation, max_parts=max_parts)
                )
                return data_coding, body, _encoding_name(data_coding), parts
            if request.body is None:
                raise IntakeRefusal(
                    "missing_content",
                    "text",
                    "give either a text or a binary body",
                    400,
                    CommandStatus.ESME_RINVMSGLEN,
                )
            data_coding = request.data_coding if request.data_coding is not None else 4
            if request.esm_class & UDHI:
                if not part_fits_one_sms(request.body, data_coding):
                    raise IntakeRefusal(
                        "too_long",
                        "body",
                        "a part with its own UDH must fit one SMS (140 octets over the air)",
                        400,
                        CommandStatus.ESME_RINVMSGLEN,
                    )
                return data_coding, request.body, _encoding_name(data_coding), 1
            parts = len(
                split_bytes(
                    request.body, data_coding, concatenation=concatenation, max_parts=max_parts
                )
            )
            return data_coding, request.body, _encoding_name(data_coding), parts
        except TextEncodingError as exc:
            raise IntakeRefusal(
                "unencodable_text", "text", str(exc), 422, CommandStatus.ESME_RSUBMITFAIL
            ) from None
        except TooManyParts as exc:
            raise IntakeRefusal(
                "too_many_parts",
                "text",
                f"the message needs {exc.parts_needed} parts; at most {exc.max_parts} are allowed",
                422,
                CommandStatus.ESME_RINVMSGLEN,
            ) from None

    async def accept(
        self, requests: Sequence[MessageRequest], *, count_refused: bool = True
    ) -> list[Prepared]:
        """Check, store durably, then queue. All or nothing: the first refusal raises and
        nothing of the batch is stored. Returns once the messages are durable.

        A batch that would take a link's or route's backlog past its limit is refused for now
        (`backlog_full`); `count_refused=False` leaves that refusal out of the backlog's counts,
        for a caller that will offer the requests again one by one."""
        try:
            prepared = [self.prepare(request) for request in requests]
        except IntakeRefusal as refusal:
            if count_refused:
                if refusal.count is not None:
                    refusal.count()
                self.stats.count_refused(requests[0].channel, refusal.code, len(requests))
            raise
        messages = [item.message for item in prepared]
        backlog = self.backlog
        if backlog is None:
            await self._store(messages)
            for message in messages:
                self.dispatch.enqueue(message)
            self.stats.count_accepted(prepared)
            return prepared
        admitted = backlog.admit(messages)
        if isinstance(admitted, BacklogFull):
            if count_refused:
                backlog.count_refused(admitted, len(messages))
                self.stats.count_refused(requests[0].channel, BACKLOG_FULL, len(messages))
            raise IntakeRefusal(
                BACKLOG_FULL,
                "to",
                admitted.reason(),
                HTTP_STATUS,
                SMPP_STATUS,
                retry_after=backlog.limits.retry_after,
            )
        try:
            await self._store(messages)
            for message in messages:
                self.dispatch.enqueue(message)
        finally:  # queued now, and counted by the queue; or never stored
            backlog.release(admitted)
        self.stats.count_accepted(prepared)
        return prepared

    async def _store(self, messages: list[Message]) -> None:
        """Store durably: the accept commit, timed when stage times are recorded."""
        stages = recording()
        if stages is None:
            await self.store.accept(messages)
            return
        started = stage_clock()
        await self.store.accept(messages)
        stages.observe("accept_commit", stage_clock() - started, len(messages))


def part_fits_one_sms(short_message: bytes, data_coding: int) -> bool:
    """A part that carries its own UDH fits one SMS: 140 octets on the air interface.

    With the default alphabet (data_coding 0) SMPP carries one septet per octet, and the air
    interface packs them after the UDH and its fill bits: 6 UDH octets leave room for 153
    septets, so such a part is 159 octets on the SMPP wire. Other codings go as they are.
    """
    if not short_message:
        return True
    if data_coding != 0:
        return len(short_message) <= 140
    header_octets = short_message[0] + 1
    if header_octets > len(short_message):
        return False
    header_bits = header_octets * 8
    fill_bits = (7 - header_bits % 7) % 7
    septets = len(short_message) - header_octets
    return header_bits + fill_bits + septets * 7 <= 140 * 8


def _encoding_name(data_coding: int) -> str:
    return {0: "gsm7", 1: "gsm7", 3: "latin1", 4: "binary", 8: "ucs2"}.get(data_coding, "binary")
