"""The customer SMPP server's settings, counters and the small records its parts share: what is
queued for delivery (`_Delivery`), a submitted part held for reassembly (`_Held`), a refusal
with its SMPP status (`_Refused`), and `Spawn` (how the server's parts start work it waits for
when it stops). Plain data: no I/O, no server state.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from dlr.status import MessageStatus
from smpp.constants import CommandStatus
from smpp.pdu import BindReceiver, BindTransceiver, BindTransmitter, DeliverSm, Pdu
from smpp.session import SessionState

T = TypeVar("T")

SYSTEM_ID = "tandem"
BIND_KINDS: dict[type[Pdu], str] = {
    BindTransmitter: "transmitter",
    BindReceiver: "receiver",
    BindTransceiver: "transceiver",
}
RECEIVING_STATES = frozenset({SessionState.BOUND_RX, SessionState.BOUND_TRX})
# deliver_sm_resp statuses that mean "try again later"; any other error drops the delivery.
TEMPORARY_DELIVERY_ERRORS = frozenset(
    {
        CommandStatus.ESME_RTHROTTLED,
        CommandStatus.ESME_RMSGQFUL,
        CommandStatus.ESME_RX_T_APPN,
        CommandStatus.ESME_RSYSERR,
    }
)
TICK_SECONDS = 0.2
ACCOUNTS_RELOAD_SECONDS = 2.0
# A cluster: how often a node with receiving binds looks for receipts other nodes left owed.
OWED_CHECK_SECONDS = 1.0


@dataclass(slots=True, frozen=True)
class ServerSettings:
    """Knobs of the customer server that are not per account. Times are seconds."""

    bind_timeout: float = 10.0  # a connection that has not bound by then is closed
    enquire_link_interval: float = 30.0  # probe a silent peer (half-open TCP)
    response_timeout: float = 30.0  # for our deliver_sm and enquire_link
    max_pdu_length: int = 65536
    write_buffer_high: int = 256 * 1024  # pause reading a bind whose output backs up
    write_stall_timeout: float = 30.0  # drop a bind that reads nothing for this long
    reassembly_timeout: float = (
        10.0  # parts of a submit must all arrive within this (MOs: [inbound])
    )
    reassembly_max_pending: int = 1000  # per account
    reassembly_max_bytes: int = 1 << 20  # per account
    delivery_retry_initial: float = 1.0
    delivery_retry_max: float = 60.0
    max_deliver_window: int = 100  # our own deliver_sm in flight per bind
    forget_expired_interval: float = 600.0  # how often receipts owed past their ttl are cleared
    # Password checks: a bind whose check would wait longer than this is refused at once (the
    # client retries; it would otherwise time out after using a check), as is one beyond
    # bind_checks_pending queued or running, or beyond bind_checks_per_address for its address.
    bind_check_wait: float = 5.0
    bind_checks_pending: int = 256
    bind_checks_per_address: int = 8
    credential_cache_seconds: float = 3600.0  # a verified system_id+password binds unchecked


@dataclass(slots=True)
class CustomerServerStats:
    """Counters a sysadmin graphs."""

    connections: int = 0
    binds: int = 0
    bind_failures: int = 0
    bind_refused_banned: int = 0
    bind_refused_network: int = 0
    bind_refused_busy: int = 0  # refused at once: the password checks were at their bound
    binds_cached: int = 0  # credentials verified recently: bound without a check
    submits_accepted: int = 0
    submits_refused: int = 0
    throttled: int = 0
    receipts_queued: int = 0
    mo_queued: int = 0
    mo_refused_full: int = 0  # answered "try later" to the carrier: the outbox was at its bound
    delivered: int = 0
    delivery_retries: int = 0
    delivery_failed: int = 0  # permanent deliver_sm_resp errors: dropped and recorded
    delivery_expired: int = 0
    delivery_dropped_full: int = 0
    receipts_deferred: int = 0  # left owed in the store while the outbox was full
    receipts_refilled: int = 0  # taken from the store into the outbox since
    mos_refilled: int = 0  # a cluster: MOs other nodes kept, taken into the outbox
    dropped_slow_readers: int = 0


class _Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


@dataclass(slots=True)
class _Delivery:
    """A deliver_sm waiting for (or on its way to) a receiving bind. What the store keeps of it
    (`receipt` or `mo_id`) is settled once it is taken, refused for good, or expires."""

    pdu: DeliverSm
    kind: str  # "receipt" | "mo"
    expires_at: float  # loop clock (time.monotonic)
    not_before: float = 0.0
    attempts: int = 0
    receipt: tuple[str, MessageStatus] | None = None  # the owed receipt: (message id, status)
    mo_id: int | None = None  # its row in the store's MO outbox


@dataclass(slots=True)
class _Held:
    """A submitted part kept until its message is complete (reassembly)."""

    pdu: Pdu
    future: asyncio.Future[Pdu]


class Spawn(Protocol):
    """Runs `work` as a task the server awaits when it stops."""

    def __call__(self, work: Awaitable[T], /) -> asyncio.Future[T]: ...
