"""asyncio adapter for `smpp.session`: sockets, timers and futures around the sans-IO Session.

Owns: one `asyncio.Protocol` per connection (`SmppConnection`) that feeds bytes and loop time
into a Session, writes what it queues, keeps one timer armed at `next_deadline()`, and turns
responses into futures; `SmppClient` (connect, bind, submit with window back-pressure, unbind)
and `serve_smpp` (a listening server whose per-connection `SmppHandler` decides binds and answers
requests, and may push requests such as deliver_sm).

Must never: decide protocol questions (which PDU is allowed, which status to answer, when to
send enquire_link): that is the Session's job. No reconnect or backoff here: the gateway's link
layer owns those.
"""

from __future__ import annotations

import asyncio
import logging
import math
import ssl as ssl_module
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, cast

from smpp.constants import CommandStatus
from smpp.pdu import BindReceiver, BindTransceiver, BindTransmitter, Pdu
from smpp.session import (
    BOUND_STATES,
    OUTSIDE_WINDOW,
    WITHOUT_RESPONSE,
    BindRequested,
    Event,
    OutbindReceived,
    RequestReceived,
    RequestTimedOut,
    ResponseReceived,
    Role,
    Session,
    SessionConfig,
    SessionState,
    ShouldClose,
    StateForbidsError,
    Unbound,
    response_to,
)

log = logging.getLogger(__name__)

BIND_KINDS: dict[str, type[BindTransmitter | BindReceiver | BindTransceiver]] = {
    "transmitter": BindTransmitter,
    "receiver": BindReceiver,
    "transceiver": BindTransceiver,
}

RequestResult = Pdu | Awaitable[Pdu] | None
"""A handler's answer to a request: the response now, later (awaitable), or None when the
application will call `SmppConnection.respond` itself."""


class SmppConnectionClosed(ConnectionError):
    """The connection closed before the request was answered."""


class BindError(Exception):
    """The SMSC refused the bind; `status` is its command_status."""

    def __init__(self, status: int) -> None:
        super().__init__(f"bind refused with command_status {status:#010x}")
        self.status = status


class SmppHandler:
    """What the application does with one connection's incoming traffic. Override what you need.

    The defaults refuse: a server built on them accepts no bind, and requests nobody handles are
    answered ESME_RINVCMDID rather than acknowledged and lost.
    """

    def connection_made(self, connection: SmppConnection) -> None:
        """Called once; keep `connection` to push requests (deliver_sm) or respond later."""

    def bind_requested(self, request: Pdu) -> int | Awaitable[int]:
        """Server role: return (or resolve to) ESME_ROK to accept, an error status to refuse."""
        return CommandStatus.ESME_RBINDFAIL

    def request_received(self, request: Pdu) -> RequestResult:
        """Answer a request the session allowed (submit_sm, deliver_sm, data_sm, ...).

        alert_notification arrives here too; it has no response, so what is returned is ignored.
        """
        if request.command_id in WITHOUT_RESPONSE:
            return None
        return response_to(request, command_status=CommandStatus.ESME_RINVCMDID)

    def outbind_received(self, request: Pdu) -> Pdu | None:
        """Client role: the SMSC invites a bind on this connection (see `listen_for_outbind`).

        Return the bind_receiver to send (its response then arrives like any other), or None.
        """
        return None

    def connection_lost(self, reason: str | None) -> None:
        """The connection is gone; `reason` is None after a clean unbind or local close."""


