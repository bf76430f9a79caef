"""The HTTP server's edge: connection timeouts, the connection cap, and unreadable requests.

Owns `ConnectionLimits` (the `[http]` knobs), `ConnectionStats`, `ConnectionGuard` (the open
connections of one listener, oldest first, and which one gives way at the cap),
`GuardedRequestHandler` (aiohttp's per-connection protocol with the guard's deadline and a
problem+json answer for requests aiohttp cannot parse) and `GuardedSite` (the TCP listener that
makes them).

A connection is in one phase at a time:
- `head`: from its opening (or, kept alive, from the first byte of its next request) until the
  request's head has arrived: `header_timeout`;
- `body`: from the head until the body has arrived: `header_timeout` again;
- `handling`: a handler is working or its answer is being written: not timed here;
- `idle`: answered and kept alive, waiting for the next request: `keepalive_timeout`.
A connection whose deadline passes is closed. That is what ends silent and trickling
(slowloris) clients. At `max_connections` a new connection closes the oldest connection in
`head` or `idle` (an attacker's silent sockets are the oldest waiting ones, and a real client
mid-request is never cut); when every connection is handling, the new one is closed instead.

Never does: log a header value, a request line or anything else the parser read. Header values
carry API keys, so a refusal logs the client address and the reason only.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler

from gateway.http.problems import Problem, problem_response

log = logging.getLogger("tandem.http")

# Longer request lines get 414. Our paths are short; a distinct value from the header field
# limit tells the parser's two "line too long" errors apart (it raises the same type for both).
MAX_REQUEST_LINE_BYTES = 4096
CAP_WARNING_SECONDS = 60.0  # at most one "cap reached" warning per this long


class Phase(enum.Enum):
    HEAD = "head"
    BODY = "body"
    HANDLING = "handling"
    IDLE = "idle"


# Phases in which a connection waits on its client: the ones that give way at the cap.
WAITING_ON_CLIENT = frozenset({Phase.HEAD, Phase.IDLE})


@dataclass(slots=True, frozen=True)
class ConnectionLimits:
    header_timeout: float = 10.0
    keepalive_timeout: float = 15.0
    max_connections: int = 1000
    max_header_bytes: int = 8190

    @classmethod
    def from_config(cls, config: Any) -> ConnectionLimits:
        return cls(
            header_timeout=config.header_timeout,
            keepalive_timeout=config.keepalive_timeout,
            max_connections=config.max_connections,
            max_header_bytes=config.max_header_bytes,
        )


@dataclass(slots=True)
class ConnectionStats:
    """Connection counters of one HTTP listener (part of `HttpStats`)."""

    open: int = 0
    opened: int = 0
    header_timeouts: int = 0  # closed in `head`: silent or trickling a head
    body_timeouts: int = 0  # closed in `body`: trickling a body
    keepalive_timeouts: int = 0  # closed in `idle`
    evicted: int = 0  # closed at the cap to make room for a new one
    refused: int = 0  # new connections closed at the cap: every other one was handling
    bad_requests: int = 0  # requests the parser refused (oversized head, malformed line, ...)


Connection = TypeVar("Connection")


def oldest_waiting(connections: Iterable[tuple[Connection, Phase]]) -> Connection | None:
    """The connection to close at the cap: the first (oldest) one waiting on its client."""
    for connection, phase in connections:
        if phase in WAITING_ON_CLIENT:
            return connection
    return None


def deadline_after(phase: Phase, now: float, limits: ConnectionLimits) -> float | None:
    """When a connection that entered `phase` at `now` is closed, None: not timed."""
    if phase is Phase.HANDLING:
        return None
    if phase is Phase.IDLE:
        return now + limits.keepalive_timeout
    return now + limits.header_timeout


@dataclass(slots=True, frozen=True)
class Refusal:
    """How a request the parser refused is answered and logged (never with what it read)."""

    status: int
    code: str
    detail: str


def refusal_for(exc: BaseException | None, *, max_line: int, max_field: int) -> Refusal:
    if isinstance(exc, LineTooLong):
        limit = exc.args[1] if len(exc.args) > 1 else None
        if limit == max_line and max_line != max_field:
            detail = f"The request line is over {max_line} bytes."
            return Refusal(414, "request_line_too_long", detail)
        return Refusal(
            431, "header_too_large", f"A request header field is over {max_field} bytes."
        )
    message = getattr(exc, "message", "")
    if isinstance(message, str) and message.startswith("Too many headers"):
        return Refusal(431, "too_many_headers", "The request has too many header fields.")
    return Refusal(400, "malformed_request", "The request is not well-formed HTTP/1.1.")


class ConnectionGuard:
    """The open connections of one listener, oldest first, and the cap over them."""

    def __init__(
        self,
        limits: ConnectionLimits,
        stats: ConnectionStats | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = limits
        self.stats = stats if stats is not None else ConnectionStats()
        self._clock = clock
        self._open: dict[GuardedRequestHandler, None] = {}
        self._cap_warned_at: float | None = None

    def admit(self, connection: GuardedRequestHandler) -> bool:
        """Record a new connection; False when it must be closed at once (cap, all busy)."""
        self.stats.opened += 1
        if len(self._open) >= self.limits.max_connections:
            self._warn_cap()
            victim = oldest_waiting((c, c.phase) for c in self._open)
            if victim is None:
                self.stats.refused += 1
                return False
            self.stats.evicted += 1
            self.forget(victim)
            victim.force_close()
        self._open[connection] = None
        self.stats.open = len(self._open)
        return True

    def forget(self, connection: GuardedRequestHandler) -> None:
        self._open.pop(connection, None)
        self.stats.open = len(self._open)

    def _warn_cap(self) -> None:
        now = self._clock()
        if self._cap_warned_at is None or now - self._cap_warned_at >= CAP_WARNING_SECONDS:
            self._cap_warned_at = now
            log.warning(
                "HTTP connection cap of %d reached: closing the oldest waiting connections "
                "(%d evicted, %d refused so far)",
                self.limits.max_connections,
                self.stats.evicted,
                self.stats.refused,
            )


class GuardedRequestHandler(RequestHandler):
    """aiohttp's connection protocol, timed by phase and admitted by the guard."""

    def __init__(self, manager: web.Server, *, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self.guard = guard
        self.phase = Phase.HEAD
        self._deadline: float | None = None
        self._deadline_handle: asyncio.TimerHandle | None = None
        self._body: Any = None  # the payload stream of the request in `body`
        self._next_request_started = False  # bytes of a next request arrived while handling

    # --- phases -------------------------------------------------------------------------------

    def _enter(self, phase: Phase) -> None:
        self.phase = phase
        self._deadline = deadline = deadline_after(phase, self._loop.time(), self.guard.limits)
        if deadline is None:
            return
        handle = self._deadline_handle
        if handle is not None and handle.when() > deadline:  # sooner than the timer: move it
            handle.cancel()
            handle = None
        if handle is None:  # a timer that fires too early reschedules itself
            self._deadline_handle = self._loop.call_at(deadline, self._deadline_passed)

    def _deadline_passed(self) -> None:
        self._deadline_handle = None
        if self._deadline is None or self.transport is None:
            return
        if self._loop.time() < self._deadline:  # moved later since the timer was set
            self._deadline_handle = self._loop.call_at(self._deadline, self._deadline_passed)
            return
        if self.phase is Phase.BODY and self._body is not None and self._body.is_eof():
            self._enter(Phase.HANDLING)
            return
        stats = self.guard.stats
        if self.phase is Phase.HEAD:
            stats.header_timeouts += 1
        elif self.phase is Phase.BODY:
            stats.body_timeouts += 1
        else:
            stats.keepalive_timeouts += 1
        self.force_close()

    # --- aiohttp's protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if not self.guard.admit(self):
            self.force_close()
            return
        self._enter(Phase.HEAD)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.guard.forget(self)
        if self._deadline_handle is not None:
            self._deadline_handle.cancel()
            self._deadline_handle = None
        self._body = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        phase = self.phase
        if phase is Phase.IDLE:
            self._enter(Phase.HEAD)  # the next request's first byte: its head is timed now
        heads = self._request_count
        super().data_received(data)
        body = self._body
        if phase is Phase.BODY and body is not None and not body.is_eof():
            # The request in hand still owes its body, whatever else the parser made of these
            # bytes (a broken chunk comes out as an error "message" while the handler waits).
            return
        if self._request_count != heads and self._messages:
            self._next_request_started = False
            payload = self._messages[-1][1]
            if payload.is_eof():
                self._body = None
                self._enter(Phase.HANDLING)
            else:
                self._body = payload
                self._enter(Phase.BODY)
        elif phase is Phase.BODY:
            self._body = None
            self._enter(Phase.HANDLING)
        elif phase is Phase.HANDLING:
            self._next_request_started = True

    async def finish_response(
        self, request: web.BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        result = await super().finish_response(request, resp, start_time)
        if self.phase is Phase.HANDLING and not self._messages:
            self._enter(Phase.HEAD if self._next_request_started else Phase.IDLE)
        return result

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if not isinstance(exc, HttpProcessingError):
            return super().handle_error(request, status, exc, message)
        refusal = refusal_for(exc, max_line=self.max_line_size, max_field=self.max_field_size)
        self.guard.stats.bad_requests += 1
        # One line, and only our words: the parser's message quotes what it read.
        log.warning(
            "HTTP request from %s refused: %s (%s)", request.remote, refusal.detail, refusal.code
        )
        response = problem_response(Problem(refusal.status, refusal.code, refusal.detail))
        response.force_close()
        return response


class GuardedSite(web.TCPSite):
    """A TCP listener whose connections are `GuardedRequestHandler`s of one guard."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        guard: ConnectionGuard,
        backlog: int = 1024,
    ) -> None:
        super().__init__(runner, host, port, backlog=backlog)
        self.guard = guard

    def _make_handler(self) -> GuardedRequestHandler:
        server = self._runner.server
        assert server is not None
        limits = self.guard.limits
        return GuardedRequestHandler(
            server,
            guard=self.guard,
            loop=asyncio.get_running_loop(),
            access_log=None,
            # aiohttp's own idle timer stays as a backstop behind ours.
            keepalive_timeout=limits.keepalive_timeout + limits.header_timeout + 60.0,
            max_line_size=MAX_REQUEST_LINE_BYTES,
            max_field_size=limits.max_header_bytes,
        )

    async def start(self) -> None:
        self._runner._reg_site(self)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._make_handler,
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
        )
        self._bound_port = self._server.sockets[0].getsockname()[1]
