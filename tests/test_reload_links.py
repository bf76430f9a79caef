"""A full reload keeps every bind it does not have to touch: a link added is started, one removed
is drained and stopped, one whose settings changed is restarted alone, while a customer's smpplib
bind and an unchanged carrier link stay connected, each seen from its own SMSC simulator's side
(connections it accepted, binds it holds). An invalid config changes nothing."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import smpplib.exceptions

from gateway.app import Gateway
from gateway.config import SimulatorConfig, load_config
from gateway.simulator import SmscSimulator
from tests.test_smpp_server_smpplib import Esme, in_thread
from tests.test_smpp_server_support import PASSWORD, PASSWORD_HASH
from tests.waiting import wait_for

LINKS = ("keep", "change", "remove", "add")


@dataclass
class Setup:
    path: Path
    sims: dict[str, SmscSimulator]
    gateway: Gateway

    def write(self, links: dict[str, dict[str, Any]], accounts: list[str], routes: str) -> None:
        self.path.write_text(config_text(self.path.parent, self.sims, links, accounts, routes))


def link_block(name: str, port: int, **extra: Any) -> str:
    fields = {
        "type": "smpp",
        "name": name,
        "host": "127.0.0.1",
        "port": port,
        "system_id": name,
        "submit_id_format": "hex",
        "dlr_id_format": "hex",
        "reconnect_initial": 0.1,
        "reconnect_max": 0.5,
        **extra,
    }
    return "[[links]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in fields.items())


def config_text(
    workdir: Path,
    sims: dict[str, SmscSimulator],
    links: dict[str, dict[str, Any]],
    accounts: list[str],
    routes: str,
) -> str:
    text = f"""
