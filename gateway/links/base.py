"""What every outbound link is and how it talks to the daemon: the contracts, no behaviour.

Owns: `Link` (what the daemon starts, stops and reads state from: an SMPP carrier link, a GSM
modem link), `LinkCapabilities` (what a link can carry, read by intake and the receipt sweep),
`MessageSource` (where a link pulls messages from: the send queue), `LinkSink` (how a link
reports outcomes, receipts, MOs and state changes; the daemon implements it), and the small
value types they exchange.

Must never: hold sending logic, touch the store, or know a protocol. Outcomes travel one way:
link -> sink. A link never decides a message's final status; it reports what the carrier said,
in the daemon's own terms (`ReceiptReport`, the status model of `dlr.status`), so the daemon
treats every kind of link alike.

Correlation keys: a link names every part it got accepted with a key (`SubmittedSegment.
carrier_id`) and names the same key in the receipt for that part (`ReceiptReport.key`). The key
only has to be unique per link for as long as receipts for it may come; when it is reused, the
part submitted last under it gets the receipt. An SMPP link uses the carrier's message id
(canonical, `dlr.ids`); a modem link its TP-MR, which wraps at 256, narrowed by the recipient.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Protocol

from dlr.status import SegmentStatus
from gateway.inbound.model import InboundPart
from gateway.messages import Message
from smpp.constants import CommandStatus
from smpp.segmentation import Concatenation


class LinkState(enum.StrEnum):
    STARTING = "starting"  # started, no session usable yet
    UP = "up"  # at least one session is bound
    DOWN = "down"  # sessions lost; reconnecting with backoff
    # Connected, but it sends nothing more today (a SIM at its daily cap): routed around, and
    # what waits for it moves to its routes' other targets, as for a link that is down.
    CAPPED = "capped"
    STOPPED = "stopped"


@dataclass(slots=True, frozen=True)
class LinkCapabilities:
    """What a link can carry, as intake splits messages for it and the sweep waits for its
    receipts. `dlr_timeout` None: the `[dlr]` section's."""

    max_parts: int = 10
    concatenation: Concatenation = Concatenation.UDH8
    dlr_timeout: float | None = None


@dataclass(slots=True, frozen=True)
class SubmittedSegment:
    """One part the carrier accepted: `carrier_id` is the link's correlation key for it (see
    the module docstring; SMPP: canonical, dlr.ids), `raw_id` as the carrier gave it."""

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
    # The link did not try it at all (its SIM reached its daily cap after the message was
    # handed over): queue it on another target at once; it costs no attempt.
    not_attempted: bool = False


class ReceiptReport:
    """A carrier's word on one submitted part, in the daemon's terms.

    `key` is the correlation key the link gave the part (`SubmittedSegment.carrier_id`);
    `status` is in the one status model (temporary states such as ENROUTE stay intermediate);
    `detail`, `error` and `network_error` keep the carrier's own words for the history. An
    unreadable receipt has `key` or `status` None and says what came in `evidence`.
    A value: never mutate one (a plain slotted class: frozen dataclass init is slow, and every
    receipt of a busy SMPP link makes one).
    """

    __slots__ = ("detail", "error", "evidence", "key", "network_error", "status")

    def __init__(
        self,
        key: str | None,
        status: SegmentStatus | None,
        detail: str = "",
        error: str | None = None,
        network_error: str | None = None,
        evidence: str = "",
    ) -> None:
        self.key = key
        self.status = status
        self.detail = detail
        self.error = error
        self.network_error = network_error
        self.evidence = evidence

    @property
    def readable(self) -> bool:
        return self.key is not None and self.status is not None

    def __repr__(self) -> str:
        return (
            f"ReceiptReport(key={self.key!r}, status={self.status!r}, detail={self.detail!r}, "
            f"error={self.error!r}, network_error={self.network_error!r})"
        )


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

    def on_receipt(self, link: str, report: ReceiptReport) -> SinkResult:
        """A delivery receipt (SMPP deliver_sm, a modem's SMS-STATUS-REPORT), for the part the
        link submitted under `report.key`. Answered once the awaitable is done."""

    def on_mo(self, link: str, part: InboundPart) -> SinkResult:
        """A mobile-originated message or one part of it, converted by the link into the
        link-neutral model (gateway.inbound.model). Answered once the awaitable is done: the MO
        is kept durably by then."""

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

    @property
    def capabilities(self) -> LinkCapabilities:
        """What the link can carry (read for every message routed to it: keep it cheap)."""
        ...

    async def start(self) -> None:
        """Begin connecting and sending; returns at once (sessions come up in the background)."""

    async def stop(self) -> None:
        """Stop taking messages, let what is in flight finish (bounded), unbind, and hand every
        message still held back through `on_temporary_failure`."""
