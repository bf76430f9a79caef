"""systemd's service notification protocol: READY=1, STOPPING=1, STATUS=..., WATCHDOG=1.

Owns `Notifier` (one AF_UNIX datagram socket to `$NOTIFY_SOCKET`; a name starting with "@" is
an abstract socket) and `ServiceHeartbeat`, the task that pings the watchdog from the daemon's
event loop and keeps the STATUS= line current. The protocol is a few newline-separated
`KEY=value` lines in one datagram (sd_notify(3)); no library is needed for it.

The pings come from a task on the loop, not a thread: a loop that stops turning stops the
pings, and systemd (`WatchdogSec=`) kills and restarts the service.

Never does: block (the socket is non-blocking; a datagram that cannot go is dropped and
counted), or raise when there is no systemd (every call is then a no-op).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from gateway.tasks import cancel_and_wait

log = logging.getLogger("tandem.systemd")

NOTIFY_SOCKET = "NOTIFY_SOCKET"
WATCHDOG_USEC = "WATCHDOG_USEC"
WATCHDOG_PID = "WATCHDOG_PID"
# STATUS= refreshed at least this often (seconds) when no watchdog asks for more.
STATUS_INTERVAL = 2.0


def notify_address(value: str) -> str | bytes | None:
    """The address a `$NOTIFY_SOCKET` value names: a path, or an abstract name ("@x" ->
    b"\\0x"); None for what this implementation cannot use (empty, vsock:...)."""
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None


def watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """Seconds between pings systemd expects (`WatchdogSec=`) for process `pid`, or None when
    no watchdog is set for it. sd_watchdog_enabled(3): WATCHDOG_PID, when set, must name us."""
    usec = environ.get(WATCHDOG_USEC, "")
    owner = environ.get(WATCHDOG_PID, "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if owner and (not owner.isdigit() or int(owner) != pid):
        return None
    return int(usec) / 1_000_000


@dataclass(slots=True)
class NotifyStats:
    """Datagrams sent to systemd and those it did not take (full buffer, socket gone)."""

    sent: int = 0
    failed: int = 0


class Notifier:
    """Sends sd_notify(3) datagrams; does nothing when `$NOTIFY_SOCKET` is not set."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ
        self.address = notify_address(environ.get(NOTIFY_SOCKET, ""))
        self.stats = NotifyStats()
        self._socket: socket.socket | None = None
        if self.address is not None:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._socket.setblocking(False)

    @property
    def enabled(self) -> bool:
        return self._socket is not None

    def send(self, **fields: str) -> bool:
        """One datagram of `KEY=value` lines; True when the socket took it."""
        if self._socket is None or self.address is None:
            return False
        text = "".join(f"{key}={value}\n" for key, value in fields.items())
        try:
            self._socket.sendto(text.encode(), self.address)
        except OSError as exc:
            self.stats.failed += 1
            if self.stats.failed == 1:  # once: a missing socket would otherwise fill the log
                log.warning("systemd notification not sent: %s", exc)
            return False
        self.stats.sent += 1
        return True

    def ready(self, status: str) -> bool:
        return self.send(READY="1", STATUS=status, MAINPID=str(os.getpid()))

    def stopping(self, status: str = "stopping") -> bool:
        return self.send(STOPPING="1", STATUS=status)

    def status(self, status: str) -> bool:
        return self.send(STATUS=status)

    def watchdog(self) -> bool:
        return self.send(WATCHDOG="1")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


class ServiceHeartbeat:
    """A task on the daemon's loop: WATCHDOG=1 at half the watchdog interval, and STATUS= when
    the text `describe()` gives changed. Started after READY=1, stopped before STOPPING=1."""

    def __init__(
        self,
        notifier: Notifier,
        describe: Callable[[], str],
        *,
        watchdog: float | None,
    ) -> None:
        self.notifier = notifier
        self.describe = describe
        # Half the interval, as sd_watchdog_enabled(3) advises: one late turn is not a kill.
        self.period = min(watchdog / 2, STATUS_INTERVAL) if watchdog else STATUS_INTERVAL
        self.watchdog = watchdog is not None
        self._last_status = ""
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.notifier.enabled and self._task is None:
            self._task = asyncio.create_task(self._beat(), name="systemd-heartbeat")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None

    def beat(self) -> None:
        """One turn: the ping, then STATUS= if it changed."""
        if self.watchdog:
            self.notifier.watchdog()
        try:
            status = self.describe()
        except Exception:  # a status line is not worth a missed ping
            log.exception("service status line failed")
            return
        if status != self._last_status:
            self._last_status = status
            self.notifier.status(status)

    async def _beat(self) -> None:
        while True:
            self.beat()
            await asyncio.sleep(self.period)
