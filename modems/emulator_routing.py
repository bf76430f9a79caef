"""Routed messages waiting for the host's acknowledgement, the modem emulator's side of
TS 27.005 3.4.4.

With +CSMS service 1, each +CMT/+CDS the modem shows waits for the host's +CNMA and the next
one is held back until then. An RP-ACK ends it; an RP-ERROR, or no answer within the ack
timeout, has the "network" offer it again after the redelivery delay. `RoutedQueue` keeps that
queue, its answers and its clocks; `modems.emulator.EmulatedModem` decides what to show and
shows it. Sans-IO: `now` is passed in, and an offer made without one (a reset, an injection
between calls) starts its clock at the next `now`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass(slots=True)
class Routed:
    """A +CMT or +CDS given to the host with service 1: it waits for +CNMA."""

    kind: str  # "+CMT" or "+CDS"
    tpdu: bytes
    deadline: float | None = None  # None: shown, its clock starts at the next `now`


@dataclass(slots=True)
class Acknowledgement:
    """One +CNMA the host sent, for tests to look at: which message, RP-ACK or RP-ERROR, and
    the SMS-DELIVER-REPORT's TP-FCS when an RP-ERROR carried one."""

    routed: Routed
    accepted: bool
    failure_cause: int | None = None


@dataclass(slots=True)
class RoutedQueue:
    """The routed message shown and waiting for +CNMA, those held back behind it, and those the
    network will offer again (at a time, or None: at the next `now` plus the delay)."""

    awaiting: Routed | None = None
    held_back: deque[Routed] = field(default_factory=deque)
    redeliveries: list[tuple[float | None, Routed]] = field(default_factory=list)
    acknowledgements: list[Acknowledgement] = field(default_factory=list)
    ack_timeouts: int = 0  # routed messages the host did not answer in time
    redelivered: int = 0  # offers after an RP-ERROR or a timeout

    def clocks_to_start(self) -> bool:
        """Something was shown or offered again between calls: its clock waits for a `now`."""
        awaiting = self.awaiting
        pending = awaiting is not None and awaiting.deadline is None
        return pending or any(at is None for at, _ in self.redeliveries)

    def start_clocks(self, now: float, ack_timeout: float, redelivery_delay: float) -> None:
        """Timers of what was shown or refused between calls (an injection has no `now`)."""
        if self.awaiting is not None and self.awaiting.deadline is None:
            self.awaiting.deadline = now + ack_timeout
        if any(at is None for at, _ in self.redeliveries):
            self.redeliveries = [
                (now + redelivery_delay if at is None else at, r) for at, r in self.redeliveries
            ]

    def deadlines(self) -> list[float]:
        times = [at for at, _ in self.redeliveries if at is not None]
        if self.awaiting is not None and self.awaiting.deadline is not None:
            times.append(self.awaiting.deadline)
        return times

    def offer_again(self, routed: Routed, now: float | None, delay: float) -> None:
        at = now + delay if now is not None else None
        self.redeliveries.append((at, Routed(routed.kind, routed.tpdu)))

    def await_or_hold(self, routed: Routed) -> bool:
        """True: `routed` is shown now and waits for its +CNMA; False: held back behind the
        one that waits."""
        if self.awaiting is not None:
            self.held_back.append(routed)
            return False
        self.awaiting = routed
        return True

    def next_held(self) -> Routed | None:
        """The next message held back, once none waits for an answer."""
        if self.held_back and self.awaiting is None:
            return self.held_back.popleft()
        return None

    def answer(
        self, accepted: bool, failure_cause: int | None, now: float, redelivery_delay: float
    ) -> None:
        """The host's +CNMA for the message that waits: kept, and offered again if refused."""
        routed = self.awaiting
        assert routed is not None
        self.awaiting = None
        self.acknowledgements.append(Acknowledgement(routed, accepted, failure_cause))
        if not accepted:
            self.offer_again(routed, now, redelivery_delay)

    def time_out(self, now: float, redelivery_delay: float) -> bool:
        """True when the message that waits went unanswered past its deadline: an RP-ERROR
        to the network, which offers it again."""
        awaiting = self.awaiting
        if awaiting is None or awaiting.deadline is None or now < awaiting.deadline:
            return False
        self.ack_timeouts += 1
        self.awaiting = None
        self.offer_again(awaiting, now, redelivery_delay)
        return True

    def due_offers(self, now: float) -> list[Routed]:
        """The messages the network offers again now, counted."""
        offers = [routed for at, routed in self.redeliveries if at is not None and at <= now]
        self.redeliveries = [(at, r) for at, r in self.redeliveries if at is None or at > now]
        self.redelivered += len(offers)
        return offers

    def offer_all_again(self) -> None:
        """A reset: what was shown or held and never answered is offered again by the network."""
        for routed in ([self.awaiting] if self.awaiting else []) + list(self.held_back):
            self.offer_again(routed, None, 0.0)  # no `now`: its clock starts at the next one
        self.awaiting = None
        self.held_back.clear()
