"""One customer connection and the account it binds as: `CustomerConnection` (the socket side:
read pausing, the write buffer limit), `CustomerBind` (the SMPP side: its window of outstanding
requests, back-pressure, dropping a client that does not read, draining at shutdown) and
`AccountRuntime` (what the server keeps per account while running: its binds, outbox, tps and
reassembly).

Must never: decide a bind, read a submit or deliver anything itself; it asks its `BindHost`
(the server) for each of those.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter, deque
from collections.abc import Awaitable
from typing import Protocol, cast

from dlr.status import MessageStatus
from gateway.accounts import Account, TokenBucket
from gateway.smpp_server.settings import (
    RECEIVING_STATES,
    SYSTEM_ID,
    CustomerServerStats,
    ServerSettings,
    _Delivery,
)
from smpp.aio import RequestResult, SmppConnection, SmppHandler
from smpp.constants import CommandStatus
from smpp.pdu import Pdu
from smpp.reassembly import Reassembler
from smpp.session import Role, SessionConfig, response_to

log = logging.getLogger("tandem.smpp_server")


class BindHost(Protocol):
    """What a bind asks of the server it belongs to."""

    @property
    def stats(self) -> CustomerServerStats: ...

    @property
    def settings(self) -> ServerSettings: ...

    @property
    def session_config(self) -> SessionConfig: ...

    def decide_bind(self, bind: CustomerBind, request: Pdu) -> Awaitable[int]: ...

    def handle_request(
        self, bind: CustomerBind, runtime: AccountRuntime, request: Pdu
    ) -> RequestResult: ...

    def pump(self, runtime: AccountRuntime) -> None: ...


class AccountRuntime:
    """What the server keeps per account while running: binds, outbox, tps, reassembly."""

    def __init__(self, account: Account, settings: ServerSettings) -> None:
        self.account = account
        self.binds: list[CustomerBind] = []
        self.outbox: deque[_Delivery] = deque()
        self.reserved = 0  # outbox places held for MOs being stored (they come in after)
        # (message id, status) of the receipts queued or in flight
        # How many of each (message id, status) are queued or in flight: in "segment" report
        # mode several parts' receipts can share one.
        self.receipts_held: Counter[tuple[str, MessageStatus]] = Counter()
        self.mos_held: set[int] = set()  # ids of the MOs queued or in flight
        # Deliveries wait in the store: receipts for room in the outbox; on a cluster, receipts
        # and MOs that other nodes left owed.
        self.owed_in_store = False
        self.refilling = False
        self.next_receiver = 0
        tps = account.config.tps
        self.bucket = None if tps is None else TokenBucket(tps, max(tps, 1.0))
        self.submit_parts = Reassembler(
            settings.reassembly_timeout,
            settings.reassembly_max_pending,
            settings.reassembly_max_bytes,
        )
        self.held_seqnums: dict[tuple[object, int, int], set[int]] = {}

    @property
    def system_id(self) -> str:
        return self.account.system_id

    def receives(self) -> bool:
        """Whether any of the account's binds here takes deliveries (room or not)."""
        return any(bind.receives() for bind in self.binds)

    def receiving_bind(self) -> CustomerBind | None:
        """The next receiving bind with room, round robin; None when none can take one now."""
        count = len(self.binds)
        for step in range(count):
            index = (self.next_receiver + step) % count
            bind = self.binds[index]
            if bind.can_deliver():
                self.next_receiver = index + 1
                return bind
        return None

    def take_account(self, account: Account) -> None:
        """A reload changed the account: its binds keep running with the new limits."""
        self.account = account
        tps = account.config.tps
        if tps is None:
            self.bucket = None
        elif self.bucket is None or self.bucket.rate != tps:
            self.bucket = TokenBucket(tps, max(tps, 1.0))
        for bind in self.binds:
            bind.window = account.config.window


