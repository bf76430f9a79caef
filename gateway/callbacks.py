"""HTTP receipt callbacks: POST each status change a customer asked for to their URL.

Owns `CallbackSender`, a `Gateway` status listener. For a message sent over HTTP with a
`callback_url` (given at submit) or sent with an API key that has one (`tandem keys create
--callback-url`), it POSTs `dlr.callback.callback_body` (id, status, segment states with
carrier ids, errors, timestamps), signed with `dlr.callback.sign` under the callback secret of
the key the message was accepted under, in `X-Tandem-Signature`. `[http] callback_events`
chooses final statuses only (default) or every change. Messages of SMPP accounts get their
receipts as deliver_sm (gateway.smpp_server), never a callback, whatever their account is named.

A revoked key's messages keep being signed with its secret: they were accepted and their
receipts are owed, and an unsigned callback would either be dropped by a receiver that checks
signatures or teach it to accept unsigned ones. Revoking stops the key from submitting; it does
not change who the owed receipts belong to. Without a secret to sign with, nothing is sent.

Where callbacks may go is `gateway.egress`'s rule, applied at every connect: a refused URL is
given up at once and its history says why ("refused: private address"), not what answered.
URLs in logs and history are redacted (`gateway.egress.redact_url`).

Retries: an answer that `dlr.callback.is_retryable` calls temporary (no answer, 408, 425, 429,
5xx) is retried on `dlr.callback.RetrySchedule` (from `[http] callback_retry_*`), for at most
`callback_retry_for` seconds after the first attempt; other answers (a 4xx) are final. Each
request is signed again with a fresh timestamp. The outcome (delivered to the URL, or given up
and why) is recorded in the message's history, so `GET /v1/messages/{id}` shows it.

Durability: the store marks the callback of a final status owed in the same transaction as the
status (a message's `callback_url` is fixed at submit: its own or its key's), and the sender
settles it once delivered or given up. On start, what is still owed (within
`callback_retry_for`) is queued again, a page at a time, so a restart or kill -9 loses no final
callback; each may be sent twice if the daemon died between the POST and the settling.
Intermediate callbacks (`callback_events = "all"`) wait in memory only.

Transport: `HttpPoster`, a small HTTP/1.1 client that keeps connections alive per host. A
callback is one small POST, and under load thousands of them go to the same few endpoints, so a
full client library's per-request machinery was the largest cost of the receipt path. Redirects
are not followed (a 3xx is a final answer, like a 4xx). Only the status line matters: at most
`MAX_ANSWER_HEAD` bytes of head and `MAX_ANSWER_BODY` of body are read, and a connection whose
answer is longer, or has no length, is closed instead of drained.

Never does: change a message's status, or block the listener call (work goes to a queue that
`callback_concurrency` workers drain).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from dlr.callback import (
    SIGNATURE_HEADER,
    CallbackSegment,
    RetrySchedule,
    callback_body,
    is_retryable,
    sign,
)
from dlr.status import MessageStatus, StatusEvent, StatusSource, is_final
from gateway.batching import TurnBatch
from gateway.config import HttpConfig
from gateway.egress import EgressPolicy, EgressRefused, Resolve, open_connection, redact_url
from gateway.keys import KeyRing
from gateway.logs import message_fields, url_for_log
from gateway.messages import Channel, Message
from gateway.stages import recording
from gateway.store.base import CustomerDeliveryStore, MessageStore, StatusChange, StoreError
from gateway.tasks import cancel_and_wait

log = logging.getLogger("tandem.callbacks")

# dlr.status has no source for callback outcomes yet; history details start with "callback".
CALLBACK_SOURCE = StatusSource.CALLBACK


@dataclass(slots=True)
class CallbackStats:
    """Counters for the metrics exporter."""

    queued: int = 0
    attempts: int = 0
    delivered: int = 0
    retried: int = 0
    given_up: int = 0
    restored: int = 0  # owed when the daemon (re)started, queued again


@dataclass(slots=True, frozen=True)
class _Finished:
    """A callback delivered or given up: its owed mark to clear, and what its history says."""

    message_id: str
    status: MessageStatus  # the status the callback reported
    event: StatusEvent | None  # None: nothing to add to the history


@dataclass(slots=True)
class _Delivery:
    message_id: str
    status: MessageStatus  # the status the callback reports
    url: str
    secret: str  # of the key the message was accepted under: every callback is signed
    body: bytes
    first_attempt_at: float = 0.0
    attempt: int = 0
    last_outcome: str = ""


class CallbackSender:
    def __init__(
        self,
        *,
        store: MessageStore,
        keys: KeyRing,
        schedule: RetrySchedule,
        events: str = "final",
        timeout: float = 10.0,
        concurrency: int = 64,
        egress: EgressPolicy | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.egress = egress if egress is not None else EgressPolicy()
        self.keys = keys
        self.schedule = schedule
        self.events = events
        self.timeout = timeout
        self.concurrency = concurrency
        self.clock = clock
        self.stats = CallbackStats()
        # New status changes, and deliveries whose retry is due.
        self._work: asyncio.Queue[tuple[Message, StatusChange] | _Delivery] = asyncio.Queue()
        self._workers: list[asyncio.Task[None]] = []
        self._retries: set[asyncio.TimerHandle] = set()
        self._poster: HttpPoster | None = None
        self._in_progress = 0
        self._deliveries = store if isinstance(store, CustomerDeliveryStore) else None
        self._tasks: set[asyncio.Future[None]] = set()
        # Callbacks finished and not yet recorded: one write per turn for all of them, which no
        # worker waits for (a worker holding its slot through a commit halved their rate).
        self._finished: TurnBatch[_Finished] = TurnBatch(self._record_finished, self._spawn)
        self._unrecorded = 0
        self._restoring: asyncio.Task[None] | None = None

    @classmethod
    def from_config(
        cls, config: HttpConfig, *, store: MessageStore, keys: KeyRing, egress: EgressPolicy
    ) -> CallbackSender:
        return cls(
            store=store,
            keys=keys,
            schedule=RetrySchedule(
                initial_delay=config.callback_retry_initial,
                max_delay=config.callback_retry_max_delay,
                give_up_after=config.callback_retry_for,
            ),
            events=config.callback_events,
            timeout=config.callback_timeout,
            concurrency=config.callback_concurrency,
            egress=egress,
        )

    def reconfigure(self, config: HttpConfig, egress: EgressPolicy) -> None:
        """A reload: new retry schedule, status filter, timeout and egress rule. Requests in
        flight finish under the old ones; idle connections the old rule allowed are closed.
        `callback_concurrency` needs a restart."""
        self.schedule = RetrySchedule(
            initial_delay=config.callback_retry_initial,
            max_delay=config.callback_retry_max_delay,
            give_up_after=config.callback_retry_for,
        )
        self.events = config.callback_events
        if config.callback_timeout != self.timeout or egress is not self.egress:
            self.timeout = config.callback_timeout
            self.egress = egress
            if self._poster is not None:
                self._poster.close_idle()
                self._poster = HttpPoster(timeout=self.timeout, egress=self.egress)

    # --- the listener (synchronous, never blocks) ---------------------------------------------

    def message_status_changed(self, message: Message, change: StatusChange) -> None:
        if message.channel is not Channel.HTTP:
            return  # an SMPP account's receipts go to its binds, whatever its name
        if self.events == "final" and not is_final(message.status):
            return
        self._ensure_started()
        self._work.put_nowait((message, change))
        stages = recording()
        if stages is not None:
            stages.start("callback", message.id)

    # --- life cycle ---------------------------------------------------------------------------

    def restore(self) -> None:
        """Queue again, in the background, the final callbacks still owed from before a
        restart."""
        if self._deliveries is not None and self._restoring is None:
            self._ensure_started()
            self._restoring = asyncio.create_task(self._restore(), name="callback-restore")

    async def _restore(self, page: int = 1000) -> None:
        store = self._deliveries
        assert store is not None
        since = self.clock() - self.schedule.give_up_after
        try:
            await store.forget_owed_receipts(before=since, channel=Channel.HTTP)
            after: tuple[float, str] | None = None
            while True:
                owed = await store.owed_receipts(
                    channel=Channel.HTTP, since=since, after=after, limit=page
                )
                for receipt in owed:
                    message = receipt.message
                    self.stats.restored += 1
                    self._work.put_nowait((message, StatusChange(True, message)))
                if len(owed) < page:
                    break
                after = (owed[-1].message.updated_at, owed[-1].message.id)
                while self._work.qsize() > page:  # a page at a time: memory stays bounded
                    await asyncio.sleep(0.05)
        except StoreError as exc:
            log.warning("queueing the callbacks owed from before the restart failed: %s", exc)
        if self.stats.restored:
            log.info("callbacks: %d owed from before the restart queued", self.stats.restored)

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _finish(self, message_id: str, status: MessageStatus, detail: str | None) -> None:
        """Settle a callback (delivered or given up) and record `detail` in the message's
        history, in the background."""
        event = (
            None
            if detail is None
            else StatusEvent(self.clock(), status, CALLBACK_SOURCE, detail, changed=False)
        )
        self._unrecorded += 1
        self._finished.add(_Finished(message_id, status, event)).add_done_callback(
            self._finish_recorded
        )

    def _finish_recorded(self, done: asyncio.Future[None]) -> None:
        self._unrecorded -= 1
        if not done.cancelled() and done.exception() is not None:
            log.warning("recording callbacks as done failed: %s", done.exception())

    async def _record_finished(self, finished: list[_Finished]) -> None:
        history = [(f.message_id, f.event) for f in finished if f.event is not None]
        writes: list[Awaitable[None]] = []
        if self._deliveries is not None:
            writes.append(
                self._deliveries.receipts_settled([(f.message_id, f.status) for f in finished])
            )
        if history:
            writes.append(self.store.record_history_many(history))
        for outcome in await asyncio.gather(*writes, return_exceptions=True):
            # Still owed when the settling failed: sent again after a restart.
            if isinstance(outcome, StoreError):
                log.warning("recording %d callbacks as done failed: %s", len(finished), outcome)
            elif isinstance(outcome, BaseException):
                raise outcome

    def _ensure_started(self) -> None:
        if self._workers:
            return
        self._poster = HttpPoster(timeout=self.timeout, egress=self.egress)
        self._workers = [
            asyncio.create_task(self._work_forever(), name=f"callback-{n}")
            for n in range(self.concurrency)
        ]

    async def stop(self) -> None:
        if self._restoring is not None:
            await cancel_and_wait(self._restoring)
            self._restoring = None
        for handle in self._retries:
            handle.cancel()
        self._retries.clear()
        await cancel_and_wait(*self._workers)
        self._workers = []
        # Settlings under way reach the store before it closes; a batch added to in this turn
        # starts its write on the next.
        while self._unrecorded:
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            else:
                await asyncio.sleep(0)
        if self._poster is not None:
            self._poster.close()
            self._poster = None

    @property
    def idle(self) -> bool:
        """Nothing queued, being sent or waiting for a retry (tests and benchmarks wait on it)."""
        return (
            self._work.empty()
            and not self._in_progress
            and not self._retries
            and not self._unrecorded
            and (self._restoring is None or self._restoring.done())
        )

    # --- work ---------------------------------------------------------------------------------

    async def _work_forever(self) -> None:
        while True:
            item = await self._work.get()
            self._in_progress += 1
            try:
                if isinstance(item, _Delivery):
                    delivery: _Delivery | None = item
                else:
                    delivery = await self._prepare(*item)
                    if delivery is not None:
                        self.stats.queued += 1
                if delivery is not None:
                    await self._attempt(delivery)
            except Exception:
                log.exception("callback failed")
            finally:
                self._in_progress -= 1

    async def _prepare(self, message: Message, change: StatusChange) -> _Delivery | None:
        if message.channel is not Channel.HTTP:  # rows restored from the store: same rule
            return None
        # The key the message was accepted under, revoked or not: its secret signs.
        key = await self.keys.record_by_name(message.account, revoked_too=True)
        url = message.callback_url or (
            key.callback_url if key is not None and key.revoked_at is None else None
        )
        if url is None:
            return None
        if key is None:
            log.warning(
                "callback for message %s not sent: no key to sign it with",
                message.id,
                extra=message_fields(message.id, account=message.account),
            )
            self._finish(message.id, message.status, None)
            return None
        segment = change.segment
        if segment is not None and segment.total == 1:
            segments = [segment]
        else:  # a multipart message or a message-level change: read every part's state
            record = await self.store.get(message.id)
            segments = record.segments if record is not None else []
        body = callback_body(
            message_id=message.id,
            status=message.status,
            status_at=message.updated_at,
            to="+" + message.destination,
            reference=message.reference,
            error=message.last_error or (segment.error if segment is not None else None),
            network_error=segment.network_error if segment is not None else None,
            segments=[
                CallbackSegment(s.index, s.status.value, s.carrier_id, s.error) for s in segments
            ],
        )
        return _Delivery(message.id, message.status, url, key.callback_secret, body)

    async def _attempt(self, delivery: _Delivery) -> None:
        assert self._poster is not None
        now = self.clock()
        if delivery.attempt == 0:
            delivery.first_attempt_at = now
        delivery.attempt += 1
        self.stats.attempts += 1
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(delivery.secret, delivery.body, int(now)),
        }
        status: int | None = None
        refused = False
        try:
            status = await self._poster.post(delivery.url, delivery.body, headers)
            outcome = f"HTTP {status}"
        except EgressRefused as exc:
            refused = True  # the rule, not the receiver, answered: trying again changes nothing
            outcome = str(exc)
        except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError) as exc:
            outcome = f"no answer ({type(exc).__name__})"
        url = redact_url(delivery.url)
        if status is not None and 200 <= status < 300:
            self.stats.delivered += 1
            stages = recording()
            if stages is not None:
                stages.stop("callback", delivery.message_id)
            self._finish(
                delivery.message_id,
                delivery.status,
                f"callback to {url}: {outcome} (attempt {delivery.attempt})",
            )
            return
        delivery.last_outcome = outcome
        next_at = (
            self.schedule.next_attempt(delivery.attempt, delivery.first_attempt_at, self.clock())
            if is_retryable(status) and not refused
            else None
        )
        if next_at is None:
            self.stats.given_up += 1
            log.warning(
                "callback for message %s to %s given up after %d attempts: %s",
                delivery.message_id,
                url_for_log(url),
                delivery.attempt,
                outcome,
                extra=message_fields(delivery.message_id),
            )
            self._finish(
                delivery.message_id,
                delivery.status,
                f"callback to {url} given up: {outcome} (attempt {delivery.attempt})",
            )
            return
        self.stats.retried += 1
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle | None = None

        def retry() -> None:
            assert handle is not None
            self._retries.discard(handle)
            self._work.put_nowait(delivery)

        handle = loop.call_later(max(0.0, next_at - self.clock()), retry)
        self._retries.add(handle)


# --- a small keep-alive HTTP/1.1 client -----------------------------------------------------------


@dataclass(slots=True, frozen=True)
class _Target:
    """What a callback URL resolves to, parsed once per URL."""

    origin: tuple[str, str, int]  # (scheme, host name, port): the key of the idle connections
    hostname: str
    port: int
    secure: bool
    head: bytes  # "POST <target> HTTP/1.1" and the Host line


def _target(url: str) -> _Target:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    secure = parts.scheme == "https"
    port = parts.port or (443 if secure else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host = parts.netloc.rpartition("@")[2]
    head = f"POST {target} HTTP/1.1\r\nHost: {host}\r\n".encode("latin-1")
    return _Target((parts.scheme, parts.hostname, port), parts.hostname, port, secure, head)


class _Deadlines:
    """Cancels a task still inside a request `timeout` seconds after it started, with one timer
    for all of them instead of one per request: every request has the same timeout, so they
    expire in the order they started (the insertion order of `_running`)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._running: dict[asyncio.Task[object], float] = {}  # task -> deadline (loop time)
        self._expired: set[asyncio.Task[object]] = set()
        self._timer: asyncio.TimerHandle | None = None

    def start(self, task: asyncio.Task[object], loop: asyncio.AbstractEventLoop) -> None:
        deadline = loop.time() + self.timeout
        self._running[task] = deadline
        if self._timer is None:
            self._timer = loop.call_at(deadline, self._expire, loop)

    def finish(self, task: asyncio.Task[object]) -> bool:
        """Forget `task`; True when its deadline passed and it was cancelled for it."""
        self._running.pop(task, None)
        if task in self._expired:
            self._expired.discard(task)
            return True
        return False

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        now = loop.time()
        while self._running:
            task, deadline = next(iter(self._running.items()))
            if deadline > now:
                self._timer = loop.call_at(deadline, self._expire, loop)
                return
            del self._running[task]
            self._expired.add(task)
            task.cancel()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._running.clear()
        self._expired.clear()


