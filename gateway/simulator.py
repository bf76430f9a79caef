"""The built-in SMSC simulator: an SMPP server that behaves like a carrier, for tests and benches.

Owns: accepting binds (any, or one system_id/password), answering submit_sm and data_sm with
message ids (hex or decimal), the delivery receipts it sends back as deliver_sm (appendix B text
and the receipted_message_id/message_state TLVs; `receipt_mode` says when: after a delay on the
tick, with or without jitter, or in the same write as the submit_sm_resp, behind it or before
it), throttling a fraction of submits with ESME_RTHROTTLED, per-receipt outcome
policies, mobile-originated messages (injected in-process or generated periodically), and a record
of what it received (counters, an optional in-memory list, an optional one-line-per-submit file).
The records and the receipt text themselves are data in `gateway.simulator_records`.

Must never: be imported by the production send path (the daemon starts it only when
`[simulator] enabled`), or block: it is the peer of the throughput benchmarks. So one timer tick
sends every due receipt and checks every session deadline; there is no call_later per message.

Theory of operation: each connection is an `smpp.aio` server connection whose handler hands
submits to the simulator. Receipts and MOs go into one outbox per system_id (a FIFO: with a fixed
delay, due order is arrival order); each tick sends the due head of every outbox to a bound
receiving session of that system_id with room in its window, so receipts survive reconnects and
a slow client applies back-pressure instead of growing buffers without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import ssl
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from functools import partial
from typing import IO, Any

from dlr.status import SegmentStatus
from gateway.config import SimulatorConfig
from gateway.sim_journal import SimulatorJournal
from gateway.simulator_records import (
    DELIVERED,
    UNDELIVERABLE,
    IdText,
    OutcomePolicy,
    ReceiptOutcome,
    ReceivedSubmit,
    SubmitPolicy,
    build_receipt,
    concat_of,
)
from gateway.tasks import cancel_and_wait
from smpp.aio import SmppConnection, SmppConnectionClosed, SmppHandler, serve_smpp
from smpp.constants import (
    ESM_CLASS_DELIVERY_RECEIPT,
    REGISTERED_DELIVERY_RECEIPT_ALWAYS,
    REGISTERED_DELIVERY_RECEIPT_MASK,
    REGISTERED_DELIVERY_RECEIPT_ON_FAILURE,
    CommandStatus,
    Tag,
)
from smpp.pdu import DataSm, DeliverSm, Pdu, SubmitSm
from smpp.session import (
    BOUND_RX,
    BOUND_STATES,
    BOUND_TRX,
    SessionConfig,
    SessionError,
    response_to,
)
from smpp.text import encode_text

TICK_SECONDS = 0.01
SYSTEM_ID = "tandem-sim"
RETRY_RECEIPT_AFTER = 0.5  # a receipt the client refused or did not answer goes out again
# Receipts and MOs kept for a system_id no receiver has collected; the oldest go first.
MAX_PENDING_PER_SYSTEM_ID = 1_000_000

_SERVER_SESSION = SessionConfig(
    window=1000,  # receipts and MOs in flight towards one client
    response_timeout=10.0,
    enquire_link_interval=None,  # the client keeps the link alive; the SMSC only answers
    inactivity_timeout=None,
    bind_timeout=30.0,
)
_RECEIVING = frozenset({BOUND_RX, BOUND_TRX})
_RECEIPT_REQUESTS = frozenset(
    {REGISTERED_DELIVERY_RECEIPT_ALWAYS, REGISTERED_DELIVERY_RECEIPT_ON_FAILURE}
)


@dataclass(slots=True)
class SimulatorStats:
    connections: int = 0  # currently open
    connections_total: int = 0
    binds: int = 0
    binds_refused: int = 0
    # The most sessions bound at once (as a carrier counts an account's binds), this bind
    # included when it was granted.
    most_bound: int = 0
    submits: int = 0  # every submit_sm and data_sm received, answered or not
    accepted: int = 0
    throttled: int = 0
    refused: int = 0  # answered with another error status by the submit policy
    unanswered: int = 0  # received while `answer_submits` was off
    receipts_queued: int = 0
    receipts_sent: int = 0  # deliver_sm receipts answered OK by the client
    mo_sent: int = 0
    deliveries_retried: int = 0  # deliver_sm refused, timed out or cut off, queued again
    deliveries_dropped: int = 0  # oldest receipts/MOs dropped from a full outbox


@dataclass(slots=True)
class _Outgoing:
    """A receipt or MO waiting in an outbox."""

    due: float
    pdu: DeliverSm
    is_receipt: bool
    origin: _SmscConnection | None = None  # receipts prefer the session that submitted


@dataclass(slots=True)
class _Outbox:
    items: deque[_Outgoing] = field(default_factory=deque)


class SmscSimulator:
    """An SMSC on a TCP port. `await start()`, `await stop()`; also an async context manager.

    Behaviour follows `settings` (a `[simulator]` section) and may be changed while running by
    assigning its fields (e.g. `sim.settings.throttle_fraction = 0.05`) or `answer_submits`.
    """

    def __init__(
        self,
        settings: SimulatorConfig | None = None,
        *,
        submit_policy: SubmitPolicy | None = None,
        outcome_policy: OutcomePolicy | None = None,
        id_text: IdText | None = None,
        keep_received: bool = True,
        seed: int | None = None,
        tls: ssl.SSLContext | None = None,
        journal: SimulatorJournal | None = None,
    ) -> None:
        self.settings = settings if settings is not None else SimulatorConfig(enabled=True)
        self.submit_policy = submit_policy
        self.outcome_policy = outcome_policy
        self.id_text = id_text
        self.keep_received = keep_received
        self.answer_submits = True  # off: a hung SMSC that reads submits and never answers
        self.received: list[ReceivedSubmit] = []
        self.stats = SimulatorStats()
        self.port = self.settings.port
        self._tls = tls  # a server context: the simulator then speaks SMPP over TLS only
        self._random = random.Random(seed)
        # Ids grow from the start time in microseconds, so a restarted simulator never reuses one.
        self._next_id = time.time_ns() // 1000
        self._server: asyncio.Server | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._connections: set[_SmscConnection] = set()
        self._outboxes: dict[str, _Outbox] = {}
        self._record: IO[str] | None = None
        self._next_mo_at: float | None = None
        self._mo_counter = 0
        # What it received and the receipts it owes, kept across restarts (the daemon's).
        self.journal = journal

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await serve_smpp(
            lambda: _SmscConnection(self),
            self.settings.host,
            self.port,
            ssl=self._tls,
            config=_SERVER_SESSION,
            system_id=SYSTEM_ID,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        if self.journal is not None:
            self._queue_owed_receipts(self.journal)
        if self.settings.record_file is not None and self._record is None:
            self._record = open(self.settings.record_file, "a", encoding="utf-8")  # noqa: SIM115
        if self.settings.mo_interval is not None:
            self._next_mo_at = loop.time() + self.settings.mo_interval
        self._ticker = asyncio.create_task(self._tick_forever(), name="smsc-simulator-tick")

    async def stop(self) -> None:
        """Stop listening and drop every connection, as an SMSC that goes down would."""
        if self._ticker is not None:
            await cancel_and_wait(self._ticker)
            self._ticker = None
        if self._server is not None:
            self._server.close()
            self.disconnect_all()
            await self._server.wait_closed()
            self._server = None
        self.disconnect_all()
        if self._record is not None:
            self._record.close()
            self._record = None
        if self.journal is not None:
            self.journal.close()

    def _queue_owed_receipts(self, journal: SimulatorJournal) -> None:
        """The receipts an earlier run accepted submits for and was not answered for: due now."""
        now = self._now()
        for owed in journal.open():
            self.stats.receipts_queued += 1
            self._queue(owed.system_id, _Outgoing(now, owed.pdu, True, None))

    async def __aenter__(self) -> SmscSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    def disconnect_all(self) -> None:
        """Close every connection without an unbind (the client sees the TCP connection drop)."""
        for connection in list(self._connections):
            connection.close()

    @property
    def sessions_bound(self) -> int:
        """Sessions bound now."""
        return sum(1 for c in self._connections if c.bound)

    @property
    def bound_system_ids(self) -> list[str]:
        return sorted({c.system_id for c in self._connections if c.bound})

    def pending_deliveries(self) -> int:
        """Receipts and MOs queued and not yet handed to a session."""
        return sum(len(box.items) for box in self._outboxes.values())

    # -- mobile-originated -----------------------------------------------------------------

    def inject_mo(
        self,
        source_addr: str,
        destination_addr: str,
        text: str | None = None,
        *,
        short_message: bytes | None = None,
        data_coding: int = 0,
        system_id: str | None = None,
        tlvs: dict[int, object] | None = None,
        esm_class: int = 0,
    ) -> None:
        """Queue an MO deliver_sm for `system_id` (default: the first bound receiver's);
        `esm_class` 0x40 says `short_message` starts with a UDH (a part of several)."""
        if text is not None:
            data_coding, short_message = encode_text(text)
        target = system_id if system_id is not None else self._any_receiving_system_id()
        if target is None:
            raise RuntimeError("no receiving session is bound and no system_id was given")
        pdu = DeliverSm(
            source_addr_ton=1,
            source_addr_npi=1,
            source_addr=source_addr,
            dest_addr_ton=1,
            dest_addr_npi=1,
            destination_addr=destination_addr,
            esm_class=esm_class,
            data_coding=data_coding,
            short_message=short_message or b"",
            tlvs=dict(tlvs or {}),
        )
        self._queue(target, _Outgoing(self._now(), pdu, is_receipt=False))

    def inject_receipt(
        self,
        receipt_id: str,
        outcome: ReceiptOutcome = DELIVERED,
        *,
        system_id: str | None = None,
        destination_addr: str = "447700900000",
    ) -> None:
        """Queue a receipt for `receipt_id` as written, whether or not it was ever issued
        (duplicates, late or out-of-order receipts, receipts for ids nobody sent)."""
        target = system_id if system_id is not None else self._any_receiving_system_id()
        if target is None:
            raise RuntimeError("no receiving session is bound and no system_id was given")
        received = ReceivedSubmit(
            at=time.time(),
            system_id=target,
            operation="submit_sm",
            source_addr="",
            destination_addr=destination_addr,
            data_coding=0,
            esm_class=0,
            registered_delivery=REGISTERED_DELIVERY_RECEIPT_ALWAYS,
            payload=b"",
            tlvs={},
            message_id=receipt_id,
        )
        self.stats.receipts_queued += 1
        pdu = build_receipt(received, receipt_id, outcome)
        self._queue(target, _Outgoing(self._now(), pdu, is_receipt=True))

    def _any_receiving_system_id(self) -> str | None:
        for connection in self._connections:
            if connection.receiving:
                return connection.system_id
        return None

    # -- requests from clients -------------------------------------------------------------

    def _bind_decision(self, request: Pdu) -> int:
        settings = self.settings
        system_id = getattr(request, "system_id", "")
        if settings.system_id is not None and system_id != settings.system_id:
            return CommandStatus.ESME_RINVSYSID
        if settings.password is not None and getattr(request, "password", "") != settings.password:
            return CommandStatus.ESME_RINVPASWD
        return CommandStatus.ESME_ROK

    def _on_submit(self, connection: _SmscConnection, request: SubmitSm | DataSm) -> Pdu | None:
        stats = self.stats
        stats.submits += 1
        if isinstance(request, SubmitSm):
            payload = request.short_message
            operation = "submit_sm"
        else:
            payload = b""
            operation = "data_sm"
        if not payload:
            carried = request.tlvs.get(Tag.MESSAGE_PAYLOAD)
            if isinstance(carried, bytes):
                payload = carried
        received = ReceivedSubmit(
            at=time.time(),
            system_id=connection.system_id,
            operation=operation,
            source_addr=request.source_addr,
            destination_addr=request.destination_addr,
            data_coding=request.data_coding,
            esm_class=request.esm_class,
            registered_delivery=request.registered_delivery,
            payload=payload,
            tlvs=request.tlvs,
            concat=concat_of(request.esm_class, payload, request.tlvs),
        )
        settings = self.settings
        if not self.answer_submits:
            stats.unanswered += 1
            self._remember(received)
            return None
        if settings.throttle_fraction and self._random.random() < settings.throttle_fraction:
            stats.throttled += 1
            received.status = CommandStatus.ESME_RTHROTTLED
            self._remember(received)
            return response_to(request, command_status=received.status)
        if self.submit_policy is not None:
            received.status = self.submit_policy(received)
            if received.status:
                stats.refused += 1
                self._remember(received)
                return response_to(request, command_status=received.status)
        number = self._next_id
        self._next_id = number + 1
        received.message_id = (
            _format_id(number, settings.message_id_format)
            if self.id_text is None
            else self.id_text(number, "submit_sm_resp")
        )
        stats.accepted += 1
        self._remember(received)
        receipt = self._receipt_for(received, number)
        if self.journal is not None:
            self._journal_accepted(self.journal, received, receipt)
        response = response_to(request, message_id=received.message_id)
        if receipt is None:
            return response
        stats.receipts_queued += 1
        receipt.origin = connection
        mode = settings.receipt_mode
        if mode == "before-resp" and connection.send(receipt.pdu):
            return response  # queued on the session before the response the caller returns
        if mode == "same-write" and connection.connection is not None:
            # Both are flushed when this read is done: one write, the response first.
            connection.connection.respond(response)
            if not connection.send(receipt.pdu):
                self._queue(connection.system_id, receipt)  # window full: the tick sends it
            return None
        self._queue(connection.system_id, receipt)
        return response

    @staticmethod
    def _journal_accepted(
        journal: SimulatorJournal, received: ReceivedSubmit, receipt: _Outgoing | None
    ) -> None:
        receipt_id = None if receipt is None else receipt.pdu.tlvs.get(Tag.RECEIPTED_MESSAGE_ID)
        journal.accepted(
            at=received.at,
            system_id=received.system_id,
            message_id=received.message_id,
            source=received.source_addr,
            destination=received.destination_addr,
            text=received.text,
            receipt_id=receipt_id if isinstance(receipt_id, str) else None,
            receipt=None if receipt is None else receipt.pdu,
        )

    def _remember(self, received: ReceivedSubmit) -> None:
        if self.keep_received:
            self.received.append(received)
        if self._record is not None:
            self._record.write(received.record_line() + "\n")

    def _receipt_for(self, received: ReceivedSubmit, number: int) -> _Outgoing | None:
        wanted = received.registered_delivery & REGISTERED_DELIVERY_RECEIPT_MASK
        if wanted not in _RECEIPT_REQUESTS:
            return None  # 0: no receipt; 3 is reserved
        settings = self.settings
        if self.outcome_policy is not None:
            outcome = self.outcome_policy(received)
        elif (
            settings.undeliverable_fraction
            and self._random.random() < settings.undeliverable_fraction
        ):
            outcome = UNDELIVERABLE
        else:
            outcome = DELIVERED
        failed = outcome.status is not SegmentStatus.DELIVERED
        if wanted == REGISTERED_DELIVERY_RECEIPT_ON_FAILURE and not failed:
            return None
        if wanted not in (
            REGISTERED_DELIVERY_RECEIPT_ALWAYS,
            REGISTERED_DELIVERY_RECEIPT_ON_FAILURE,
        ):
            return None  # 3 is reserved
        receipt_id = (
            _format_id(number, settings.dlr_id_format)
            if self.id_text is None
            else self.id_text(number, "receipt")
        )
        pdu = build_receipt(received, receipt_id, outcome)
        due = self._now()
        if settings.receipt_mode == "timer":
            due += settings.dlr_delay
        elif settings.receipt_mode == "delayed":
            due += settings.dlr_delay + self._random.uniform(0.0, settings.dlr_jitter)
        return _Outgoing(due, pdu, True, None)

    # -- outboxes and the tick -------------------------------------------------------------

    def _queue(self, system_id: str, item: _Outgoing) -> None:
        box = self._outboxes.get(system_id)
        if box is None:
            box = self._outboxes[system_id] = _Outbox()
        items = box.items
        if len(items) >= MAX_PENDING_PER_SYSTEM_ID:
            items.popleft()  # nobody has collected these for a long time: bound the memory
            self.stats.deliveries_dropped += 1
        if not items or items[-1].due <= item.due:
            items.append(item)
            return
        # Due earlier than the tail (an injected receipt, a shorter dlr_delay set while running):
        # keep the outbox in due order, or the tick would wait behind a later item.
        position = len(items)
        while position and items[position - 1].due > item.due:
            position -= 1
        items.insert(position, item)

    def _delivery_done(
        self, connection: _SmscConnection, pdu: DeliverSm, future: asyncio.Future[Pdu]
    ) -> None:
        is_receipt = bool(pdu.esm_class & ESM_CLASS_DELIVERY_RECEIPT)
        if (
            not future.cancelled()
            and future.exception() is None
            and future.result().command_status == CommandStatus.ESME_ROK
        ):
            if is_receipt:
                self.stats.receipts_sent += 1
                receipt_id = pdu.tlvs.get(Tag.RECEIPTED_MESSAGE_ID)
                if self.journal is not None and isinstance(receipt_id, str):
                    self.journal.settled(receipt_id)
            else:
                self.stats.mo_sent += 1
            return
        # Refused, unanswered or cut off: an SMSC stores and retries.
        self.stats.deliveries_retried += 1
        retry_at = self._now() + RETRY_RECEIPT_AFTER
        self._queue(connection.system_id, _Outgoing(retry_at, pdu, is_receipt, None))

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            self.tick(self._now())

    def tick(self, now: float) -> None:
        """Send what is due: receipts and MOs, session timers, generated MOs; flush the record."""
        if self._outboxes:
            self._drain_outboxes(now)
        if self._next_mo_at is not None and now >= self._next_mo_at:
            self._generate_mo(now)
        if self._record is not None:
            self._record.flush()

    def _drain_outboxes(self, now: float) -> None:
        receivers: dict[str, list[_SmscConnection]] = {}
        for connection in self._connections:
            if connection.receiving:
                receivers.setdefault(connection.system_id, []).append(connection)
        for system_id, box in self._outboxes.items():
            candidates = receivers.get(system_id)
            items = box.items
            if not candidates or not items:
                continue
            while items and items[0].due <= now and candidates:
                item = items[0]
                origin = item.origin
                target = origin if origin is not None and origin in candidates else candidates[0]
                if not target.send(item.pdu):
                    candidates.remove(target)  # its window is full: try its siblings
                    continue
                items.popleft()

    def _generate_mo(self, now: float) -> None:
        interval = self.settings.mo_interval
        if interval is None:
            self._next_mo_at = None
            return
        self._next_mo_at = now + interval
        target = self._any_receiving_system_id()
        if target is None:
            return
        self._mo_counter += 1
        self.inject_mo(
            f"4477009{self._random.randrange(10**5):05d}",
            "12345",
            f"MO test {self._mo_counter}",
            system_id=target,
        )

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()


class _SmscConnection(SmppHandler):
    """One client connection, as the simulator sees it (driven by `smpp.aio`)."""

    def __init__(self, simulator: SmscSimulator) -> None:
        self.simulator = simulator
        self.connection: SmppConnection | None = None
        self.system_id = ""

    @property
    def bound(self) -> bool:
        return self.connection is not None and self.connection.state in BOUND_STATES

    @property
    def receiving(self) -> bool:
        return self.connection is not None and self.connection.state in _RECEIVING

    # -- smpp.aio.SmppHandler --------------------------------------------------------------

    def connection_made(self, connection: SmppConnection) -> None:
        self.connection = connection
        simulator = self.simulator
        simulator._connections.add(self)
        simulator.stats.connections += 1
        simulator.stats.connections_total += 1

    def connection_lost(self, reason: str | None) -> None:
        # Deliveries still in flight come back through their futures (SmppConnectionClosed).
        simulator = self.simulator
        if self in simulator._connections:
            simulator._connections.discard(self)
            simulator.stats.connections -= 1

    def bind_requested(self, request: Pdu) -> int:
        simulator = self.simulator
        status = simulator._bind_decision(request)
        if status == CommandStatus.ESME_ROK:
            simulator.stats.binds += 1
            stats = simulator.stats
            stats.most_bound = max(stats.most_bound, simulator.sessions_bound + 1)
            self.system_id = str(getattr(request, "system_id", ""))
        else:
            simulator.stats.binds_refused += 1
        return status

    def request_received(self, request: Pdu) -> Pdu | None:
        if isinstance(request, SubmitSm | DataSm):
            return self.simulator._on_submit(self, request)
        return response_to(request, command_status=CommandStatus.ESME_RINVCMDID)

    # -- used by the simulator -------------------------------------------------------------

    def send(self, pdu: DeliverSm) -> bool:
        """Push a deliver_sm now; False when the window is full or the session cannot."""
        connection = self.connection
        if connection is None or connection.session.window_free <= 0:
            return False
        try:
            future = connection.send_request_nowait(pdu)
        except (SessionError, SmppConnectionClosed):
            return False
        future.add_done_callback(partial(self.simulator._delivery_done, self, pdu))
        return True

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()


def _format_id(number: int, fmt: str) -> str:
    return f"{number:X}" if fmt == "hex" else str(number)


# --- standalone ---------------------------------------------------------------------------------


async def run_simulator(settings: SimulatorConfig) -> None:
    """`tandem sim smsc`: serve until SIGINT/SIGTERM, then print what was received."""
    simulator = SmscSimulator(settings, keep_received=False)
    await simulator.start()
    print(
        f"tandem: SMSC simulator listening on {settings.host}:{simulator.port}",
        file=sys.stderr,
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await simulator.stop()
        print(f"tandem: SMSC simulator stopped: {_stats_line(simulator.stats)}", file=sys.stderr)


def _stats_line(stats: SimulatorStats) -> str:
    fields: dict[str, Any] = {name: getattr(stats, name) for name in stats.__slots__}
    return " ".join(f"{name}={value}" for name, value in fields.items())
