"""The emulator's asyncio adapters: a pty (the device path a modem link opens, as it would
open /dev/ttyUSB0), a TCP port (a network modem server), and `run_pty_modem` (what
`tandem sim modem` runs).

Owns the file descriptors, the socket and the timers; the modem itself is the sans-IO
`modems.emulator.EmulatedModem` (bytes in, bytes out, `now` passed in, `deadline()` for its
timers). Must never import gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import tty
from collections.abc import Callable
from pathlib import Path

from modems.emulator import EmulatedModem, ModemSettings


class PtyModem:
    """An `EmulatedModem` behind a pseudo-terminal. `device` is the path a link opens: the pty
    slave's name, or `link_path` (a symlink to it, like /dev/serial/by-id/...) when given.
    `unplug()` closes the pty and removes the link; `plug()` makes a new one."""

    def __init__(self, modem: EmulatedModem | None = None, link_path: Path | None = None) -> None:
        self.modem = modem or EmulatedModem()
        self.link_path = link_path
        self._master: int | None = None
        self._slave: int | None = None
        self._slave_name = ""
        self._pending = bytearray()
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def device(self) -> str:
        return str(self.link_path) if self.link_path is not None else self._slave_name

    @property
    def plugged(self) -> bool:
        return self._master is not None

    def plug(self) -> str:
        """Open a new pty (and point the link at it); returns the device path."""
        if self._master is not None:
            return self.device
        self._loop = asyncio.get_running_loop()
        master, slave = os.openpty()
        tty.setraw(slave)  # no line discipline: the bytes go as they are, like a serial line
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self._slave_name = os.ttyname(slave)
        if self.link_path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.link_path.unlink()
            self.link_path.symlink_to(self._slave_name)
        self._loop.add_reader(master, self._readable)
        return self.device

    def unplug(self) -> None:
        """Close the pty (the host's reads fail) and remove the link, as pulling the USB does."""
        if self._master is None or self._loop is None:
            return
        self._loop.remove_reader(self._master)
        self._loop.remove_writer(self._master)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for fd in (self._master, self._slave):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = None
        self._pending.clear()
        if self.link_path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.link_path.unlink()

    def close(self) -> None:
        self.unplug()

    def poke(self) -> None:
        """Write whatever the modem has to say now (after an injection from outside)."""
        if self._loop is not None:
            self.modem.tick(self._now())
        self._flush()

    def _now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    def _readable(self) -> None:
        if self._master is None:
            return
        try:
            data = os.read(self._master, 4096)
        except BlockingIOError:
            return
        except OSError:  # EIO: no process holds the slave open right now
            return
        self.modem.feed(data, self._now())
        self._flush()

    def _flush(self) -> None:
        if self._master is None or self._loop is None:
            return
        self._pending += self.modem.outgoing()
        if self._pending:
            try:
                written = os.write(self._master, self._pending)
            except BlockingIOError:
                written = 0
            except OSError:
                written = len(self._pending)  # nobody listening: the line is dead anyway
            del self._pending[:written]
            if self._pending:
                self._loop.add_writer(self._master, self._writable)
        self._schedule()

    def _writable(self) -> None:
        if self._master is None or self._loop is None:
            return
        self._loop.remove_writer(self._master)
        self._flush()

    def _schedule(self) -> None:
        if self._loop is None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.modem.deadline()
        if deadline is not None:
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.modem.tick(self._now())
        self._flush()


class _TcpModemProtocol(asyncio.Protocol):
    def __init__(self, modem: EmulatedModem) -> None:
        self.modem = modem
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self.modem.feed(data, asyncio.get_running_loop().time())
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _flush(self) -> None:
        data = self.modem.outgoing()
        if self._transport is None:
            return
        if data:
            self._transport.write(data)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.modem.deadline()
        if deadline is not None:
            self._timer = asyncio.get_running_loop().call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.modem.tick(asyncio.get_running_loop().time())
        self._flush()


async def serve_tcp_modem(
    modem: EmulatedModem, host: str = "127.0.0.1", port: int = 0
) -> asyncio.Server:
    """The emulator behind a TCP port, as a network modem server (ser2net, a modem pool box)
    offers one: a link opens it as socket://host:port. The modem (SIM state, storage) outlives
    each connection."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: _TcpModemProtocol(modem), host, port)


async def run_pty_modem(
    settings: ModemSettings,
    link_path: Path | None = None,
    mo_interval: float | None = None,
    announce: Callable[[str], None] = print,
) -> None:
    """Run one emulated modem until cancelled or SIGTERM (what `tandem sim modem` does); the
    pty and the link go with it."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    pty_modem = PtyModem(EmulatedModem(settings), link_path)
    announce(f"emulated modem on {pty_modem.plug()}")
    try:
        count = 0
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), mo_interval or None)
            if mo_interval and not stop.is_set():
                count += 1
                pty_modem.modem.inject_mo(f"Test message {count} from the emulated modem")
                pty_modem.poke()
    finally:
        pty_modem.close()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGTERM)
