"""Events the daemon tells the outside world: the event-sink contract and the named sinks.

Owns `EventSink` (what a sink is: `publish(kind, key, payload)` that never blocks and never
raises, plus `start`/`stop`), `EventStats` (each sink's counters), `SinkSpec` (one configured
sink: its name, its settings and how to build it), `SINK_KINDS` (config -> specs, one entry per
kind of sink: MQTT today, a `SinkPlugin` naming `gateway.mqtt_sink`; a new kind is a new entry,
nothing else changes) and `EventSinks`, the
Gateway's registry (`gateway.events`) that fans an event out to every sink or hands it to one
named sink (the inbound routing's "event sink" destination), and swaps sinks on reload.

Event kinds and their keys (a sink turns them into its own addresses, e.g. MQTT topics):
- `mo`: an inbound message; key: the number it was sent to (digits, no '+').
- `receipt`: a status the gateway recorded for an MT (submitted, delivered, failed, ...,
  intermediate ones too); key: the message id.
- `link`: a link's state changed; key: the link name.

Must never: block or raise into the message path. `publish` takes the event or counts it dropped;
the I/O happens in the sink's own task. A sink owns the payload dict once it is published (it
may encode it later), so callers build a fresh dict per event.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from dlr.status import is_final

if TYPE_CHECKING:
    from gateway.config import TandemConfig
    from gateway.messages import Message
    from gateway.store.base import StatusChange

log = logging.getLogger("tandem.events")

Payload = dict[str, Any]


class EventKind(StrEnum):
    MO = "mo"
    RECEIPT = "receipt"
    LINK = "link"


@dataclass(slots=True)
class EventStats:
    """One sink's counters; the metrics exporter reads them (`EventSinks.stats()`)."""

    published: int = 0  # events handed to the sink
    sent: int = 0  # events the transport took (MQTT: acknowledged at the configured QoS)
    dropped: int = 0  # events lost: the buffer was full, or the event could not be encoded
    buffered: int = 0  # events waiting now
    connects: int = 0  # connections made
    connect_failures: int = 0  # connection attempts that failed
    disconnects: int = 0  # connections lost


class EventSink(Protocol):
    """Somewhere events go. `publish` never blocks and never raises: it buffers the event
    (bounded) or counts it in `stats.dropped`; a task started by `start` sends them."""

    @property
    def name(self) -> str: ...

    @property
    def stats(self) -> EventStats: ...

    def publish(self, kind: str, key: str, payload: Payload) -> None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None:
        """Send what is buffered (bounded in time), say goodbye if the kind has a way to, and
        release the connection."""


@dataclass(frozen=True, slots=True)
class SinkSpec:
    """One configured sink. Two specs with the same name and equal `settings` are the same
    sink: a reload keeps it running, untouched."""

    name: str
    kind: str
    settings: object
    build: Callable[[], EventSink]


# A kind of sink: which sinks of that kind a config asks for.
SinkKind = Callable[["TandemConfig"], Iterable[SinkSpec]]


@dataclass(frozen=True, slots=True)
class SinkPlugin:
    """A kind of sink whose code lives in a module of its own, named here and loaded only
    when a config has a section of that kind (MQTT's module loads aiomqtt). The module
    provides `sink_spec(section) -> SinkSpec`; this module never imports it by name, so a
    sink's module may import this one (for `SinkSpec`, `EventStats`, ...) freely."""

    sections: Callable[[TandemConfig], Iterable[Any]]
    module: str

    def __call__(self, config: TandemConfig) -> list[SinkSpec]:
        sections = list(self.sections(config))
        if not sections:
            return []
        sink_spec: Callable[[Any], SinkSpec] = importlib.import_module(self.module).sink_spec
        return [sink_spec(section) for section in sections]


SINK_KINDS: dict[str, SinkKind] = {
    "mqtt": SinkPlugin(lambda config: config.event_sink_sections().values(), "gateway.mqtt_sink"),
}


def sink_specs(config: TandemConfig) -> dict[str, SinkSpec]:
    """Every sink `config` asks for, by name (`TandemConfig` checks the names are unique)."""
    specs: dict[str, SinkSpec] = {}
    for kind in SINK_KINDS.values():
        for spec in kind(config):
            specs[spec.name] = spec
    return specs


