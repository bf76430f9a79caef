"""The Prometheus exporter against a real `tandem run` and a real `tandem sim smsc`: traffic
through the HTTP API (delivered, undeliverable, cancelled, still queued for a link that is
down), then a scrape that adds up (accepted = final outcomes + in flight), that promtool finds
clean, whose series do not grow with the number of distinct recipients, that needs the
metrics token on the HTTP port and not on the listener of its own; `/healthz` and `/readyz`
without a key, the latter naming the route whose only link is down."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.daemon_processes import (
    Process,
    create_key,
    daemon,
    free_port,
    link_toml,
    simulator,
    wait_http,
    write_config,
)
from tests.waiting import wait_for

FINAL = ("delivered", "undeliverable", "expired", "rejected", "deleted", "unknown", "failed")
UP_ROUTE_NUMBERS = "+4474001"  # + 5 digits: the route whose link is up
DOWN_PREFIX = "+4474009"  # the route whose only link points at a closed port


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Sample name -> (labels, value) of a scrape, parsed by prometheus-client's parser."""
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def total(scrape: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    return sum(
        value
        for sample_labels, value in scrape.get(name, [])
        if all(sample_labels.get(key) == wanted for key, wanted in labels.items())
    )


@dataclass
class Running:
    http: str
    metrics_port: int
    key: str
    token: str
    workdir: Path


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    sim_port, http_port, metrics_port = free_port(), free_port(), free_port()
    closed_port = free_port()  # nothing listens here: the link "nowhere" stays down
    routes = f"""
[[routes]]
name = "down"
priority = 10
prefixes = ["{DOWN_PREFIX}"]
targets = ["nowhere"]
[[routes]]
name = "everything"
priority = 100
targets = ["carrier"]
"""
    config = write_config(
        tmp_path,
        http_port,
        [link_toml("carrier", sim_port, window=20), link_toml("nowhere", closed_port)],
        routes,
        extra=f'[store]\nwriter = "thread"\n[metrics]\nlisten = "127.0.0.1:{metrics_port}"\n',
    )
    # The customer SMPP server on too (its families are on the dashboard).
    text = config.read_text(encoding="utf-8")
    smpp = f'[smpp_server]\nhost = "127.0.0.1"\nport = {free_port()}\n'
    text = text.replace("[smpp_server]\nenabled = false\n", smpp)
    # No submit may time out on a loaded machine: a resend would count twice and leave its
    # first receipt orphaned, and the counts below are exact.
    text = text.replace("response_timeout = 2.0", "response_timeout = 60.0")
    config.write_text(text, encoding="utf-8")
    key = create_key(config)
    smsc = simulator(
        tmp_path, "smsc", sim_port, dlr_delay=0.05, extra=["--undeliverable-fraction", "0.3"]
    ).start()
    tandem: Process = daemon(tmp_path, config).start()
    try:
        await wait_http(f"http://127.0.0.1:{http_port}/healthz")
        token = (tmp_path / "data" / "metrics.token").read_text().strip()
        yield Running(f"http://127.0.0.1:{http_port}", metrics_port, key, token, tmp_path)
    finally:
        tandem.stop()
        smsc.stop()


async def send(session: aiohttp.ClientSession, running: Running, numbers: list[str]) -> list[str]:
    """One request per 500 recipients; the ids in order."""
    ids: list[str] = []
    for start in range(0, len(numbers), 500):
        async with session.post(
            f"{running.http}/v1/messages",
            json={"to": numbers[start : start + 500], "from": "Tandem", "text": "metrics"},
            headers={"Authorization": f"Bearer {running.key}"},
        ) as response:
            assert response.status == 202, await response.text()
            body = await response.json()
        ids += [item["id"] for item in body["messages"]]
    return ids


async def statuses(
    session: aiohttp.ClientSession, running: Running, ids: list[str]
) -> dict[str, str]:
    found = {}
    for message_id in ids:
        async with session.get(
            f"{running.http}/v1/messages/{message_id}",
            headers={"Authorization": f"Bearer {running.key}"},
        ) as response:
            found[message_id] = (await response.json())["status"]
    return found


async def scrape(session: aiohttp.ClientSession, running: Running) -> str:
    async with session.get(
        f"{running.http}/metrics", headers={"Authorization": f"Bearer {running.token}"}
    ) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return await response.text()


async def settled(session: aiohttp.ClientSession, running: Running, count: int) -> None:
    """Until `count` messages sent through the link "carrier" are final (asked of the
    exporter, then of the API message by message in the test)."""

    async def final() -> bool:
        scraped = samples(await scrape(session, running))
        return total(scraped, "tandem_messages_final_total", link="carrier") >= count

    await wait_for(final, f"{count} messages final", timeout=120, interval=0.2)


async def test_counters_add_up_after_real_traffic_and_promtool_finds_the_scrape_clean(
    running: Running,
) -> None:
    async with aiohttp.ClientSession() as session:
        few = [f"{UP_ROUTE_NUMBERS}{n:05d}" for n in range(10)]
        delivered_ids = await send(session, running, few)
        queued_ids = await send(session, running, [f"{DOWN_PREFIX}{n:05d}" for n in range(6)])
        for message_id in queued_ids[:2]:  # two of those waiting are cancelled: "deleted"
            async with session.delete(
                f"{running.http}/v1/messages/{message_id}",
                headers={"Authorization": f"Bearer {running.key}"},
            ) as response:
                assert response.status == 200, await response.text()
        await settled(session, running, len(delivered_ids))
        before = await scrape(session, running)

        # 1,000 more distinct recipients: more counts, no more series.
        many = [f"{UP_ROUTE_NUMBERS}{n:05d}" for n in range(10, 1010)]
        more_ids = await send(session, running, many)
        await settled(session, running, len(delivered_ids) + len(more_ids))
        text = await scrape(session, running)
        by_id = await statuses(session, running, delivered_ids + more_ids + queued_ids)

    series_before = {
        (n, tuple(sorted(lab.items()))) for n, s in samples(before).items() for lab, _ in s
    }
    series_after = {
        (n, tuple(sorted(lab.items()))) for n, s in samples(text).items() for lab, _ in s
    }
    assert series_after == series_before  # bounded cardinality: no label per number or message
    assert "44740010" not in text and not any(message_id in text for message_id in by_id)

    scraped = samples(text)
    accepted = total(scraped, "tandem_messages_accepted_total")
    finals = {
        status: total(scraped, "tandem_messages_final_total", status=status) for status in FINAL
    }
    in_flight = sum(1 for status in by_id.values() if status not in FINAL)
    assert accepted == len(by_id) == 1016
    assert accepted == sum(finals.values()) + in_flight
    assert finals["deleted"] == 2 and in_flight == 4
    assert finals["delivered"] == sum(1 for s in by_id.values() if s == "delivered")
    assert finals["undeliverable"] == sum(1 for s in by_id.values() if s == "undeliverable") > 0
    assert total(scraped, "tandem_messages_accepted_total", channel="http", route="down") == 6
    assert total(scraped, "tandem_queue_messages", link="nowhere") == 4
    assert total(scraped, "tandem_queue_oldest_age_seconds", link="nowhere") > 0
    assert total(scraped, "tandem_link_up", link="carrier") == 1
    assert total(scraped, "tandem_link_up", link="nowhere") == 0
    assert total(scraped, "tandem_link_state", link="nowhere", tandem_link_state="up") == 0
    assert total(scraped, "tandem_link_state", link="carrier", tandem_link_state="up") == 1
    submitted = total(scraped, "tandem_messages_submitted_total", channel="http", link="carrier")
    assert submitted == 1010
    assert total(scraped, "tandem_smpp_submit_sm_resp_total", status="ESME_ROK") == 1010
    assert total(scraped, "tandem_receipts_total", outcome="received") == 1010
    assert total(scraped, "tandem_receipts_total", outcome="correlated") == 1010
    assert total(scraped, "tandem_receipts_total", outcome="orphaned") == 0
    assert total(scraped, "tandem_message_accept_to_final_seconds_count", link="carrier") == 1010
    assert total(scraped, "tandem_submit_response_seconds_count") == 1010
    assert total(scraped, "tandem_store_commits_total") > 0
    assert total(scraped, "tandem_http_requests_total", route="/v1/messages", code="202") == 4
    assert total(scraped, "tandem_http_requests_total", route="/v1/messages/{id}", code="200") > 0
    assert total(scraped, "tandem_build_info") == 1
    assert total(scraped, "tandem_node_info", node=socket.gethostname()) == 1  # [node] name
    assert total(scraped, "tandem_event_loop_lag_seconds_count") > 0
    assert "tandem_optouts_entries" in scraped  # the opt-out list's counters
    assert total(scraped, "tandem_optout_refusals_total") == 0

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("no promtool (Debian: the prometheus package) to check the exposition")
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0 and not checked.stdout.strip(), checked.stdout + checked.stderr


async def test_metrics_needs_its_token_on_the_http_port_and_health_needs_none(
    running: Running,
) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{running.http}/metrics") as response:
            assert response.status == 401
            assert "metrics.token" in (await response.json())["detail"]
        async with session.get(
            f"{running.http}/metrics", headers={"Authorization": "Bearer not-the-token"}
        ) as response:
            assert response.status == 401
        async with session.get(f"http://127.0.0.1:{running.metrics_port}/metrics") as response:
            assert response.status == 200  # its own listener: its address is the access control
            assert "tandem_link_up" in await response.text()
        async with session.get(f"{running.http}/healthz") as response:
            assert response.status == 200
            assert (await response.json())["status"] == "ok"
        # The route "down" has one target, and it is down: not ready, and the body says why.
        async with session.get(f"{running.http}/readyz") as response:
            assert response.status == 503
            body = await response.json()
        assert body["store"]["writable"] is True
        assert body["node"] == socket.gethostname()  # [node] name's default
        assert body["routes"]["down"] == {"targets": ["nowhere"], "up": [], "ready": False}
        assert body["routes"]["everything"]["ready"] is True
        assert body["links"]["carrier"]["state"] == "up"
        assert body["links"]["nowhere"]["state"] in ("down", "starting")
        async with session.get(f"http://127.0.0.1:{running.metrics_port}/readyz") as response:
            assert response.status == 503
        # Paths that match no route are one series, whatever they are.
        for path in ("/nothing/1", "/nothing/2", "/nothing/3/x"):
            async with session.get(f"{running.http}{path}") as response:
                assert response.status == 404
        scraped = samples(await scrape(session, running))
    routes = {labels["route"] for labels, _ in scraped["tandem_http_requests_total"]}
    assert "other" in routes and not any("nothing" in route for route in routes)
    assert total(scraped, "tandem_http_requests_total", route="other", code="404") == 3


CONTRIB = Path(__file__).resolve().parent.parent / "contrib"


def names_in_scrape(text: str) -> set[str]:
    """Every sample name of a scrape, and every family it declares (`# TYPE`), with the
    sample names a histogram family has even before its first observation."""
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            names.add(name)
            if kind == "histogram":
                names.update(f"{name}_{suffix}" for suffix in ("bucket", "count", "sum"))
        elif line and not line.startswith("#"):
            names.add(line.split("{", 1)[0].split(" ", 1)[0])
    return names


def metric_names(path: Path) -> set[str]:
    return set(re.findall(r"\btandem_[a-z0-9_]+", path.read_text(encoding="utf-8")))


async def test_every_metric_the_alerts_and_the_dashboard_name_is_in_a_real_scrape(
    running: Running,
) -> None:
    async with aiohttp.ClientSession() as session:
        await send(session, running, [f"{UP_ROUTE_NUMBERS}{n:05d}" for n in range(3)])
        await settled(session, running, 3)
        text = await scrape(session, running)
    scraped = names_in_scrape(text)
    alerts = CONTRIB / "prometheus" / "alerts.yml"
    dashboard = CONTRIB / "grafana" / "tandem.json"
    for path in (alerts, dashboard):
        named = metric_names(path)
        assert len(named) > 5, path
        assert named <= scraped, f"{path.name} names what no scrape has: {named - scraped}"
    json.loads(dashboard.read_text(encoding="utf-8"))  # Grafana imports JSON
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("no promtool (Debian: the prometheus package) to check the rules")
    checked = subprocess.run(
        [promtool, "check", "rules", str(alerts)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    rules = re.findall(r"^\s+- alert: (\w+)", alerts.read_text(encoding="utf-8"), re.M)
    assert f"SUCCESS: {len(rules)} rules found" in checked.stdout
    body = alerts.read_text(encoding="utf-8")
    assert body.count("summary:") == body.count("runbook:") == len(rules) >= 7
    # The rules' own unit tests: a link down fires after a minute, a ratio that drops fires.
    tested = subprocess.run(
        [promtool, "test", "rules", "alerts_test.yml"],
        cwd=alerts.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr


def test_every_inbound_counter_is_exported_once() -> None:
    """Each field of `InboundStats` lands in exactly one sample, under its own value."""
    from dataclasses import fields

    from prometheus_client.core import CollectorRegistry
    from prometheus_client.exposition import generate_latest

    from gateway.inbound.stats import InboundStats
    from gateway.metrics.inbound import inbound_stats_families

    stats = InboundStats()
    names = [field.name for field in fields(InboundStats)]
    for number, name in enumerate(names):
        setattr(stats, name, 1000 + number)  # a value no other field has

    class Collector:
        def collect(self) -> Any:
            return inbound_stats_families(stats)

    registry = CollectorRegistry()
    registry.register(Collector())
    values = sorted(
        int(value)
        for values in samples(generate_latest(registry).decode()).values()
        for _, value in values
    )
    assert values == [1000 + number for number in range(len(names))]


async def test_a_modem_links_signal_registration_and_sim_are_exported(tmp_path: Path) -> None:
    """A daemon with a modem link on the emulator it runs itself (as `make run`'s default)."""
    from gateway.app import Gateway
    from gateway.config import TandemConfig
    from gateway.links.base import LinkState

    device = tmp_path / "modem-0"
    config = TandemConfig.model_validate(
        {
            "data_dir": str(tmp_path / "data"),
            "store": {"writer": "thread"},
            "smpp_server": {"enabled": False},
            "http": {"enabled": False},
            "modem_simulator": {"enabled": True, "devices": [str(device)]},
            "links": [{"type": "modem", "name": "sim-a", "device": str(device), "daily_cap": 500}],
            "routes": [{"name": "all", "priority": 100, "targets": ["sim-a"]}],
        }
    )
    gateway = Gateway(config)
    await gateway.start()
    try:
        link = gateway.links["sim-a"]
        await wait_for(lambda: link.state is LinkState.UP, "the modem link up", interval=0.05)
        exporter: Any = gateway.metrics
        scraped = samples(exporter.render().decode())
    finally:
        await gateway.stop()
    assert total(scraped, "tandem_link_up", link="sim-a") == 1
    assert total(scraped, "tandem_modem_sim_ready", link="sim-a") == 1
    registered = {
        labels["tandem_modem_registration"]
        for labels, value in scraped["tandem_modem_registration"]
        if value == 1
    }
    assert registered <= {"home", "roaming"} and len(registered) == 1
    assert scraped["tandem_modem_signal_dbm"][0][1] < 0
    assert total(scraped, "tandem_modem_daily_cap", link="sim-a") == 500
    assert total(scraped, "tandem_modem_sends_today", link="sim-a") == 0
    assert total(scraped, "tandem_modem_port_opens_total", link="sim-a") >= 1
    assert total(scraped, "tandem_modem_handed_back_total", link="sim-a") == 0


def test_a_loop_that_stopped_ticking_is_reported_not_alive() -> None:
    import time

    from gateway.metrics import STALLED_LOOP_SECONDS, LoopLag, health

    lag = LoopLag(interval=0.5)
    alive, document = health(None, lag)  # type: ignore[arg-type]
    assert alive and document["status"] == "ok"
    lag.last_tick = time.monotonic() - STALLED_LOOP_SECONDS - 1.0
    alive, document = health(None, lag)  # type: ignore[arg-type]
    assert not alive and document["status"] == "stalled"
    assert document["loop_stalled_seconds"] >= STALLED_LOOP_SECONDS


async def test_readiness_is_withdrawn_as_soon_as_the_stop_begins(tmp_path: Path) -> None:
    """Ready (store writable; no route has targets to serve), then "stopping" from the first
    step of the stop, so a load balancer stops sending before the drain."""
    from gateway.app import Gateway
    from gateway.config import TandemConfig
    from gateway.metrics import StoreProbe, readiness

    config = TandemConfig.model_validate(
        {
            "data_dir": str(tmp_path / "data"),
            "store": {"writer": "thread"},
            "smpp_server": {"enabled": False},
            "http": {"enabled": False},
        }
    )
    gateway = Gateway(config)
    await gateway.start()
    try:
        ready, document = await readiness(gateway, StoreProbe())
        assert ready and document["status"] == "ready"
        assert document["store"]["writable"] is True
        stopping = asyncio.ensure_future(gateway.stop())
        await asyncio.sleep(0)  # the stop's first step
        ready, document = await readiness(gateway, StoreProbe())
        assert not ready and document["status"] == "stopping"
        await stopping
    finally:
        await gateway.stop()