class SmppConnection(asyncio.Protocol):
    """One SMPP connection, either role. Created by `SmppClient.connect` or `serve_smpp`."""

    def __init__(
        self,
        role: Role,
        handler: SmppHandler,
        config: SessionConfig | None = None,
        system_id: str = "",
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self.session = Session(role, config, self._loop.time())
        self.handler = handler
        self.system_id = system_id  # ours, sent in bind_resp (server role)
        self.close_reason: str | None = None
        self.closed: asyncio.Future[None] = self._loop.create_future()
        self._transport: asyncio.Transport | None = None
        self._waiters: dict[int, asyncio.Future[Pdu]] = {}
        self._slot_waiters: deque[asyncio.Future[None]] = deque()
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._unbound: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._flush_scheduled = False
        self._tasks: set[asyncio.Future[Any]] = set()
        self.connected: asyncio.Future[None] = self._loop.create_future()

    @property
    def state(self) -> SessionState:
        return self.session.state

    @property
    def peer_system_id(self) -> str | None:
        """The system_id the peer bound with (server role), once bound."""
        bind = self.session.bind_request
        return None if bind is None else str(getattr(bind, "system_id", ""))

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses but have the same methods.
        self._transport = cast(asyncio.Transport, transport)
        self.connected.set_result(None)
        self.handler.connection_made(self)
        self._after_io()

    def data_received(self, data: bytes) -> None:
        self._handle(self.session.receive_data(data, self._loop.time()))
        self._after_io()

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and self.close_reason is None:
            self.close_reason = str(exc) or type(exc).__name__
        self.session.close()
        self._transport = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        error = SmppConnectionClosed(self.close_reason or "connection closed")
        waiters, self._waiters = self._waiters, {}
        for future in waiters.values():
            if not future.done():
                future.set_exception(error)
        self._wake_slot_waiters(len(self._slot_waiters))
        self._wake_drain_waiters()
        if self._unbound is not None and not self._unbound.done():
            self._unbound.set_result(None)
        for task in self._tasks:
            task.cancel()
        if not self.closed.done():
            self.closed.set_result(None)
        self.handler.connection_lost(self.close_reason)

    # -- sending -----------------------------------------------------------------------------

    def send_request_nowait(self, pdu: Pdu, timeout: float | None = None) -> asyncio.Future[Pdu]:
        """Send now; the future resolves to the response PDU (whatever its command_status).

        Raises WindowFullError or StateForbidsError at once; the future fails with TimeoutError
        when no response comes in time, SmppConnectionClosed when the connection goes.
        """
        if self._transport is None:
            raise SmppConnectionClosed(self.close_reason or "not connected")
        seq = self.session.send_request(pdu, self._loop.time(), timeout)
        future: asyncio.Future[Pdu] = self._loop.create_future()
        if pdu.command_id in WITHOUT_RESPONSE:
            future.set_result(pdu)  # nothing will answer it: resolve to the request itself
        else:
            self._waiters[seq] = future
        self._schedule_flush()
        return future

    async def wait_for_window(self) -> None:
        """Return when the window has a free slot (back-pressure for pipelined senders)."""
        while self.session.window_free <= 0:
            if self._transport is None:
                raise SmppConnectionClosed(self.close_reason or "not connected")
            waiter: asyncio.Future[None] = self._loop.create_future()
            self._slot_waiters.append(waiter)
            await waiter

    async def request(self, pdu: Pdu, timeout: float | None = None) -> Pdu:
        """Send `pdu` once the window has room and return its response PDU."""
        if pdu.command_id not in OUTSIDE_WINDOW:
            await self.wait_for_window()
        return await self.send_request_nowait(pdu, timeout)

    def respond(self, response: Pdu) -> None:
        """Send the response to a request received earlier (when the handler returned None)."""
        if self._transport is None:
            return  # the peer is gone; nobody is left to read the answer
        self.session.send_response(response)
        self._schedule_flush()

    async def unbind(self) -> None:
        """Unbind gracefully, then close; returns when the connection is closed."""
        # Let answers to what was already sent arrive first, as SMPP 3.4 section 4.2 asks.
        while self.session.window_used and self._transport is not None:
            drained: asyncio.Future[None] = self._loop.create_future()
            self._drain_waiters.append(drained)
            await drained
        if self._transport is not None and self.session.state in BOUND_STATES:
            self._unbound = self._loop.create_future()
            self.session.unbind(self._loop.time())
            self._schedule_flush()
            await self._unbound
        self.close()
        await self.closed

    def close(self) -> None:
        """Close the connection after flushing what is queued; no unbind."""
        if self._transport is not None:
            self._flush()
            self._transport.close()

    # -- plumbing ----------------------------------------------------------------------------

    def _handle(self, events: list[Event]) -> None:
        freed = False
        waiters = self._waiters
        # Requests read after a response in the same pass wait for that response's callbacks,
        # which the loop runs on its next turn, so the application sees both in wire order (a
        # receipt never overtakes the submit_sm_resp written before it).
        deferred: list[Pdu] | None = None
        for event in events:
            if isinstance(event, ResponseReceived):
                future = waiters.pop(event.pdu.sequence_number, None)
                if future is not None and not future.done():
                    future.set_result(event.pdu)
                    deferred = []
                freed = True
            elif isinstance(event, RequestReceived):
                if deferred is None:
                    self._dispatch_request(event.pdu)
                else:
                    if not deferred:  # the first of a run: queued behind the callbacks so far
                        self._loop.call_soon(self._dispatch_deferred, deferred)
                    deferred.append(event.pdu)
            elif isinstance(event, RequestTimedOut):
                future = waiters.pop(event.request.sequence_number, None)
                if future is not None and not future.done():
                    future.set_exception(TimeoutError("no response in time"))
                freed = True
            elif isinstance(event, BindRequested):
                self._dispatch_bind(event.pdu)
            elif isinstance(event, OutbindReceived):
                self._answer_outbind(event.pdu)
            elif isinstance(event, Unbound):
                if self._unbound is not None and not self._unbound.done():
                    self._unbound.set_result(None)
                self.close()
            elif isinstance(event, ShouldClose):
                self.close_reason = event.reason
                log.warning("closing SMPP connection: %s", event.reason)
                self.close()
            else:
                log.debug("SMPP session event %r", event)
        if freed:
            if self._slot_waiters:
                self._wake_slot_waiters(self.session.window_free)
            if self._drain_waiters and not self.session.window_used:
                self._wake_drain_waiters()

    def _wake_drain_waiters(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _wake_slot_waiters(self, count: int) -> None:
        waiters = self._slot_waiters
        while count > 0 and waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                count -= 1

    def _answer_outbind(self, outbind: Pdu) -> None:
        try:
            bind = self.handler.outbind_received(outbind)
            if bind is not None:
                self.send_request_nowait(bind).add_done_callback(self._log_outbind_bind)
        except Exception:
            log.exception("answering outbind failed")

    @staticmethod
    def _log_outbind_bind(response: asyncio.Future[Pdu]) -> None:
        error = None if response.cancelled() else response.exception()
        if error is not None:
            log.warning("bind after outbind failed: %s", error)
        elif not response.cancelled() and response.result().command_status:
            log.warning("bind after outbind refused: %#x", response.result().command_status)

    def _dispatch_request(self, request: Pdu) -> None:
        try:
            result = self.handler.request_received(request)
        except Exception:
            log.exception("request handler failed for %r", request)
            result = None
            if request.command_id not in WITHOUT_RESPONSE:
                result = response_to(request, command_status=CommandStatus.ESME_RSYSERR)
        if result is None or request.command_id in WITHOUT_RESPONSE:
            return
        if isinstance(result, Pdu):
            self.session.send_response(result)  # flushed at the end of data_received
            return
        self._track(asyncio.ensure_future(result), request, self._respond_later)

    def _dispatch_deferred(self, requests: list[Pdu]) -> None:
        if self._transport is None:
            return  # gone meanwhile: unanswered, the peer offers them again
        for request in requests:
            self._dispatch_request(request)
        self._schedule_flush()

    def _respond_later(self, request: Pdu, future: asyncio.Future[Any]) -> None:
        if future.cancelled():
            return
        error = future.exception()
        if error is not None:
            log.error("request handler failed for %r", request, exc_info=error)
            self.respond(response_to(request, command_status=CommandStatus.ESME_RSYSERR))
        else:
            self.respond(future.result())

    def _dispatch_bind(self, request: Pdu) -> None:
        try:
            decision = self.handler.bind_requested(request)
        except Exception:
            log.exception("bind handler failed for %r", request)
            decision = CommandStatus.ESME_RBINDFAIL
        if isinstance(decision, int):
            self._decide_bind(decision)
        else:
            self._track(asyncio.ensure_future(decision), request, self._decide_bind_later)

    def _decide_bind_later(self, request: Pdu, future: asyncio.Future[Any]) -> None:
        if future.cancelled():
            return
        error = future.exception()
        if error is not None:
            log.error("bind handler failed for %r", request, exc_info=error)
        self._decide_bind(CommandStatus.ESME_RBINDFAIL if error is not None else future.result())
        self._after_io()

    def _decide_bind(self, status: int) -> None:
        if status == CommandStatus.ESME_ROK:
            self.session.accept_bind(system_id=self.system_id)
        else:
            self.session.reject_bind(status, system_id=self.system_id)

    def _track(
        self,
        future: asyncio.Future[Any],
        request: Pdu,
        then: Callable[[Pdu, asyncio.Future[Any]], None],
    ) -> None:
        self._tasks.add(future)

        def done(finished: asyncio.Future[Any]) -> None:
            self._tasks.discard(finished)
            then(request, finished)

        future.add_done_callback(done)

    def _schedule_flush(self) -> None:
        # Requests sent from application code in one loop iteration go out in one write.
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._after_io)

    def _flush(self) -> None:
        data = self.session.data_to_send()
        if data and self._transport is not None:
            self._transport.write(data)

    def _after_io(self) -> None:
        self._flush_scheduled = False
        self._flush()
        deadline = self.session.next_deadline()
        if deadline is None or deadline >= self._timer_at or self._transport is None:
            return  # a timer that fires early just finds nothing due and re-arms
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        # call_at may fire a hair before the deadline; never let that look like "not yet".
        now = max(self._loop.time(), self._timer_at)
        self._timer = None
        self._timer_at = math.inf
        self._handle(self.session.handle_timeout(now))
        self._after_io()


class _CallbackHandler(SmppHandler):
    def __init__(self, on_request: Callable[[Pdu], RequestResult] | None) -> None:
        self._on_request = on_request

    def request_received(self, request: Pdu) -> RequestResult:
        if self._on_request is None:  # nobody asked for deliveries: acknowledge them
            return None if request.command_id in WITHOUT_RESPONSE else response_to(request)
        return self._on_request(request)


class SmppClient:
    """The ESME side: connect, bind, submit with window back-pressure, unbind.

    `request_handler` answers what the SMSC sends (deliver_sm, data_sm): return the response,
    an awaitable of it, or None and call `connection.respond` later. Without one, incoming
    requests are acknowledged with ESME_ROK.
    """

    def __init__(
        self,
        config: SessionConfig | None = None,
        request_handler: Callable[[Pdu], RequestResult] | None = None,
        handler: SmppHandler | None = None,
    ) -> None:
        self.config = config
        self._handler = handler if handler is not None else _CallbackHandler(request_handler)
        self._connection: SmppConnection | None = None

    @property
    def connection(self) -> SmppConnection:
        if self._connection is None:
            raise SmppConnectionClosed("not connected")
        return self._connection

    @property
    def closed(self) -> asyncio.Future[None]:
        return self.connection.closed

    @property
    def state(self) -> SessionState:
        return self.connection.state

    async def connect(
        self, host: str, port: int, *, ssl: ssl_module.SSLContext | None = None
    ) -> None:
        self._connection = await open_smpp_connection(
            Role.CLIENT, self._handler, host, port, ssl=ssl, config=self.config
        )

    async def bind(
        self,
        kind: str,
        system_id: str,
        password: str,
        system_type: str = "",
        *,
        interface_version: int = 0x34,
        addr_ton: int = 0,
        addr_npi: int = 0,
        address_range: str = "",
    ) -> Pdu:
        """Bind as "transmitter", "receiver" or "transceiver"; returns the bind response.

        Raises BindError with the SMSC's status when refused.
        """
        bind = BIND_KINDS[kind](
            system_id=system_id,
            password=password,
            system_type=system_type,
            interface_version=interface_version,
            addr_ton=addr_ton,
            addr_npi=addr_npi,
            address_range=address_range,
        )
        response = await self.connection.request(bind)
        if response.command_status != CommandStatus.ESME_ROK:
            raise BindError(response.command_status)
        return response

    async def submit(self, pdu: Pdu, timeout: float | None = None) -> Pdu:
        """Send any request (submit_sm, query_sm, data_sm...), waiting for a window slot first;
        returns the response PDU, whose command_status the caller checks."""
        return await self.connection.request(pdu, timeout)

    def send_request_nowait(self, pdu: Pdu, timeout: float | None = None) -> asyncio.Future[Pdu]:
        """Pipelining without waiting: raises WindowFullError when the window is full."""
        return self.connection.send_request_nowait(pdu, timeout)

    async def wait_for_window(self) -> None:
        await self.connection.wait_for_window()

    async def unbind(self) -> None:
        """Unbind and close; returns when the connection is closed."""
        await self.connection.unbind()

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()

    async def __aenter__(self) -> SmppClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._connection is None or self._connection.closed.done():
            return
        try:
            await asyncio.wait_for(self._connection.unbind(), self._unbind_wait())
        except (TimeoutError, SmppConnectionClosed, StateForbidsError):
            self._connection.close()

    def _unbind_wait(self) -> float:
        config = self.config if self.config is not None else SessionConfig()
        return config.response_timeout + 1.0


async def serve_smpp(
    handler_factory: Callable[[], SmppHandler],
    host: str | None,
    port: int,
    *,
    ssl: ssl_module.SSLContext | None = None,
    config: SessionConfig | None = None,
    system_id: str = "tandem",
) -> asyncio.Server:
    """Listen for ESMEs; each connection gets a fresh handler from `handler_factory`.

    `system_id` is this SMSC's name in bind responses. Close with `server.close()`.
    """
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: SmppConnection(Role.SERVER, handler_factory(), config, system_id),
        host,
        port,
        ssl=ssl,
    )


async def open_smpp_connection(
    role: Role,
    handler: SmppHandler,
    host: str,
    port: int,
    *,
    ssl: ssl_module.SSLContext | None = None,
    config: SessionConfig | None = None,
    system_id: str = "",
) -> SmppConnection:
    """Connect out in either role: the ESME's usual connection, or the SMSC's for outbind."""
    loop = asyncio.get_running_loop()
    _, connection = await loop.create_connection(
        lambda: SmppConnection(role, handler, config, system_id), host, port, ssl=ssl
    )
    await connection.connected  # uvloop may return before connection_made has run
    return connection


async def listen_for_outbind(
    handler_factory: Callable[[], SmppHandler],
    host: str | None,
    port: int,
    *,
    ssl: ssl_module.SSLContext | None = None,
    config: SessionConfig | None = None,
) -> asyncio.Server:
    """ESME side of outbind: accept SMSC connections as the client role. Each handler's
    `outbind_received` returns the bind_receiver to answer with."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: SmppConnection(Role.CLIENT, handler_factory(), config), host, port, ssl=ssl
    )
