"""The asyncio adapter between a serial port and a `ModemSession`.

Owns opening the port with `pyserial-asyncio-fast` (which opens it in an executor, so a hung USB
modem cannot stall the event loop that also runs the SMPP links), feeding what the modem writes
into the session, writing what the session has to say, running the session's timers with
`loop.call_at`, and turning the session's send results into awaitable outcomes.

Device names are anything pyserial's `serial_for_url` opens: `/dev/ttyUSB0`, a stable
`/dev/serial/by-id/...` link, `rfc2217://host:port` or `socket://host:port` for network modem
servers. Must never decide what a result means (the session and the gateway do) and never
retry a PIN (the session never does; a fatal stop is final here too).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Hashable, Sequence

import serial_asyncio_fast

from modems.session import (
    MessageSent,
    ModemSession,
    NotReady,
    Ready,
    SendFailed,
    SessionEvent,
    SessionSettings,
    SessionState,
    Stopped,
    Unresponsive,
)

DEFAULT_BAUDRATE = 115200

SendOutcome = MessageSent | SendFailed
EventListener = Callable[[SessionEvent], None]


class PortLost(ConnectionError):
    """The serial port closed or failed (unplugged modem, network modem server gone)."""


class _Protocol(asyncio.Protocol):
    def __init__(self, port: ModemPort) -> None:
        self._port = port

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        pass

    def data_received(self, data: bytes) -> None:
        self._port._data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._port._connection_lost(exc)


class ModemPort:
    """One modem on one port. `open()` opens the port and starts the session; events go to
    `listener` as they happen; `send()` returns the message's outcome; `closed` is set when
    the port goes away or `close()` is called, and `stopped` carries the session's Stopped."""

    def __init__(
        self,
        device: str,
        settings: SessionSettings | None = None,
        *,
        baudrate: int = DEFAULT_BAUDRATE,
        listener: EventListener | None = None,
    ) -> None:
        self.device = device
        self.baudrate = baudrate
        self.session = ModemSession(settings)
        self._listener = listener
        self._transport: asyncio.Transport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._waiting: dict[Hashable, asyncio.Future[SendOutcome]] = {}
        self.ready = asyncio.Event()
        self.closed = asyncio.Event()
        self.stopped: Stopped | None = None
        self.lost_because: str | None = None

    async def open(self) -> None:
        """Open the port (off the loop) and start the session. Raises OSError (serial errors
        are OSErrors) when the device cannot be opened."""
        self._loop = asyncio.get_running_loop()
        transport, _ = await serial_asyncio_fast.create_serial_connection(
            self._loop, lambda: _Protocol(self), self.device, baudrate=self.baudrate
        )
        self._transport = transport
        self._dispatch(self.session.start(self._loop.time()))

    async def send(self, key: Hashable, tpdus: Sequence[bytes]) -> SendOutcome:
        """Send one message's SMS-SUBMIT TPDUs; the outcome carries each part's TP-MR.
        Raises modems.session.NotReady when the modem is not ready."""
        if self._loop is None or key in self._waiting:
            raise ValueError("port not open, or that key is already being sent")
        future: asyncio.Future[SendOutcome] = self._loop.create_future()
        self._waiting[key] = future
        try:
            self.session.send(key, tpdus, self._loop.time())
        except BaseException:
            del self._waiting[key]
            raise
        self._flush()
        try:
            return await future
        finally:
            if self._waiting.get(key) is future:  # the caller gave up waiting: forget it
                del self._waiting[key]

    def delete(self, indexes: Sequence[int]) -> None:
        """Delete stored messages once kept (see MessageReceived.storage_indexes)."""
        if self._loop is None or not indexes:
            return
        self.session.delete(indexes, self._loop.time())
        self._flush()

    def acknowledge(self, token: int | None, accepted: bool) -> None:
        """Answer a routed arrival (its `acknowledgement`) once kept, or refuse it
        (`ModemSession.acknowledge`). Nothing when the port has closed since: that modem's
        answer is past, the network offers the message again."""
        if self._loop is None or token is None or self.closed.is_set():
            return
        self.session.acknowledge(token, accepted, self._loop.time())
        self._flush()

    def close(self, reason: str = "closed") -> None:
        if self._transport is not None:
            self._transport.close()
        self._finish(reason)

    def reset(self, command: str) -> None:
        """Write the reset command past the AT channel (whatever it was waiting for) and close
        the port: what is waiting fails, and the modem reboots."""
        if self._transport is not None and not self._transport.is_closing():
            with contextlib.suppress(OSError):
                self._transport.write(command.encode("ascii", "replace") + b"\r")
        self.close(f"reset with {command}")

    async def wait_closed(self) -> None:
        await self.closed.wait()

    # --- plumbing ------------------------------------------------------------------------------

    def _now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    def _data_received(self, data: bytes) -> None:
        self._dispatch(self.session.feed(data, self._now()))

    def _connection_lost(self, exc: Exception | None) -> None:
        reason = f"port lost: {exc}" if exc is not None else "port closed"
        self._finish(reason)

    def _finish(self, reason: str) -> None:
        if self.closed.is_set():
            return
        self.lost_because = reason
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.session.state is not SessionState.STOPPED:
            self._dispatch(self.session.stop(reason), flush=False)
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(PortLost(reason))
        self._waiting.clear()
        self._transport = None
        self.closed.set()

    def _on_timer(self) -> None:
        self._timer = None
        self._dispatch(self.session.check_timers(self._now()))

    def _dispatch(self, events: list[SessionEvent], *, flush: bool = True) -> None:
        for event in events:
            if isinstance(event, MessageSent | SendFailed):
                future = self._waiting.pop(event.key, None)
                if future is not None and not future.done():
                    future.set_result(event)
            elif isinstance(event, Stopped):
                self.stopped = event
            elif isinstance(event, Ready):
                self.ready.set()
            if self._listener is not None:
                self._listener(event)
        if flush:
            self._flush()
        if self.stopped is not None and self._transport is not None:
            self._transport.close()  # a stopped session says nothing more: free the port

    def _flush(self) -> None:
        data = self.session.outgoing()
        if data and self._transport is not None and not self._transport.is_closing():
            with contextlib.suppress(OSError):
                self._transport.write(data)
        self._schedule()

    def _schedule(self) -> None:
        if self._loop is None or self.closed.is_set():
            return
        deadline = self.session.deadline()
        if self._timer is not None:
            if deadline is not None and self._timer.when() == deadline:
                return
            self._timer.cancel()
            self._timer = None
        if deadline is not None:
            self._timer = self._loop.call_at(deadline, self._on_timer)