async def _line(reader: asyncio.StreamReader) -> bytes:
    """One CRLF-ended line of an answer, within the stream's limit."""
    try:
        return await reader.readuntil(b"\r\n")
    except asyncio.LimitOverrunError:
        raise ValueError("a line of the answer is too long") from None


class HttpPoster:
    """POSTs a body and returns the status code, reusing idle connections per (scheme, host,
    port) that `egress` allowed when they were opened. Reads a short answer (Content-Length or
    chunked, within `MAX_ANSWER_BODY`) so the connection can be reused, and closes it instead
    when the answer is longer or runs until close; raises `EgressRefused` (an OSError) for a
    destination the policy forbids, OSError, TimeoutError, ValueError (malformed answer)."""

    MAX_TARGETS = 1024  # parsed URLs kept; callback URLs are usually a few per customer
    # A receiver's answer is read this far at most: its status line is all a callback needs.
    MAX_ANSWER_HEAD = 16 * 1024
    MAX_ANSWER_BODY = 4 * 1024

    def __init__(
        self,
        *,
        timeout: float,
        egress: EgressPolicy | None = None,
        resolve: Resolve | None = None,
        max_idle_per_host: int = 64,
    ) -> None:
        self.timeout = timeout
        self.egress = egress if egress is not None else EgressPolicy()
        self.resolve = resolve  # None: the system's resolver
        self.max_idle_per_host = max_idle_per_host
        self._idle: dict[
            tuple[str, str, int], list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]
        ] = {}
        self._targets: dict[str, _Target] = {}
        self._deadlines = _Deadlines(timeout)
        self._ssl: ssl.SSLContext | None = None

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        target = self._targets.get(url)
        if target is None:
            target = _target(url)
            if len(self._targets) >= self.MAX_TARGETS:
                self._targets.clear()
            self._targets[url] = target
        fields = "".join([f"{name}: {value}\r\n" for name, value in headers.items()])
        request = b"%bContent-Length: %d\r\n%b\r\n%b" % (
            target.head,
            len(body),
            fields.encode("latin-1"),
            body,
        )
        loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        assert task is not None
        cancelling = task.cancelling()
        self._deadlines.start(task, loop)
        try:
            return await self._send(target, request)
        except asyncio.CancelledError:
            # Our own deadline's cancel becomes a TimeoutError; anyone else's goes on.
            if self._deadlines.finish(task) and task.uncancel() <= cancelling:
                raise TimeoutError from None
            raise
        finally:
            self._deadlines.finish(task)

    async def _send(self, target: _Target, request: bytes) -> int:
        origin = target.origin
        idle = self._idle.get(origin)
        while idle:
            reader, writer = idle.pop()
            if writer.is_closing() or reader.at_eof():
                writer.close()
                continue
            try:
                return await self._exchange(origin, reader, writer, request)
            except (OSError, asyncio.IncompleteReadError):
                writer.close()  # the server closed an idle connection: try a fresh one
            except BaseException:
                writer.close()  # timed out or cancelled half-way: the connection is unusable
                raise
        reader, writer = await open_connection(
            self.egress,
            target.hostname,
            target.port,
            ssl_context=self._ssl_context() if target.secure else None,
            # The stream buffers at most twice this before it stops reading the socket.
            limit=self.MAX_ANSWER_HEAD,
            resolve=self.resolve,
        )
        try:
            return await self._exchange(origin, reader, writer, request)
        except BaseException:
            writer.close()
            raise

    async def _exchange(
        self,
        origin: tuple[str, str, int],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        request: bytes,
    ) -> int:
        writer.write(request)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise ValueError("the answer's head is too long") from None
        status_line, _, header_block = head.decode("latin-1").partition("\r\n")
        version, _, rest = status_line.partition(" ")
        code = rest[:3]
        if not version.startswith("HTTP/1.") or not code.isdigit():
            raise ValueError(f"not an HTTP answer: {status_line[:60]!r}")
        fields: dict[str, str] = {}
        for line in header_block.split("\r\n"):
            name, _, value = line.partition(":")
            if name:
                fields[name.strip().lower()] = value.strip().lower()
        keep_alive = version == "HTTP/1.1" and fields.get("connection") != "close"
        # Read a short body to keep the connection; anything longer (or of unknown length) is
        # not drained: the connection is closed, so a receiver cannot make us buffer it.
        if "chunked" in fields.get("transfer-encoding", ""):
            budget = self.MAX_ANSWER_BODY
            while keep_alive:
                size = int((await _line(reader)).split(b";")[0], 16)
                if size == 0:  # trailer fields, if any, then the empty line
                    while (trailer := await _line(reader)) != b"\r\n":
                        budget -= len(trailer)
                        if budget < 0:
                            keep_alive = False
                            break
                    break
                if size + 2 > budget:
                    keep_alive = False
                    break
                budget -= size + 2
                await reader.readexactly(size + 2)
        elif "content-length" in fields:
            length = int(fields["content-length"])
            if 0 <= length <= self.MAX_ANSWER_BODY:
                await reader.readexactly(length)
            else:
                keep_alive = False
        elif int(code) not in (204, 304) and not 100 <= int(code) < 200:
            keep_alive = False  # the body runs until the server closes: not read at all
        idle = self._idle.setdefault(origin, [])
        if keep_alive and len(idle) < self.max_idle_per_host:
            idle.append((reader, writer))
        else:
            writer.close()
        return int(code)

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    def close(self) -> None:
        self._deadlines.close()
        self.close_idle()

    def close_idle(self) -> None:
        for connections in self._idle.values():
            for _, writer in connections:
                writer.close()
        self._idle.clear()