class CustomerConnection(SmppConnection):
    """SmppConnection plus what isolation needs: read pausing and the write buffer limit."""

    def __init__(self, server: BindHost, handler: CustomerBind) -> None:
        super().__init__(Role.SERVER, handler, server.session_config, SYSTEM_ID)
        self.bind_handler = handler
        self.transport: asyncio.Transport | None = None
        self.peer_address = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses but have the same methods.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer_address = str(peer[0]) if peer else ""
        settings = self.bind_handler.server.settings
        self.transport.set_write_buffer_limits(high=settings.write_buffer_high)
        super().connection_made(transport)

    def pause_writing(self) -> None:
        self.bind_handler.set_write_paused(True)

    def resume_writing(self) -> None:
        self.bind_handler.set_write_paused(False)

    def set_reading(self, reading: bool) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if reading:
            transport.resume_reading()
        else:
            transport.pause_reading()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class CustomerBind(SmppHandler):
    """One customer connection: bind decision, requests, back-pressure."""

    def __init__(self, server: BindHost) -> None:
        self.server = server
        self.connection: CustomerConnection | None = None
        self.runtime: AccountRuntime | None = None
        self.kind = ""
        self.in_flight = 0  # requests read and not yet answered
        self.delivering = 0  # our deliver_sm awaiting deliver_sm_resp
        self.window = 1
        self._paused_for_window = False
        self._write_paused = False
        self._draining = False  # the server is stopping: no more requests are read
        self._closing = False  # ... and the unbind follows: none is taken any more
        self._all_answered: asyncio.Event | None = None
        self._stall_timer: asyncio.TimerHandle | None = None

    # -- SmppHandler -------------------------------------------------------------------------

    def connection_made(self, connection: SmppConnection) -> None:
        assert isinstance(connection, CustomerConnection)
        self.connection = connection
        self.server.stats.connections += 1

    def connection_lost(self, reason: str | None) -> None:
        if self._stall_timer is not None:
            self._stall_timer.cancel()
        runtime, self.runtime = self.runtime, None
        if runtime is not None:
            with contextlib.suppress(ValueError):
                runtime.binds.remove(self)
            log.info(
                "%s unbound (%s) from %s: %s",
                runtime.system_id,
                self.kind,
                self.address,
                reason or "closed",
            )

    def bind_requested(self, request: Pdu) -> int | Awaitable[int]:
        return self.server.decide_bind(self, request)

    def request_received(self, request: Pdu) -> RequestResult:
        runtime = self.runtime
        if runtime is None:  # the session only lets bound peers through; belt and braces
            return response_to(request, command_status=CommandStatus.ESME_RINVBNDSTS)
        if self._closing:
            return response_to(request, command_status=CommandStatus.ESME_RX_T_APPN)
        if self.in_flight >= self.window:
            # More outstanding than its window allows: it ignored the window it was given.
            self.server.stats.throttled += 1
            return response_to(request, command_status=CommandStatus.ESME_RTHROTTLED)
        result = self.server.handle_request(self, runtime, request)
        if isinstance(result, Pdu):
            return result
        self.in_flight += 1
        if self.in_flight >= self.window and not self._paused_for_window:
            self._paused_for_window = True
            self._update_reading()
        if result is None:
            return None  # answered through `answer` (a batch of submits, once stored)
        # A future, not a coroutine: no task per request. This callback is registered before
        # smpp.aio's, so the count drops before the answer is written.
        pending = asyncio.ensure_future(result)
        pending.add_done_callback(self._answered)
        return pending

    def answer(self, response: Pdu) -> None:
        """Answer a request `handle_request` took to answer later (it returned None): written
        with the other answers of this turn, no future or callback per request."""
        self._answered(None)
        if self.connection is not None:
            self.connection.respond(response)

    def _answered(self, _: asyncio.Future[Pdu] | None) -> None:
        self.in_flight -= 1
        if self._paused_for_window and self.in_flight < self.window:
            self._paused_for_window = False
            self._update_reading()
        if self.in_flight == 0 and self._all_answered is not None:
            self._all_answered.set()

    async def drain(self, seconds: float) -> None:
        """Stop reading requests and wait, at most `seconds`, until every request read has
        its answer (each submit stored and acknowledged); reading resumes after, for the
        unbind's answer."""
        self._draining = True
        self._update_reading()
        if self.in_flight:
            self._all_answered = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_answered.wait(), seconds)
        # Requests still in the last read's buffer, or sent after it: refused (not stored), as
        # their answers could not reach the customer once the unbind is on its way.
        self._closing = True
        self._draining = False
        self._update_reading()

    # -- back-pressure -----------------------------------------------------------------------

    @property
    def address(self) -> str:
        return "" if self.connection is None else self.connection.peer_address

    def set_write_paused(self, paused: bool) -> None:
        self._write_paused = paused
        loop = asyncio.get_running_loop()
        if paused and self._stall_timer is None:
            self._stall_timer = loop.call_later(
                self.server.settings.write_stall_timeout, self._drop_slow_reader
            )
        elif not paused and self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None
        self._update_reading()
        if not paused and self.runtime is not None:
            self.server.pump(self.runtime)

    def _drop_slow_reader(self) -> None:
        self._stall_timer = None
        if self.connection is not None and self._write_paused:
            self.server.stats.dropped_slow_readers += 1
            log.warning(
                "dropping %s from %s: it has not read its socket for %.0f s",
                self.runtime.system_id if self.runtime else "an unbound client",
                self.address,
                self.server.settings.write_stall_timeout,
            )
            self.connection.abort()

    def _update_reading(self) -> None:
        if self.connection is not None:
            self.connection.set_reading(
                not (self._paused_for_window or self._write_paused or self._draining)
            )

    def receives(self) -> bool:
        connection = self.connection
        return connection is not None and connection.state in RECEIVING_STATES

    def can_deliver(self) -> bool:
        connection = self.connection
        return (
            connection is not None
            and not self._write_paused
            and connection.state in RECEIVING_STATES
            and connection.session.window_free > 0
            and self.delivering < self.window
        )
