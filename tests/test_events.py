"""The event-sink contract (`gateway.events`): sinks are built from the config through
`SINK_KINDS` (a new kind is one entry), the Gateway holds them by name, publishing with none is a
no-op, and a reload keeps unchanged sinks running while replacing changed ones."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from gateway.config import TandemConfig
from gateway.events import (
    SINK_KINDS,
    EventKind,
    EventSinks,
    EventStats,
    Payload,
    SinkSpec,
    sink_specs,
)


@dataclass
class RecordingSink:
    name: str
    settings: object
    stats: EventStats = field(default_factory=EventStats)
    events: list[tuple[str, str, Payload]] = field(default_factory=list)
    running: bool = False
    starts: int = 0

    def publish(self, kind: str, key: str, payload: Payload) -> None:
        self.stats.published += 1
        self.events.append((kind, key, payload))

    async def start(self) -> None:
        self.running = True
        self.starts += 1

    async def stop(self) -> None:
        self.running = False


def spec(name: str, settings: object = 1) -> SinkSpec:
    return SinkSpec(name, "recording", settings, lambda: RecordingSink(name, settings))


@pytest.fixture
def recording_kind() -> Iterator[list[SinkSpec]]:
    """A sink kind of the test's own, plugged in beside MQTT."""
    wanted: list[SinkSpec] = []

    def specs(_config: TandemConfig) -> Iterable[SinkSpec]:
        return list(wanted)

    SINK_KINDS["recording"] = specs
    yield wanted
    del SINK_KINDS["recording"]


def test_a_new_kind_of_sink_plugs_in_through_sink_kinds(recording_kind: list[SinkSpec]) -> None:
    recording_kind.append(spec("audit"))
    config = TandemConfig.model_validate({"mqtt": {"name": "broker"}})
    assert sorted(sink_specs(config)) == ["audit", "broker"]
    assert sink_specs(TandemConfig()) == {"audit": recording_kind[0]}


async def test_without_sinks_publishing_is_a_no_op() -> None:
    sinks = EventSinks.from_config(TandemConfig())
    assert not sinks.enabled and sinks.names() == []
    sinks.publish(EventKind.RECEIPT, "m1", {"status": "delivered"})
    assert not sinks.publish_to("mqtt", EventKind.MO, "447700900123", {})
    await sinks.start()
    await sinks.stop()


async def test_events_go_to_every_sink_or_to_the_one_named() -> None:
    sinks = EventSinks({"a": spec("a"), "b": spec("b")})
    await sinks.start()
    sinks.publish(EventKind.LINK, "carrier", {"state": "up"})
    assert sinks.publish_to("b", EventKind.MO, "447700900123", {"text": "STOP"})
    a, b = sinks.get("a"), sinks.get("b")
    assert isinstance(a, RecordingSink) and isinstance(b, RecordingSink)
    assert [e[0] for e in a.events] == ["link"]
    assert [e[0] for e in b.events] == ["link", "mo"]
    assert a.events[0][2] is not b.events[0][2]  # each sink owns its payload
    assert sinks.stats()["b"].published == 2


async def test_a_reload_keeps_unchanged_sinks_and_replaces_changed_ones() -> None:
    sinks = EventSinks({"same": spec("same"), "changed": spec("changed"), "gone": spec("gone")})
    await sinks.start()
    same, changed, gone = (sinks.get(n) for n in ("same", "changed", "gone"))
    result = await sinks.replace(
        {"same": spec("same"), "changed": spec("changed", 2), "new": spec("new")}
    )
    assert sorted(result) == ["changed restarted", "gone stopped", "new added"]
    assert sinks.get("same") is same and isinstance(same, RecordingSink) and same.running
    assert same.starts == 1  # never stopped, never started again
    assert isinstance(changed, RecordingSink) and not changed.running
    assert isinstance(gone, RecordingSink) and not gone.running and sinks.get("gone") is None
    fresh: Any = sinks.get("changed")
    assert fresh is not changed and fresh.running and fresh.settings == 2
    assert sinks.get("new").running  # type: ignore[union-attr]