class ModemSupervisor:
    """Keeps one modem's port open and its session running, as a modem link needs.

    Opens the device (again and again, with `backoff`, while it is missing: unplugged, or a
    network modem server down), reopens it after a loss, answers an Unresponsive session with
    `reset_command` (written past the AT channel, then the port is closed and reopened after
    `reset_wait`; also when a start found the modem not answering at all), and stops for good
    after a fatal stop (wrong PIN, PUK, no PDU mode): it
    never starts a session that would enter a PIN the SIM already refused.

    Events (the sessions' and the supervisor's own Stopped for a failed open) go to `listener`.
    """

    def __init__(
        self,
        device: str,
        settings: SessionSettings | None = None,
        *,
        baudrate: int = DEFAULT_BAUDRATE,
        listener: EventListener | None = None,
        reset_command: str = "AT+CFUN=1,1",
        reset_wait: float = 10.0,
        backoff: Sequence[float] = (1.0, 2.0, 5.0, 10.0, 30.0),
    ) -> None:
        if not backoff or any(delay < 0 for delay in backoff):
            raise ValueError("backoff needs at least one delay, none negative")
        self.device = device
        self.settings = settings
        self.baudrate = baudrate
        self.reset_command = reset_command
        self.reset_wait = reset_wait
        self.backoff = tuple(backoff)
        self.port: ModemPort | None = None
        self.fatal: Stopped | None = None
        self.resets = 0
        self.opens = 0
        self._listener = listener
        self._closing = asyncio.Event()
        self._wake = asyncio.Event()
        self._reset_wanted = False
        self._reset_on_open = False

    @property
    def ready(self) -> bool:
        port = self.port
        return port is not None and port.ready.is_set() and not port.closed.is_set()

    async def send(self, key: Hashable, tpdus: Sequence[bytes]) -> SendOutcome:
        """Send through the current port. Raises NotReady when there is no ready modem, and
        PortLost when the port goes while the message waits."""
        if self.port is None or not self.ready:
            raise NotReady("modem is not ready")
        return await self.port.send(key, tpdus)

    def close(self) -> None:
        self._closing.set()
        self._wake.set()
        if self.port is not None:
            self.port.close()

    async def run(self) -> Stopped | None:
        """Run until `close()` or a fatal stop; returns the fatal Stopped, if that was it."""
        failures = 0
        while not self._closing.is_set():
            port = ModemPort(
                self.device, self.settings, baudrate=self.baudrate, listener=self._on_event
            )
            try:
                await port.open()
            except OSError as error:
                self._emit(Stopped(f"cannot open {self.device}: {error}", fatal=False))
                await self._pause(self.backoff[min(failures, len(self.backoff) - 1)])
                failures += 1
                continue
            self.opens += 1
            self.port = port
            if self._reset_on_open:
                # It did not answer the last start either: reset it before trying again.
                self._reset_wanted = True
                self._reset_on_open = False
            await self._until_closed_or_reset(port)
            if self._reset_wanted and not port.closed.is_set():
                self._reset_wanted = False
                self.resets += 1
                port.reset(self.reset_command)
                await self._pause(self.reset_wait)
                continue
            self._reset_wanted = False
            if port.stopped is not None and port.stopped.fatal:
                self.fatal = port.stopped
                return self.fatal
            self._reset_on_open = port.stopped is not None and port.stopped.unresponsive
            failures = 0 if port.ready.is_set() else failures + 1
            await self._pause(self.backoff[min(failures, len(self.backoff) - 1)])
        return None

    async def _until_closed_or_reset(self, port: ModemPort) -> None:
        while not port.closed.is_set() and not self._reset_wanted:
            if self._closing.is_set():
                port.close()
                return
            closed = asyncio.ensure_future(port.closed.wait())
            woken = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait({closed, woken}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                closed.cancel()
                woken.cancel()
            self._wake.clear()

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)

    def _on_event(self, event: SessionEvent) -> None:
        if isinstance(event, Unresponsive):
            self._reset_wanted = True
            self._wake.set()
        self._emit(event)

    def _emit(self, event: SessionEvent) -> None:
        if self._listener is not None:
            self._listener(event)
