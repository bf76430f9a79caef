"""Events on a real Mosquitto broker, read by an independent subscriber (`mosquitto_sub`).

What is shown: a message's recorded statuses (submitted, delivered) arrive on
`<prefix>receipt/<id>` as JSON, link states on `<prefix>link/<name>/state` (retained), the
retained `<prefix>status` is "online" while the daemon runs and "offline" after a clean stop and
after `kill -9` (the broker's last will); with the broker unreachable or silent the message path
goes on and the sink's bounded buffer counts what it drops; a broker that comes back gets what
was buffered (reconnect with backoff)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dlr.status import MessageStatus
from gateway.app import Gateway
from gateway.config import MqttConfig, load_config
from gateway.events import EventKind
from gateway.mqtt_sink import MqttSink, topic_of
from gateway.simulator import SmscSimulator
from tests.daemon_processes import (
    daemon,
    free_port,
    link_toml,
    simulator,
    wait_http,
    write_config,
)
from tests.mqtt_broker import (
    PrivateBroker,
    Subscriber,
    broker_port,
    publish,
    unique_prefix,
)
from tests.test_receipts_e2e import Daemon, daemon_config, simulator_settings
from tests.waiting import WAIT, wait_for


@pytest.fixture
def broker() -> int:
    return broker_port()


@pytest.fixture
def prefix(broker: int) -> Iterator[str]:
    chosen = unique_prefix()
    yield chosen
    # Retained messages of this test's topic tree would stay on the shared broker: clear them.
    publish(broker, f"{chosen}status", "", retain=True)
    publish(broker, f"{chosen}link/carrier/state", "", retain=True)


def mqtt(port: int, prefix: str, **extra: Any) -> dict[str, Any]:
    return {
        "url": f"mqtt://127.0.0.1:{port}",
        "topic_prefix": prefix,
        "client_id": f"{prefix.rstrip('/')}",
        "keepalive": 2,
        "reconnect_initial": 0.1,
        "reconnect_max": 0.5,
        **extra,
    }


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    started: list[Daemon] = []

    async def start(mqtt_section: dict[str, Any]) -> Daemon:
        sim = SmscSimulator(simulator_settings())
        await sim.start()
        gateway = Gateway(daemon_config(tmp_path / "data", sim.port, mqtt=mqtt_section))
        await gateway.start()
        await wait_for(lambda: "tandem" in sim.bound_system_ids, "the link to bind")
        made = Daemon(gateway, sim)
        started.append(made)
        return made

    yield start
    for made in started:
        await made.gateway.stop()
        await made.simulator.stop()


def events(subscriber: Subscriber, topic: str) -> list[dict[str, Any]]:
    return [json.loads(payload) for payload in subscriber.on(topic)]


async def test_statuses_link_states_and_online_reach_an_independent_subscriber(
    broker: int, prefix: str, running: Callable[..., Any]
) -> None:
    subscriber = Subscriber(broker, prefix).start()
    try:
        made: Daemon = await running(mqtt(broker, prefix))
        message_id = await made.send("hello")
        await made.wait_status(message_id, MessageStatus.DELIVERED)
        topic = f"{prefix}receipt/{message_id}"
        await asyncio.to_thread(
            subscriber.wait,
            lambda: any(e["status"] == "delivered" for e in events(subscriber, topic)),
            "the delivered event",
        )
        statuses = [e["status"] for e in events(subscriber, topic)]
        assert statuses == ["submitted", "delivered"]
        delivered = events(subscriber, topic)[-1]
        assert delivered["id"] == message_id and delivered["final"] is True
        assert delivered["link"] == "carrier" and delivered["to"] == "447911123456"
        assert subscriber.on(f"{prefix}status")[-1] == "online"
        states = [e["state"] for e in events(subscriber, f"{prefix}link/carrier/state")]
        assert states[-1] == "up"
        # The subscriber can see an event before its PUBACK reaches the sink, which counts an
        # event as sent only once the broker acknowledged it.
        await wait_for(
            lambda: made.gateway.events.stats()["mqtt"].sent >= 3, "the broker's acknowledgements"
        )
        assert made.gateway.events.stats()["mqtt"].dropped == 0

        await made.gateway.stop()
        await asyncio.to_thread(
            subscriber.wait,
            lambda: subscriber.on(f"{prefix}status")[-1:] == ["offline"],
            "offline after a clean stop",
        )
        # The link's last state went out before the goodbye.
        assert events(subscriber, f"{prefix}link/carrier/state")[-1]["state"] == "stopped"
    finally:
        subscriber.stop()


async def test_an_unreachable_broker_does_not_hold_up_messages_and_drops_are_counted(
    running: Callable[..., Any],
) -> None:
    nobody = free_port()  # nothing listens here
    made: Daemon = await running(mqtt(nobody, "tandem/", buffer=3))
    ids = [await made.send(f"hello {n}") for n in range(5)]
    for message_id in ids:
        await made.wait_status(message_id, MessageStatus.DELIVERED)
    # Link up, then submitted and delivered for each of 5 messages: 11 events into room for 3.
    # A status event is published once the store has the status: it may follow a moment later.
    await wait_for(lambda: made.gateway.events.stats()["mqtt"].published >= 11, "11 events")
    stats = made.gateway.events.stats()["mqtt"]
    assert stats.dropped == stats.published - 3 and stats.buffered == 3
    await wait_for(lambda: stats.connect_failures >= 2, "reconnect attempts")
    assert stats.sent == 0
    started = time.monotonic()
    await made.gateway.stop()
    assert time.monotonic() - started < 10


async def test_a_broker_that_never_answers_does_not_hold_up_messages(
    running: Callable[..., Any],
) -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # takes the connection, never sends a CONNACK

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        made: Daemon = await running(mqtt(port, "tandem/", timeout=1.0))
        await wait_for(lambda: bool(accepted), "the sink to connect")
        message_id = await made.send("hello")
        await made.wait_status(message_id, MessageStatus.DELIVERED)
        await wait_for(lambda: made.gateway.events.stats()["mqtt"].buffered >= 2, "events kept")
        assert made.gateway.events.stats()["mqtt"].sent == 0
        started = time.monotonic()
        await made.gateway.stop()
        assert time.monotonic() - started < 10
    finally:
        for writer in accepted:
            writer.close()
        server.close()


async def test_a_broker_that_comes_back_gets_what_was_buffered(tmp_path: Path) -> None:
    port = free_port()
    broker = PrivateBroker(port, tmp_path).start()
    prefix = unique_prefix()
    sink = MqttSink(MqttConfig.model_validate(mqtt(port, prefix)))
    subscriber = Subscriber(port, prefix).start()
    await sink.start()
    try:
        await asyncio.wait_for(sink.connected.wait(), WAIT)
        sink.publish(EventKind.RECEIPT, "m1", {"n": 1})
        await asyncio.to_thread(subscriber.wait, lambda: subscriber.on(f"{prefix}receipt/m1"), "m1")
        subscriber.stop()
        broker.stop()
        await wait_for(lambda: not sink.connected.is_set(), "the sink to see the broker gone")
        for n in range(2, 6):
            sink.publish(EventKind.RECEIPT, f"m{n}", {"n": n})
        await wait_for(lambda: sink.stats.connect_failures >= 1, "a reconnect attempt to fail")
        assert sink.stats.buffered == 4
        broker.start()
        subscriber = Subscriber(port, prefix).start()
        await asyncio.wait_for(sink.connected.wait(), WAIT)
        await asyncio.to_thread(
            subscriber.wait,
            lambda: all(subscriber.on(f"{prefix}receipt/m{n}") for n in range(2, 6)),
            "the buffered events",
        )
        assert sink.stats.dropped == 0 and sink.stats.disconnects == 1
    finally:
        await sink.stop()
        subscriber.stop()
        broker.stop()


async def test_kill_9_turns_the_retained_status_offline_through_the_last_will(
    tmp_path: Path, broker: int, prefix: str
) -> None:
    smsc_port, http_port = free_port(), free_port()
    smsc = simulator(tmp_path, "smsc", smsc_port).start()
    extra = "\n".join(
        ["[mqtt]", *(f"{key} = {json.dumps(value)}" for key, value in mqtt(broker, prefix).items())]
    )
    routes = '[[routes]]\nname = "all"\npriority = 1\ntargets = ["carrier"]\n'
    config = write_config(tmp_path, http_port, [link_toml("carrier", smsc_port)], routes)
    config.write_text(config.read_text() + "\n" + extra + "\n")
    subscriber = Subscriber(broker, prefix).start()
    tandem = daemon(tmp_path, config).start()
    try:
        await wait_http(f"http://127.0.0.1:{http_port}/openapi.json")  # its start: its own limit
        status = f"{prefix}status"
        await asyncio.to_thread(
            subscriber.wait, lambda: subscriber.on(status)[-1:] == ["online"], "online"
        )
        await asyncio.to_thread(
            subscriber.wait,
            lambda: subscriber.on(f"{prefix}link/carrier/state"),
            "the link's state",
        )
        tandem.kill()
        # keepalive 2 s: the broker gives up after 1.5 x that and publishes the will.
        killed = time.monotonic()
        await asyncio.to_thread(
            subscriber.wait, lambda: subscriber.on(status)[-1:] == ["offline"], "the last will"
        )
        assert time.monotonic() - killed < 10
        # Retained: a subscriber that comes later is told at once.
        late = Subscriber(broker, prefix).start()
        try:
            late.wait(lambda: late.on(status) == ["offline"], "the retained status")
        finally:
            late.stop()
    finally:
        tandem.kill()
        smsc.stop()
        subscriber.stop()


def test_topics_follow_the_documented_layout() -> None:
    assert topic_of("tandem/", "mo", "447700900123") == "tandem/mo/447700900123"
    assert topic_of("tandem/", "receipt", "01HXYZ") == "tandem/receipt/01HXYZ"
    assert topic_of("tandem/", "link", "carrier-a") == "tandem/link/carrier-a/state"
    # '+' and '#' are wildcards and '/' a level: none may end up inside one level of a topic.
    assert topic_of("tandem/", "mo", "+4477#1/2") == "tandem/mo/4477_1_2"


def test_the_mqtt_section_is_checked_with_the_key_named(tmp_path: Path) -> None:
    from gateway.config import ConfigError

    def load(section: str) -> None:
        path = tmp_path / "bad.toml"
        path.write_text(f"[mqtt]\n{section}\n", encoding="utf-8")
        load_config(path)

    for section, key in (
        ('url = "http://broker"', "mqtt.url"),
        ('url = "mqtt://user:pw@broker"', "mqtt.url"),
        ('topic_prefix = "tandem/#/"', "mqtt.topic_prefix"),
        ("qos = 3", "mqtt.qos"),
        ('password = "x"', "mqtt.password"),
    ):
        with pytest.raises(ConfigError) as caught:
            load(section)
        assert caught.value.key == key, section
    settings = MqttConfig.model_validate({"url": "mqtts://broker.example"})
    assert settings.use_tls and settings.port == 8883 and settings.topic_prefix == "tandem/"


def toml_of(section: str, values: dict[str, Any]) -> str:
    return f"[{section}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items())


async def test_an_mo_routed_to_the_sink_arrives_on_mo_topic_and_a_reload_moves_the_route(
    tmp_path: Path, broker: int, prefix: str
) -> None:
    sim = SmscSimulator(simulator_settings())
    await sim.start()

    def write(to: str) -> Path:
        path = tmp_path / "tandem.toml"
        path.write_text(
            f"data_dir = {json.dumps(str(tmp_path / 'data'))}\n"
            + toml_of("smpp_server", {"enabled": False})
            + toml_of("http", {"enabled": False})
            + toml_of("mqtt", mqtt(broker, prefix))
            + "[[links]]\n"
            + "".join(
                f"{k} = {json.dumps(v)}\n"
                for k, v in {
                    "type": "smpp",
                    "name": "carrier",
                    "host": "127.0.0.1",
                    "port": sim.port,
                    "system_id": "tandem",
                }.items()
            )
            + f'[[inbound.routes]]\nname = "shortcode"\nto = ["{to}"]\nevent_sink = "mqtt"\n',
            encoding="utf-8",
        )
        return path

    gateway = Gateway(load_config(write("7700")))
    subscriber = Subscriber(broker, prefix).start()
    await gateway.start()
    try:
        await wait_for(lambda: "tandem" in sim.bound_system_ids, "the link to bind")
        sim.inject_mo("447911123456", "7700", "hello mqtt", system_id="tandem")
        await asyncio.to_thread(
            subscriber.wait, lambda: subscriber.on(f"{prefix}mo/7700"), "the MO event"
        )
        event = json.loads(subscriber.on(f"{prefix}mo/7700")[0])
        assert event["text"] == "hello mqtt" and event["from"].endswith("447911123456")

        assert await gateway.reload(write("7701"))
        sim.inject_mo("447911123456", "7700", "to the old route", system_id="tandem")
        sim.inject_mo("447911123456", "7701", "to the new route", system_id="tandem")
        await asyncio.to_thread(
            subscriber.wait, lambda: subscriber.on(f"{prefix}mo/7701"), "the MO event"
        )
        assert len(subscriber.on(f"{prefix}mo/7700")) == 1  # the old route is gone
        assert gateway.inbound.stats.to_event_sinks == 2
    finally:
        await gateway.stop()
        await sim.stop()
        subscriber.stop()
