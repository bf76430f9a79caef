"""What every outbound link is and how it talks to the daemon: the contracts, no behaviour.

Owns: `Link` (what the daemon starts, stops and reads state from; an SMPP carrier link today, a
GSM modem link later), `MessageSource` (where a link pulls messages from: the send queue),
`LinkSink` (how a link reports outcomes, receipts, MOs and state changes; the daemon implements
it), and the small value types they exchange.

Must never: hold sending logic, touch the store, or know a protocol. Outcomes travel one way:
link -> sink. A link never decides a message's final status; it reports what the carrier said.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Protocol

from dlr.receipt import DeliveryReceipt
from gateway.messages import Message
from smpp.constants import CommandStatus
from smpp.pdu import DataSm, DeliverSm


class LinkState(enum.StrEnum):
    STARTING = "starting"  # started, no session usable yet
    UP = "up"  # at least one session is bound
    DOWN = "down"  # sessions lost; reconnecting with backoff
    STOPPED = "stopped"


@dataclass(slots=True, frozen=True)
class SubmittedSegment:
    """One part the carrier accepted: `carrier_id` is canonical (dlr.ids), `raw_id` as sent."""

    index: int  # 0-based, as gateway.messages.Segment.index
    total: int
    carrier_id: str
    raw_id: str


@dataclass(slots=True, frozen=True)
class SendFailure:
    """Why a message did not go (or not entirely): `status` is the SMPP command_status when the
    carrier answered one; `submitted` lists the parts it did accept before the failure."""

    reason: str
    status: int | None = None
    submitted: tuple[SubmittedSegment, ...] = ()


class MessageSource(Protocol):
    """Where a link takes its next message (gateway.queue.AsyncSendQueue)."""

    async def get(self, link: str) -> Message: ...


# A sink method may do its work at once (return None) or return an awaitable the link awaits:
# e.g. receipts are answered (deliver_sm_resp) only once the awaitable is done, so a receipt is
# acknowledged to the carrier only after the daemon has recorded it.
SinkResult = Awaitable[None] | None


class TemporarilyRefused(Exception):
    """A sink (or the awaitable it returned) cannot take this now and the sender should offer
    it again later (an outbox at its bound, say): the link answers with `status` and logs one
    line, no traceback."""

    def __init__(self, reason: str, status: int = CommandStatus.ESME_RX_T_APPN) -> None:
        super().__init__(reason)
        self.status = status


class LinkSink(Protocol):
    """Outcomes reported by links; implemented by the daemon (gateway.app)."""

    def on_submitted(
        self, link: str, message: Message, segments: Sequence[SubmittedSegment]
    ) -> SinkResult:
        """Every part was accepted (submit_sm_resp OK); the segments are in index order."""

    def on_temporary_failure(self, link: str, message: Message, failure: SendFailure) -> SinkResult:
        """Not sent, try again later (connection lost with the message in flight, response
        timeout, ESME_RSYSERR, throttling that did not clear): requeue with backoff."""

    def on_permanent_failure(self, link: str, message: Message, failure: SendFailure) -> SinkResult:
        """The carrier refused the message (status recorded) or it cannot be encoded/split."""

    def on_receipt(
        self,
        link: str,
        pdu: DeliverSm | DataSm,
        receipt: DeliveryReceipt | None,
        carrier_id: str | None,
    ) -> SinkResult:
        """A delivery receipt; `carrier_id` is canonical under the link's receipt id format.
        `receipt` and `carrier_id` are None when the receipt could not be read."""

    def on_mo(self, link: str, pdu: DeliverSm | DataSm) -> SinkResult:
        """A mobile-originated message (or one part of it). Answered once the awaitable is done:
        whoever claimed the MO has kept it durably by then."""

    def on_link_state(self, link: str, state: LinkState) -> None:
        """The link went up or down; routing reads `Link.state`/`throttle_level` at any time."""


class Link(Protocol):
    """An outbound link as the daemon sees it."""

    @property
    def name(self) -> str: ...

    @property
    def state(self) -> LinkState: ...

    @property
    def throttle_level(self) -> float:
        """0.0 (not throttled) .. 1.0 (the carrier throttles everything; routing may skip)."""
        ...

    async def start(self) -> None:
        """Begin connecting and sending; returns at once (sessions come up in the background)."""

    async def stop(self) -> None:
        """Stop taking messages, let what is in flight finish (bounded), unbind, and hand every
        message still held back through `on_temporary_failure`."""