data_dir = {json.dumps(str(workdir / "data"))}
[smpp_server]
host = "127.0.0.1"
port = 0
[http]
enabled = false
[simulator]
enabled = false
"""
    for name, extra in links.items():
        text += link_block(name, sims[name].port, **extra)
    for system_id in accounts:
        text += f'[[accounts]]\nsystem_id = "{system_id}"\npassword_hash = "{PASSWORD_HASH}"\n'
    return text + routes


ROUTE_KEEP = '[[routes]]\nname = "all"\npriority = 1\ntargets = ["keep"]\n'


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    sims = {
        name: SmscSimulator(
            SimulatorConfig(enabled=True, host="127.0.0.1", port=0, dlr_delay=0.0),
            keep_received=True,
        )
        for name in LINKS
    }
    for sim in sims.values():
        await sim.start()
    path = tmp_path / "tandem.toml"
    path.write_text(
        config_text(
            tmp_path,
            sims,
            {"keep": {}, "change": {"window": 10}, "remove": {}},
            ["acme", "leaving"],
            ROUTE_KEEP,
        )
    )
    gateway = Gateway(load_config(path))
    await gateway.start()
    try:
        for name in ("keep", "change", "remove"):
            await wait_for(lambda n=name: sims[n].bound_system_ids == [n], f"{name} to bind")
        yield Setup(path, sims, gateway)
    finally:
        await gateway.stop()
        for sim in sims.values():
            await sim.stop()


def customer_port(gateway: Gateway) -> int:
    port = getattr(gateway.smpp_server, "port", None)
    assert isinstance(port, int)
    return port


async def test_a_reload_touches_only_the_links_and_binds_that_changed(setup: Setup) -> None:
    sims, gateway = setup.sims, setup.gateway
    acme, leaving = Esme(customer_port(gateway)), Esme(customer_port(gateway))
    assert await in_thread(acme.bind, "transceiver", "acme", PASSWORD) == 0
    assert await in_thread(leaving.bind, "transceiver", "leaving", PASSWORD) == 0
    before = {name: sims[name].stats.connections_total for name in LINKS}
    assert before == {"keep": 1, "change": 1, "remove": 1, "add": 0}

    setup.write(
        {"keep": {}, "change": {"window": 20}, "add": {}},
        ["acme"],
        '[[routes]]\nname = "all"\npriority = 1\ntargets = ["keep", "add"]\n',
    )
    assert await gateway.reload(setup.path)

    await wait_for(lambda: sims["add"].bound_system_ids == ["add"], "the added link to bind")
    await wait_for(lambda: sims["change"].bound_system_ids == ["change"], "the changed one")
    await wait_for(lambda: sims["remove"].stats.connections == 0, "the removed link to unbind")
    after = {name: sims[name].stats.connections_total for name in LINKS}
    # Seen from the simulators: the unchanged link kept its one connection; the changed link
    # connected once more; the removed one made no new connection and holds none now.
    assert after == {"keep": 1, "change": 2, "remove": 1, "add": 1}
    assert sims["keep"].stats.connections == 1 and sims["keep"].bound_system_ids == ["keep"]
    assert sorted(gateway.links) == ["add", "change", "keep"]
    report = gateway.last_reload
    assert report is not None and report.ok
    assert {"link add added", "link change restarted"} <= set(report.changes)
    assert any(change.startswith("link remove removed") for change in report.changes)

    # The customer whose account stayed is still bound on the same connection: it submits
    # and the unchanged carrier link carries the message.
    sequence = await in_thread(acme.submit, b"after the reload")
    await in_thread(acme.read_until, lambda: sequence in acme.responses)
    assert acme.responses[sequence].status == 0
    await wait_for(
        lambda: sum(s.stats.accepted for s in (sims["keep"], sims["add"])) == 1,
        "the message at a carrier",
    )
    # The account that left the config lost its bind.
    with pytest.raises((smpplib.exceptions.ConnectionError, OSError)):
        await in_thread(leaving.read_until, lambda: False, 5.0)
    leaving.client.disconnect()
    acme.close()


async def test_an_invalid_config_is_refused_whole_and_changes_nothing(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    sims, gateway = setup.sims, setup.gateway
    # Valid links and accounts, but one bad key: nothing of it may take effect.
    setup.write({"keep": {}, "change": {"window": 20}, "add": {}}, ["acme"], ROUTE_KEEP)
    setup.path.write_text(
        setup.path.read_text() + '[[routes]]\nname = "x"\npriority = 2\ntargets = ["nowhere"]\n'
    )
    with caplog.at_level(logging.INFO, logger="tandem"):
        assert not await gateway.reload(setup.path)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(errors) == 1
    assert str(setup.path) in errors[0] and "routes[1].targets" in errors[0]
    assert "nowhere" in errors[0]
    await asyncio.sleep(0.5)  # time for anything wrongly started or stopped to show
    assert sorted(gateway.links) == ["change", "keep", "remove"]
    assert {name: sims[name].stats.connections_total for name in LINKS} == {
        "keep": 1,
        "change": 1,
        "remove": 1,
        "add": 0,
    }
    assert gateway.config.link("change").window == 10
    report = gateway.last_reload
    assert report is not None and not report.ok and report.error is not None


def test_what_only_a_restart_can_change_keeps_its_running_value_and_is_named() -> None:
    from gateway.config import TandemConfig
    from gateway.reload import plan_reload

    link = {"type": "smpp", "name": "a", "host": "h", "system_id": "s"}
    running = TandemConfig.model_validate({"links": [link], "smpp_server": {"port": 2775}})
    new = TandemConfig.model_validate(
        {
            "links": [{**link, "window": 5}, {**link, "name": "b"}],
            "smpp_server": {"port": 2999},
            "http": {"port": 9999, "requests_per_second": 7.0},
            "dlr": {"hold_max": 5, "report": "segment"},
        }
    )
    plan = plan_reload(running, new)
    assert plan.needs_restart == ["smpp_server", "http.port", "dlr.hold_max"]
    effective = plan.config
    assert effective.smpp_server.port == 2775 and effective.http.port == 8080
    assert effective.http.requests_per_second == 7.0  # reloaded
    assert effective.dlr.hold_max == 100_000 and effective.dlr.report.value == "segment"
    assert [c.name for c in plan.changed] == ["a"] and [c.name for c in plan.added] == ["b"]
    assert plan_reload(running, running).needs_restart == []
    assert not plan_reload(running, running).links_touched


async def test_messages_waiting_for_a_removed_link_go_by_the_links_that_stay(
    tmp_path: Path,
) -> None:
    from dlr.status import MessageStatus
    from gateway.intake import MessageRequest
    from gateway.messages import Channel

    sims = {
        name: SmscSimulator(
            SimulatorConfig(enabled=True, host="127.0.0.1", port=0, dlr_delay=0.0),
            keep_received=True,
        )
        for name in ("keep", "remove")
    }
    for sim in sims.values():
        await sim.start()
    path = tmp_path / "tandem.toml"
    both = '[[routes]]\nname = "all"\npriority = 1\ntargets = ["remove", "keep"]\n'
    path.write_text(
        config_text(tmp_path, sims, {"remove": {"tps": 1.0}, "keep": {}}, [], both).replace(
            "[smpp_server]\n", "[smpp_server]\nenabled = false\n"
        )
    )
    gateway = Gateway(load_config(path))
    await gateway.start()
    try:
        for name in sims:
            await wait_for(lambda n=name: sims[n].bound_system_ids == [n], f"{name} to bind")
        requests = [
            MessageRequest(account="a", channel=Channel.HTTP, to="+447911123456", text=f"m{n}")
            for n in range(6)
        ]
        ids = [p.message.id for p in await gateway.intake.accept(requests)]
        # One a second on "remove": most of them wait in its queue.
        await wait_for(lambda: sims["remove"].stats.accepted >= 1, "the first at remove")
        assert gateway.queue.size("remove") >= 3
        path.write_text(
            config_text(
                tmp_path,
                sims,
                {"keep": {}},
                [],
                '[[routes]]\nname = "all"\npriority = 1\ntargets = ["keep"]\n',
            ).replace("[smpp_server]\n", "[smpp_server]\nenabled = false\n")
        )
        assert await gateway.reload(path)
        for message_id in ids:

            async def delivered(message_id: str = message_id) -> bool:
                record = await gateway.message_store.get(message_id)
                return record is not None and record.message.status is MessageStatus.DELIVERED

            await wait_for(delivered, f"{message_id} delivered", interval=0.05)
        at_remove, at_keep = sims["remove"].stats.accepted, sims["keep"].stats.accepted
        assert at_remove + at_keep == 6 and at_keep >= 3  # each once, none lost
        assert sims["remove"].stats.connections == 0 and sims["keep"].stats.connections_total == 1
    finally:
        await gateway.stop()
        for sim in sims.values():
            await sim.stop()


async def test_a_reload_of_the_egress_rule_reaches_inbound_webhooks(tmp_path: Path) -> None:
    from aiohttp import web

    received: list[dict[str, Any]] = []

    async def take(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/mo", take)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    receiver_port = runner.addresses[0][1]
    sim = SmscSimulator(SimulatorConfig(enabled=True, host="127.0.0.1", port=0, dlr_delay=0.0))
    await sim.start()
    path = tmp_path / "tandem.toml"

    def write(allow: list[str]) -> None:
        text = config_text(tmp_path, {"keep": sim}, {"keep": {}}, [], ROUTE_KEEP)
        text = text.replace("[smpp_server]\n", "[smpp_server]\nenabled = false\n")
        path.write_text(
            text
            + f'[egress]\nallow = {json.dumps(allow)}\nports = ["1-65535"]\n'
            + '[[inbound.routes]]\nname = "hook"\nto = ["7700"]\n'
            + f'webhook = "http://127.0.0.1:{receiver_port}/mo"\nwebhook_secret = "s3cret"\n'
        )

    write([])
    gateway = Gateway(load_config(path))
    await gateway.start()
    try:
        await wait_for(lambda: sim.bound_system_ids == ["keep"], "the link to bind")
        webhooks = gateway.inbound.stats
        sim.inject_mo("447911123456", "7700", "before", system_id="keep")
        await wait_for(lambda: webhooks.webhook_attempts >= 1, "a webhook attempt")
        assert received == [] and webhooks.webhook_delivered == 0  # loopback: refused by the rule
        write(["127.0.0.1"])
        assert await gateway.reload(path)
        sim.inject_mo("447911123456", "7700", "after", system_id="keep")
        await wait_for(lambda: any(r.get("text") == "after" for r in received), "the webhook")
    finally:
        await gateway.stop()
        await sim.stop()
        await runner.cleanup()
