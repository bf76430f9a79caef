"""The MQTT event sink: events as JSON on a broker (aiomqtt), behind `gateway.events.EventSink`.

Owns the topic layout, the connection with its last will, the bounded buffer and the reconnect
with backoff. Topics, under `[mqtt] topic_prefix` (default `tandem/`):
- `tandem/mo/<to>`: an MO routed to this sink, `<to>` the number it was sent to.
- `tandem/receipt/<message id>`: every status the gateway recorded for an MT.
- `tandem/link/<name>/state`: a link's state, retained (a subscriber that comes later learns
  the current state at once).
- `tandem/status`: "online" (retained) once connected; "offline" (retained) on a clean stop, and
  by the broker through the last will when the daemon dies or its connection is cut.

Must never: block or fail the message path. `publish` appends to a deque and sets an event; when
the buffer is full the oldest event is dropped and counted. JSON is encoded in the sender task.
Events go out in batches (two of 100 on the wire at once), each event through aiomqtt's
`publish`, the batch's acknowledgements awaited together; aiomqtt owns the connection, the will,
the keepalive and TLS (`[mqtt] url = "mqtts://..."`, `tls_ca_file`, a client certificate).
Delivery is at least once at QoS 1 and 2 across reconnects (an event whose acknowledgement was
lost with the connection is sent again), at most once at QoS 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import random
import ssl
from collections import deque
from typing import Any

import aiomqtt

from gateway.config import MqttConfig
from gateway.events import EventKind, EventStats, Payload, SinkSpec
from gateway.tasks import cancel_and_wait

log = logging.getLogger("tandem.mqtt")

# Events published together, and batches on the wire at once: throughput is about
# BATCH * BATCHES_IN_FLIGHT per round trip; aiomqtt's cost per publish grows with what is in
# flight (it counts its pending calls each time), so the window stays modest.
BATCH = 100
BATCHES_IN_FLIGHT = 2
STOP_FLUSH_SECONDS = 2.0
# Characters a topic level must not contain: the wildcards, the level separator and NUL.
_TOPIC_UNSAFE = str.maketrans({"+": "", "#": "_", "/": "_", "\0": "_"})
_RETAINED_KINDS = frozenset({EventKind.LINK.value})
# (topic, payload: a dict until the sender task encodes it, retained)
_Event = tuple[str, Payload | bytes, bool]


def topic_of(prefix: str, kind: str, key: str) -> str:
    """The topic of one event. Numbers lose their '+' (a wildcard in MQTT)."""
    level = key.translate(_TOPIC_UNSAFE) or "_"
    if kind == EventKind.LINK:
        return f"{prefix}link/{level}/state"
    return f"{prefix}{kind}/{level}"


def sink_spec(settings: MqttConfig) -> SinkSpec:
    """One `[mqtt]` section as a sink (`gateway.events.SinkPlugin` calls it)."""
    return SinkSpec(settings.name, "mqtt", settings, lambda: MqttSink(settings))


class MqttSink:
    """One broker connection, kept up by a task of its own while the sink runs."""

    def __init__(self, settings: MqttConfig) -> None:
        self.settings = settings
        self._stats = EventStats()
        self._buffer: deque[_Event] = deque()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._stop_requested = asyncio.Event()
        self.connected = asyncio.Event()
        self.status_topic = f"{settings.topic_prefix}status"

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def stats(self) -> EventStats:
        self._stats.buffered = len(self._buffer)
        return self._stats

    def publish(self, kind: str, key: str, payload: Payload) -> None:
        stats = self._stats
        stats.published += 1
        buffer = self._buffer
        if len(buffer) >= self.settings.buffer:
            buffer.popleft()  # the oldest goes: what comes later says more about now
            stats.dropped += 1
        buffer.append(
            (topic_of(self.settings.topic_prefix, kind, key), payload, kind in _RETAINED_KINDS)
        )
        self._wakeup.set()

    async def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._stop_requested.clear()
            self._task = asyncio.create_task(self._run(), name=f"tandem-mqtt-{self.name}")

    async def stop(self) -> None:
        """Flush what is buffered for up to STOP_FLUSH_SECONDS while connected, publish the
        retained "offline", disconnect (cleanly: the broker does not send the last will)."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        self._stop_requested.set()
        self._wakeup.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), STOP_FLUSH_SECONDS + self.settings.timeout)
        except (TimeoutError, Exception):
            await cancel_and_wait(task, suppress=(Exception,))
        if self._buffer:
            # Never sent: the broker was away for the whole flush.
            self._stats.dropped += len(self._buffer)
            log.warning("mqtt %s: %d events not sent at stop", self.name, len(self._buffer))
            self._buffer.clear()

    # --- the sender task -----------------------------------------------------------------------

    async def _run(self) -> None:
        settings = self.settings
        delay = settings.reconnect_initial
        while not self._stopping:
            try:
                async with self._new_client() as client:
                    self._stats.connects += 1
                    delay = settings.reconnect_initial
                    log.info("mqtt %s: connected to %s", self.name, settings.url)
                    await client.publish(
                        self.status_topic,
                        b"online",
                        qos=settings.qos,
                        retain=True,
                        timeout=settings.timeout,
                    )
                    self.connected.set()
                    await self._send_until_stopped(client)
                    await client.publish(
                        self.status_topic,
                        b"offline",
                        qos=settings.qos,
                        retain=True,
                        timeout=settings.timeout,
                    )
                    return
            except (aiomqtt.MqttError, OSError, TimeoutError, ssl.SSLError) as exc:
                if self.connected.is_set():
                    self._stats.disconnects += 1
                    log.warning("mqtt %s: connection lost: %s", self.name, _one_line(exc))
                else:
                    self._stats.connect_failures += 1
                    log.warning(
                        "mqtt %s: cannot connect to %s: %s (again in %.1f s)",
                        self.name,
                        settings.url,
                        _one_line(exc),
                        delay,
                    )
            finally:
                self.connected.clear()
            if self._stopping:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._stop_requested.wait(), delay * random.uniform(0.8, 1.2)
                )
            delay = min(delay * 2, settings.reconnect_max)

    async def _send_until_stopped(self, client: aiomqtt.Client) -> None:
        # The message iterator ends with MqttError when the connection drops: the way aiomqtt
        # tells an idle client (we subscribe to nothing, so it yields nothing else).
        watcher = asyncio.create_task(_until_disconnected(client))
        try:
            await self._send_loop(client, watcher)
        finally:
            await cancel_and_wait(watcher, suppress=(aiomqtt.MqttError,))

    async def _send_loop(self, client: aiomqtt.Client, watcher: asyncio.Task[None]) -> None:
        """Keep up to BATCHES_IN_FLIGHT batches on the wire: the broker's round trip is paid
        once per window, not once per batch. A batch that fails (no acknowledgement in time,
        the connection lost) puts its unacknowledged events back at the front, in order,
        and ends the connection."""
        buffer = self._buffer
        loop = asyncio.get_running_loop()
        flush_until: float | None = None
        in_flight: list[tuple[list[_Event], asyncio.Task[list[_Event]]]] = []
        try:
            while True:
                while in_flight and in_flight[0][1].done():
                    batch, task = in_flight.pop(0)
                    failed = task.result()
                    if failed:
                        self._put_back(failed, [_unacknowledged(b, t) for b, t in in_flight])
                        raise aiomqtt.MqttError("events not acknowledged in time")
                if self._stopping:
                    flush_until = flush_until or loop.time() + STOP_FLUSH_SECONDS
                    if (not buffer and not in_flight) or loop.time() > flush_until:
                        return
                if buffer and len(in_flight) < BATCHES_IN_FLIGHT:
                    batch = [buffer.popleft() for _ in range(min(BATCH, len(buffer)))]
                    in_flight.append((batch, asyncio.create_task(self._send_batch(client, batch))))
                    continue
                self._wakeup.clear()
                woken = asyncio.ensure_future(self._wakeup.wait())
                waits: list[asyncio.Future[Any]] = [woken, watcher]
                if in_flight:
                    waits.append(in_flight[0][1])
                timeout = None if flush_until is None else max(flush_until - loop.time(), 0)
                await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                woken.cancel()
                if watcher.done():
                    # What was acknowledged before the connection went stays sent.
                    self._put_back([], [_unacknowledged(b, task) for b, task in in_flight])
                    watcher.result()  # raises the MqttError of the lost connection
                    raise aiomqtt.MqttError("disconnected")
        finally:
            for _, task in in_flight:
                task.cancel()

    def _put_back(self, failed: list[_Event], later_batches: list[list[_Event]]) -> None:
        """Unacknowledged events back at the front of the buffer, in their order; past the
        bound the newest of them go (counted)."""
        again = [*failed, *(event for batch in later_batches for event in batch)]
        later_batches.clear()
        self._buffer.extendleft(reversed(again))
        while len(self._buffer) > self.settings.buffer:
            self._buffer.pop()
            self._stats.dropped += 1

    async def _send_batch(self, client: aiomqtt.Client, batch: list[_Event]) -> list[_Event]:
        """The events of `batch` not acknowledged (in time, or at all), in their order.

        Each goes through aiomqtt's `publish`, all of them at once: the batch costs one
        round trip, not one per event. They wait for their acknowledgements (QoS 1 and 2)
        together, up to `[mqtt] timeout` for the batch: one timer, not one per event (a
        timeout per `publish` costs a task of its own per event)."""
        settings = self.settings
        sendable: list[_Event] = []
        publishes: list[asyncio.Task[None]] = []
        try:
            for event in batch:
                topic, payload, retain = event
                if not isinstance(payload, bytes):
                    try:
                        payload = json.dumps(payload, separators=(",", ":"), default=str).encode()
                    except (TypeError, ValueError):
                        self._stats.dropped += 1
                        log.warning("mqtt %s: an event for %s cannot be encoded", self.name, topic)
                        continue
                sendable.append(event)
                publishes.append(
                    asyncio.ensure_future(
                        client.publish(
                            topic, payload, qos=settings.qos, retain=retain, timeout=math.inf
                        )
                    )
                )
            if publishes:
                await asyncio.wait(publishes, timeout=settings.timeout)
            failed = [
                event
                for event, task in zip(sendable, publishes, strict=True)
                if not task.done() or task.cancelled() or task.exception() is not None
            ]
        finally:
            for task in publishes:
                task.cancel()  # those still waiting: unacknowledged, sent again
        self._stats.sent += len(sendable) - len(failed)
        return failed

    def _new_client(self) -> aiomqtt.Client:
        settings = self.settings
        client = aiomqtt.Client(
            settings.host,
            settings.port,
            username=settings.username,
            password=settings.password,
            identifier=settings.client_id,
            will=aiomqtt.Will(self.status_topic, b"offline", qos=settings.qos, retain=True),
            keepalive=settings.keepalive,
            timeout=settings.timeout,
            tls_context=self._tls_context() if settings.use_tls else None,
            logger=log,
            # No limit in paho: the sender bounds what is in flight (BATCHES_IN_FLIGHT), and
            # paho's own limit costs a walk over every unacknowledged message per ack.
            max_inflight_messages=0,
        )
        # A batch in flight is normal here, not the "pending calls" aiomqtt warns about.
        client.pending_calls_threshold = BATCH * BATCHES_IN_FLIGHT * 2
        return client

    def _tls_context(self) -> ssl.SSLContext:
        settings = self.settings
        context = ssl.create_default_context(
            cafile=str(settings.tls_ca_file) if settings.tls_ca_file else None
        )
        if settings.tls_cert_file is not None and settings.tls_key_file is not None:
            context.load_cert_chain(str(settings.tls_cert_file), str(settings.tls_key_file))
        return context


def _unacknowledged(batch: list[_Event], task: asyncio.Task[list[_Event]]) -> list[_Event]:
    if task.done() and not task.cancelled() and task.exception() is None:
        return task.result()
    return batch


async def _until_disconnected(client: aiomqtt.Client) -> None:
    async for _message in client.messages:
        pass


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