class EventSinks:
    """The Gateway's sinks by name. With none configured every call is a no-op (`enabled` is
    False, so callers can skip building payloads)."""

    def __init__(self, specs: Mapping[str, SinkSpec] | None = None) -> None:
        self._specs: dict[str, SinkSpec] = dict(specs or {})
        self._sinks: dict[str, EventSink] = {
            name: spec.build() for name, spec in self._specs.items()
        }
        self._all: tuple[EventSink, ...] = tuple(self._sinks.values())
        self._started = False

    @classmethod
    def from_config(cls, config: TandemConfig) -> EventSinks:
        return cls(sink_specs(config))

    @property
    def enabled(self) -> bool:
        return bool(self._all)

    def names(self) -> list[str]:
        return list(self._sinks)

    def get(self, name: str) -> EventSink | None:
        return self._sinks.get(name)

    def stats(self) -> dict[str, EventStats]:
        return {name: sink.stats for name, sink in self._sinks.items()}

    def publish(self, kind: str, key: str, payload: Payload) -> None:
        """To every sink (receipts, link states)."""
        sinks = self._all
        if not sinks:
            return
        if len(sinks) == 1:
            sinks[0].publish(kind, key, payload)
            return
        for sink in sinks:
            sink.publish(kind, key, dict(payload))

    def publish_to(self, name: str, kind: str, key: str, payload: Payload) -> bool:
        """To the sink called `name` (an inbound route's destination); False when there is
        no such sink (it left the config on a reload, say)."""
        sink = self._sinks.get(name)
        if sink is None:
            return False
        sink.publish(kind, key, payload)
        return True

    async def start(self) -> None:
        self._started = True
        for sink in self._all:
            await sink.start()

    async def stop(self) -> None:
        self._started = False
        for sink in self._all:
            with contextlib.suppress(Exception):
                await sink.stop()

    async def replace(self, specs: Mapping[str, SinkSpec]) -> list[str]:
        """Reload: keep sinks whose settings did not change, stop the ones that left or
        changed, build and start the new ones. Returns what changed, one word per sink."""
        changes: list[str] = []
        kept: dict[str, EventSink] = {}
        leaving: list[EventSink] = []
        for name, sink in self._sinks.items():
            new = specs.get(name)
            if (
                new is not None
                and new.kind == self._specs[name].kind
                and (new.settings == self._specs[name].settings)
            ):
                kept[name] = sink
            else:
                leaving.append(sink)
                changes.append(f"{name} {'stopped' if new is None else 'restarted'}")
        arriving = {name: spec.build() for name, spec in specs.items() if name not in kept}
        changes += [f"{name} added" for name in arriving if name not in self._sinks]
        # Swap first (no await before it): events from now on go to the new set.
        self._sinks = {name: kept.get(name) or arriving[name] for name in specs}
        self._specs = dict(specs)
        self._all = tuple(self._sinks.values())
        for sink in leaving:
            with contextlib.suppress(Exception):
                await sink.stop()
        if self._started:
            for sink in arriving.values():
                await sink.start()
        return changes


class ReceiptEvents:
    """A `gateway.app.StatusListener`: every status change the gateway recorded for an MT
    becomes a `receipt` event keyed by the message id."""

    def __init__(self, sinks: EventSinks) -> None:
        self.sinks = sinks

    def message_status_changed(self, message: Message, change: StatusChange) -> None:
        if self.sinks.enabled:
            self.sinks.publish(EventKind.RECEIPT, message.id, receipt_payload(message, change))


def receipt_payload(message: Message, change: StatusChange) -> Payload:
    status = message.status
    payload: Payload = {
        "id": message.id,
        "status": status.value,
        "final": is_final(status),
        "at": message.updated_at,
        "account": message.account,
        "channel": message.channel.value,
        "to": message.destination,
        "route": message.route,
        "link": message.link,
        "error": message.last_error,
    }
    if message.reference is not None:
        payload["reference"] = message.reference
    segment = change.segment
    if segment is not None:
        payload["segment"] = {
            "index": segment.index,
            "total": segment.total,
            "status": segment.status.value,
            "carrier_id": segment.carrier_id,
            "error": segment.error,
        }
    return payload


def link_state_payload(link: str, state: str, *, at: float | None = None) -> Payload:
    return {"link": link, "state": state, "at": time.time() if at is None else at}


def mo_payload(
    *,
    link: str,
    source: str,
    destination: str,
    text: str | None,
    received_at: float,
    **more: Any,
) -> Payload:
    """The `mo` event's payload (the inbound routing fills it from the whole message)."""
    return {
        "link": link,
        "from": source,
        "to": destination,
        "text": text,
        "received_at": received_at,
        **more,
    }
