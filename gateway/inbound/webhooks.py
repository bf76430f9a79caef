"""Inbound webhooks: MOs POSTed as JSON to a route's URL, signed, retried until delivered.

Owns `WebhookSender`: the owed deliveries are rows of the inbound store (`webhook_next` set in
the same transaction that keeps the MO), so a restart or `kill -9` loses none: it queues what is
owed when it starts, a page at a time, and settles a row once delivered or given up. The body
is signed as receipt callbacks are (`dlr.callback.sign`, header X-Tandem-Signature, with the
route's `webhook_secret`); retries follow `dlr.callback.RetrySchedule`; every connection goes
through the egress rule (`gateway.egress`), as callbacks do.

Never does: decide where an MO goes (the router) or keep MOs (the handler).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from dlr.callback import SIGNATURE_HEADER, RetrySchedule, is_retryable, sign
from gateway.callbacks import HttpPoster
from gateway.egress import EgressPolicy, EgressRefused, redact_url
from gateway.inbound.routing import InboundRoute
from gateway.inbound.stats import InboundStats
from gateway.store.base import InboundRecord, InboundStore, StoreError
from gateway.tasks import cancel_and_wait

log = logging.getLogger("tandem.inbound")

WORKERS = 8


def webhook_body(record: InboundRecord) -> bytes:
    """The JSON an inbound webhook receives."""
    row = record.row
    body: dict[str, Any] = {
        "id": str(record.id),
        "from": row.source,
        "to": row.destination,
        "text": row.text,
        "data_coding": row.data_coding,
        "parts": row.part_count,
        "complete": row.complete,
        "received_at": row.received_at,
        "link": row.link,
    }
    if row.text is None:
        body["payload_hex"] = row.payload.hex()
    if row.carrier_timestamp is not None:
        body["carrier_timestamp"] = row.carrier_timestamp
    if row.keyword is not None:
        body["keyword"] = {"class": row.keyword_class, "word": row.keyword, "lenient": row.lenient}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


class WebhookSender:
    """Delivers owed inbound webhooks; `owe(record)` after the MO's row is committed."""

    def __init__(
        self,
        store: InboundStore,
        routes: Callable[[str], InboundRoute | None],
        *,
        schedule: RetrySchedule,
        timeout: float,
        egress: EgressPolicy,
        clock: Callable[[], float] = time.time,
        stats: InboundStats | None = None,
    ) -> None:
        self.store = store
        self.routes = routes  # route name -> its current config (None: no longer configured)
        self.schedule = schedule
        self.timeout = timeout
        self.egress = egress
        self.clock = clock
        self.stats = stats if stats is not None else InboundStats()
        self._due: list[tuple[float, int, int, InboundRecord]] = []  # (at, id, attempts, record)
        self._wake = asyncio.Event()
        self._ready: asyncio.Queue[tuple[InboundRecord, int]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._poster: HttpPoster | None = None

    async def start(self) -> None:
        self._poster = HttpPoster(timeout=self.timeout, egress=self.egress)
        self._tasks.append(asyncio.create_task(self._schedule_forever()))
        self._tasks.extend(asyncio.create_task(self._work_forever()) for _ in range(WORKERS))
        after = 0
        while True:
            page = await self.store.webhooks_owed(after_id=after, limit=1000)
            if not page:
                break
            for record in page:
                self._later(record, record.row.webhook_next or 0.0, record.webhook_attempts)
            after = page[-1].id

    async def stop(self) -> None:
        await cancel_and_wait(*self._tasks)
        self._tasks.clear()
        if self._poster is not None:
            self._poster.close()
            self._poster = None

    def set_egress(self, egress: EgressPolicy) -> None:
        """A reload: new connections follow the new rule; idle ones the old rule allowed are
        closed (requests in flight finish)."""
        self.egress = egress
        if self._poster is not None:
            self._poster.close_idle()
            self._poster = HttpPoster(timeout=self.timeout, egress=egress)

    def owe(self, record: InboundRecord) -> None:
        self._ready.put_nowait((record, 0))

    def _later(self, record: InboundRecord, at: float, attempts: int) -> None:
        heapq.heappush(self._due, (at, record.id, attempts, record))
        self._wake.set()

    async def _schedule_forever(self) -> None:
        while True:
            now = self.clock()
            while self._due and self._due[0][0] <= now:
                _, _, attempts, record = heapq.heappop(self._due)
                self._ready.put_nowait((record, attempts))
            self._wake.clear()
            delay = min(self._due[0][0] - now, 1.0) if self._due else 1.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def _work_forever(self) -> None:
        while True:
            record, attempts = await self._ready.get()
            try:
                await self._attempt(record, attempts)
            except StoreError as exc:  # still owed in the store: tried again after a restart
                log.warning(
                    "inbound webhook of MO %d: recording the attempt failed: %s", record.id, exc
                )
            except Exception:
                log.exception("inbound webhook of MO %d failed", record.id)

    async def _attempt(self, record: InboundRecord, attempts: int) -> None:
        assert self._poster is not None
        route = self.routes(record.row.webhook or "")
        if route is None or route.webhook is None or route.webhook_secret is None:
            try:
                await self.store.webhook_attempted(
                    record.id, next_at=None, error="the route is no longer configured"
                )
            finally:
                self.stats.webhook_given_up += 1
            return
        body = webhook_body(record)
        now = self.clock()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(route.webhook_secret, body, int(now)),
        }
        self.stats.webhook_attempts += 1
        status: int | None
        error: str | None
        try:
            status = await self._poster.post(route.webhook, body, headers)
            error = None if 200 <= status <= 299 else f"HTTP {status}"
        except EgressRefused as exc:
            status, error = 403, f"refused by [egress]: {exc}"
        except (OSError, TimeoutError, ValueError) as exc:
            status, error = None, f"{type(exc).__name__}: {exc}"
        # Each outcome is counted once the store has the attempt (or refused it): whoever reads
        # the stats finds the row in the state they say, and a delivered MO is no longer owed.
        if error is None:
            try:
                await self.store.webhook_attempted(record.id, next_at=None, error=None)
            finally:
                self.stats.webhook_delivered += 1
            return
        attempt = attempts + 1
        next_at = (
            self.schedule.next_attempt(attempt, record.row.received_at, now)
            if is_retryable(status) and status != 403
            else None
        )
        if next_at is None:
            log.warning(
                "inbound webhook %s of MO %d given up: %s",
                redact_url(route.webhook),
                record.id,
                error,
            )
        else:
            # Queued before the write; the store applies writes in the order they were asked
            # for, so this attempt is recorded before the next one can be.
            self._later(record, next_at, attempt)
        try:
            await self.store.webhook_attempted(record.id, next_at=next_at, error=error)
        finally:
            if next_at is None:
                self.stats.webhook_given_up += 1
            else:
                self.stats.webhook_retries += 1
