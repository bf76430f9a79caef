"""HTTP receipt callbacks: POST each status change a customer asked for to their URL.

Owns `CallbackSender`, a `Gateway` status listener. For a message with a `callback_url` (given
at submit) or sent with an API key that has one (`tandem keys create --callback-url`), it POSTs
`dlr.callback.callback_body` (id, status, segment states with carrier ids, errors, timestamps),
signed with `dlr.callback.sign` under the key's callback secret in `X-Tandem-Signature`.
`[http] callback_events` chooses final statuses only (default) or every change.

Retries: an answer that `dlr.callback.is_retryable` calls temporary (no answer, 408, 425, 429,
5xx) is retried on `dlr.callback.RetrySchedule` (from `[http] callback_retry_*`), for at most
`callback_retry_for` seconds after the first attempt; other answers (a 4xx) are final. Each
request is signed again with a fresh timestamp. The outcome (delivered to the URL, or given up
and why) is recorded in the message's history, so `GET /v1/messages/{id}` shows it.
Retries wait in memory: callbacks due when the daemon stops are not sent after a restart.

Never does: change a message's status, or block the listener call (work goes to a queue that
`callback_concurrency` workers drain).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from dlr.callback import (
    SIGNATURE_HEADER,
    CallbackSegment,
    RetrySchedule,
    callback_body,
    is_retryable,
    sign,
)
from dlr.status import MessageStatus, StatusSource, is_final
from gateway.config import HttpConfig
from gateway.keys import KeyRing
from gateway.messages import Message
from gateway.store.base import MessageStore, StatusChange

log = logging.getLogger("tandem.callbacks")

# dlr.status has no source for callback outcomes yet; history details start with "callback".
CALLBACK_SOURCE = StatusSource.OPERATOR


@dataclass(slots=True)
class CallbackStats:
    """Counters for the metrics exporter."""

    queued: int = 0
    attempts: int = 0
    delivered: int = 0
    retried: int = 0
    given_up: int = 0


@dataclass(slots=True)
class _Delivery:
    message_id: str
    status: MessageStatus  # the status the callback reports
    url: str
    secret: str | None
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
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.keys = keys
        self.schedule = schedule
        self.events = events
        self.timeout = timeout
        self.concurrency = concurrency
        self.clock = clock
        self.stats = CallbackStats()
        self._changes: asyncio.Queue[tuple[Message, StatusChange]] = asyncio.Queue()
        self._deliveries: asyncio.Queue[_Delivery] = asyncio.Queue()
        self._workers: list[asyncio.Task[None]] = []
        self._retries: set[asyncio.TimerHandle] = set()
        self._session: aiohttp.ClientSession | None = None
        self._in_progress = 0

    @classmethod
    def from_config(
        cls, config: HttpConfig, *, store: MessageStore, keys: KeyRing
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
        )

    # --- the listener (synchronous, never blocks) ---------------------------------------------

    def message_status_changed(self, message: Message, change: StatusChange) -> None:
        if self.events == "final" and not is_final(message.status):
            return
        self._ensure_started()
        self._changes.put_nowait((message, change))

    # --- life cycle ---------------------------------------------------------------------------

    def _ensure_started(self) -> None:
        if self._workers:
            return
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            connector=aiohttp.TCPConnector(limit=self.concurrency),
        )
        self._workers = [
            asyncio.create_task(self._prepare_forever(), name="callback-prepare"),
            *(
                asyncio.create_task(self._deliver_forever(), name=f"callback-{n}")
                for n in range(self.concurrency)
            ),
        ]

    async def stop(self) -> None:
        for handle in self._retries:
            handle.cancel()
        self._retries.clear()
        for task in self._workers:
            task.cancel()
        for task in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._workers = []
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def idle(self) -> bool:
        """Nothing queued, being sent or waiting for a retry (tests and benchmarks wait on it)."""
        return (
            self._changes.empty()
            and self._deliveries.empty()
            and not self._in_progress
            and not self._retries
        )

    # --- work ---------------------------------------------------------------------------------

    async def _prepare_forever(self) -> None:
        while True:
            message, change = await self._changes.get()
            self._in_progress += 1
            try:
                delivery = await self._prepare(message, change)
                if delivery is not None:
                    self.stats.queued += 1
                    self._deliveries.put_nowait(delivery)
            except Exception:
                log.exception("callback for message %s could not be prepared", message.id)
            finally:
                self._in_progress -= 1

    async def _prepare(self, message: Message, change: StatusChange) -> _Delivery | None:
        key = await self.keys.record_by_name(message.account)
        url = message.callback_url or (key.callback_url if key is not None else None)
        if url is None:
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
        secret = key.callback_secret if key is not None else None
        return _Delivery(message.id, message.status, url, secret, body)

    async def _deliver_forever(self) -> None:
        while True:
            delivery = await self._deliveries.get()
            self._in_progress += 1
            try:
                await self._attempt(delivery)
            except Exception:
                log.exception("callback for message %s failed", delivery.message_id)
            finally:
                self._in_progress -= 1

    async def _attempt(self, delivery: _Delivery) -> None:
        assert self._session is not None
        now = self.clock()
        if delivery.attempt == 0:
            delivery.first_attempt_at = now
        delivery.attempt += 1
        self.stats.attempts += 1
        headers = {"Content-Type": "application/json"}
        if delivery.secret is not None:
            headers[SIGNATURE_HEADER] = sign(delivery.secret, delivery.body, int(now))
        status: int | None = None
        try:
            async with self._session.post(delivery.url, data=delivery.body, headers=headers) as r:
                status = r.status
                await r.read()
            outcome = f"HTTP {status}"
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            outcome = f"no answer ({type(exc).__name__})"
        if status is not None and 200 <= status < 300:
            self.stats.delivered += 1
            await self._record(delivery, f"callback to {delivery.url}: {outcome}")
            return
        delivery.last_outcome = outcome
        next_at = (
            self.schedule.next_attempt(delivery.attempt, delivery.first_attempt_at, self.clock())
            if is_retryable(status)
            else None
        )
        if next_at is None:
            self.stats.given_up += 1
            log.warning(
                "callback for message %s to %s given up after %d attempts: %s",
                delivery.message_id,
                delivery.url,
                delivery.attempt,
                outcome,
            )
            await self._record(delivery, f"callback to {delivery.url} given up: {outcome}")
            return
        self.stats.retried += 1
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle | None = None

        def retry() -> None:
            assert handle is not None
            self._retries.discard(handle)
            self._deliveries.put_nowait(delivery)

        handle = loop.call_later(max(0.0, next_at - self.clock()), retry)
        self._retries.add(handle)

    async def _record(self, delivery: _Delivery, detail: str) -> None:
        await self.store.record_history(
            delivery.message_id,
            status=delivery.status,
            source=CALLBACK_SOURCE,
            at=self.clock(),
            detail=f"{detail} (attempt {delivery.attempt})",
        )
