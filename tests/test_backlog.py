"""Back-pressure: a link's or route's backlog past its `queue_limit` makes intake refuse for now
(SMPP ESME_RTHROTTLED, HTTP 503 with Retry-After), counted; once the backlog drains, intake
takes messages again. Real sockets: smpplib as the ESME, aiohttp as the HTTP client, and the
carrier link bound to the simulator only once the test starts it (until then the link is down
and everything accepted waits in the queue)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.app import Gateway, backlog_limits
from gateway.backlog import Backlog, BacklogFull, BacklogLimits, Reservation
from gateway.config import SimulatorConfig, TandemConfig, load_config
from gateway.http.api import HttpApi
from gateway.keys import MintedKey, create_key
from gateway.messages import Channel, Message
from gateway.simulator import SmscSimulator
from gateway.smpp_server import CustomerSmppServer
from smpp.constants import CommandStatus
from tests.test_http_harness import free_port
from tests.test_smpp_server_smpplib import Esme, in_thread
from tests.test_smpp_server_support import PASSWORD, account
from tests.waiting import wait_for

UK = "+447911123456"


def message(link: str, route: str = "r") -> Message:
    return Message(
        account="a",
        channel=Channel.HTTP,
        source_addr="s",
        destination="447911123456",
        body=b"x",
        route=route,
        targets=[link],
        link=link,
    )


def test_a_batch_is_admitted_whole_while_it_fits_and_reservations_count_until_released() -> None:
    queued = {"a": 0}
    backlog = Backlog(
        BacklogLimits(links={"a": 5}), lambda link: queued.get(link, 0), lambda route: 0
    )
    first = backlog.admit([message("a"), message("a"), message("a")])
    assert isinstance(first, Reservation)
    # Three are being stored and two more fit; a third would not.
    assert isinstance(backlog.admit([message("a")] * 3), BacklogFull)
    second = backlog.admit([message("a")] * 2)
    assert isinstance(second, Reservation)
    backlog.release(first)
    queued["a"] = 3  # ... now counted by the queue instead
    refused = backlog.admit([message("a")])
    assert refused == BacklogFull("link", "a", 5, 5)
    backlog.release(second)
    queued["a"] = 4
    assert isinstance(backlog.admit([message("a")]), Reservation)
    assert isinstance(backlog.admit([message("b")] * 100), Reservation)  # no limit on b
    assert backlog.stats.refused == 0  # only what a channel answered is counted
    backlog.count_refused(refused, 2)
    assert (backlog.stats.refused, backlog.stats.by_link["a"]) == (2, 2)


def test_a_route_limit_counts_the_route_over_all_its_links() -> None:
    by_route = {"bulk": 9}
    backlog = Backlog(
        BacklogLimits(routes={"bulk": 10}), lambda link: 0, lambda route: by_route.get(route, 0)
    )
    assert isinstance(backlog.admit([message("a", "bulk")]), Reservation)
    assert backlog.admit([message("b", "bulk")]) == BacklogFull("route", "bulk", 10, 10)
    assert isinstance(backlog.admit([message("b", "otp")]), Reservation)


@dataclass
class Stack:
    gateway: Gateway
    server: CustomerSmppServer
    api: HttpApi
    key: MintedKey
    smsc_port: int
    session: aiohttp.ClientSession

    async def post(self, to: str = UK) -> tuple[int, Any, Any]:
        async with self.session.post(
            self.api.url + "/v1/messages",
            json={"to": to, "text": "hello"},
            headers={"Authorization": f"Bearer {self.key.secret}"},
        ) as response:
            return response.status, await response.json(content_type=None), response.headers


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    """A daemon whose carrier link has a backlog limit of 3 and nothing to bind to yet."""
    smsc_port = free_port()
    config = TandemConfig.model_validate(
        {
            "data_dir": str(tmp_path / "data"),
            "store": {"writer": "thread"},
            "smpp_server": {"enabled": True, "host": "127.0.0.1", "port": 0},
            "http": {"host": "127.0.0.1", "port": 0, "messages_per_second": 1000.0},
            "queue": {"retry_after": 7.0},
            "links": [
                {
                    "type": "smpp",
                    "name": "carrier",
                    "host": "127.0.0.1",
                    "port": smsc_port,
                    "system_id": "tandem",
                    "submit_id_format": "hex",
                    "dlr_id_format": "hex",
                    "reconnect_initial": 0.05,
                    "reconnect_max": 0.2,
                    "queue_limit": 3,
                }
            ],
            "routes": [{"name": "all", "priority": 100, "targets": ["carrier"]}],
            "accounts": [account("alice")],
        }
    )
    gateway = Gateway(config)
    await gateway.start()
    server, api = gateway.smpp_server, gateway.http_api
    assert isinstance(server, CustomerSmppServer) and isinstance(api, HttpApi)
    key = await create_key(gateway.message_store, "acme")
    try:
        async with aiohttp.ClientSession() as session:
            yield Stack(gateway, server, api, key, smsc_port, session)
    finally:
        await gateway.stop()


async def start_smsc(port: int) -> SmscSimulator:
    simulator = SmscSimulator(
        SimulatorConfig(enabled=True, host="127.0.0.1", port=port, dlr_delay=0.0),
        keep_received=True,
    )
    await simulator.start()
    return simulator


async def test_smpp_intake_is_throttled_past_the_link_backlog_and_takes_again_once_drained(
    stack: Stack,
) -> None:
    assert stack.server.port is not None
    esme = Esme(stack.server.port)

    def submit_all(count: int) -> list[int]:
        sequences = [esme.submit(b"hello", registered_delivery=0) for _ in range(count)]
        esme.read_until(lambda: all(s in esme.responses for s in sequences))
        return [int(esme.responses[s].status) for s in sequences]

    assert await in_thread(esme.bind, "transceiver", "alice", PASSWORD) == 0
    # One at a time, so the answers do not depend on how reads batch them.
    statuses = [(await in_thread(submit_all, 1))[0] for _ in range(5)]
    assert statuses == [0, 0, 0, CommandStatus.ESME_RTHROTTLED, CommandStatus.ESME_RTHROTTLED]
    assert stack.gateway.queue.size("carrier") == 3
    assert stack.gateway.backlog.stats.refused == 2
    assert stack.gateway.backlog.stats.by_link["carrier"] == 2
    assert stack.server.stats.submits_refused == 2
    # Five in one read: the batch does not fit whole, so each is answered on its own.
    assert sorted(await in_thread(submit_all, 5)) == [CommandStatus.ESME_RTHROTTLED] * 5
    assert stack.gateway.backlog.stats.refused == 7

    simulator = await start_smsc(stack.smsc_port)
    try:
        await wait_for(lambda: len(simulator.received) == 3, what="the backlog to drain")
        await wait_for(lambda: stack.gateway.queue.size("carrier") == 0, what="an empty queue")
        assert await in_thread(submit_all, 3) == [0, 0, 0]
        await wait_for(lambda: len(simulator.received) == 6, what="the new ones to go")
    finally:
        await in_thread(esme.close)
        await stack.gateway.stop()
        await simulator.stop()


async def test_http_intake_answers_503_with_retry_after_past_the_backlog(stack: Stack) -> None:
    for _ in range(3):
        status, body, _ = await stack.post()
        assert status == 202, body
    status, body, headers = await stack.post()
    assert status == 503
    assert headers["Retry-After"] == "7"
    assert headers["Content-Type"].startswith("application/problem+json")
    assert body["code"] == "backlog_full"
    assert body["type"] == "urn:tandem:problem:backlog_full"
    assert body["retry_after"] == 7
    assert "carrier" in body["detail"]
    # A list that does not fit whole is refused whole: nothing of it is stored.
    async with stack.session.post(
        stack.api.url + "/v1/messages",
        json={"to": [UK, "+447911123457"], "text": "hi"},
        headers={"Authorization": f"Bearer {stack.key.secret}"},
    ) as response:
        assert response.status == 503
    assert stack.gateway.backlog.stats.refused == 3
    assert stack.gateway.queue.size("carrier") == 3

    simulator = await start_smsc(stack.smsc_port)
    try:
        await wait_for(lambda: stack.gateway.queue.size("carrier") == 0, what="an empty queue")
        status, body, _ = await stack.post()
        assert status == 202, body
        await wait_for(lambda: len(simulator.received) == 4, what="every accepted one sent")
    finally:
        await stack.gateway.stop()
        await simulator.stop()


async def test_a_route_limit_refuses_its_own_traffic_only(tmp_path: Path) -> None:
    smsc_port = free_port()
    config = TandemConfig.model_validate(
        {
            "data_dir": str(tmp_path / "data"),
            "store": {"writer": "thread"},
            "smpp_server": {"enabled": False},
            "http": {"enabled": False},
            "links": [
                {
                    "type": "smpp",
                    "name": "carrier",
                    "host": "127.0.0.1",
                    "port": smsc_port,
                    "system_id": "tandem",
                    "reconnect_initial": 0.05,
                    "reconnect_max": 0.2,
                }
            ],
            "routes": [
                {"name": "de", "priority": 10, "prefixes": ["+49"], "targets": ["carrier"]},
                {
                    "name": "rest",
                    "priority": 100,
                    "targets": ["carrier"],
                    "queue_limit": 2,
                },
            ],
        }
    )
    gateway = Gateway(config)
    await gateway.start()
    try:
        from gateway.intake import IntakeRefusal, MessageRequest

        def request(to: str) -> MessageRequest:
            return MessageRequest(account="a", channel=Channel.HTTP, to=to, text="hi")

        await gateway.intake.accept([request(UK), request(UK)])
        with pytest.raises(IntakeRefusal) as refused:
            await gateway.intake.accept([request(UK)])
        assert (refused.value.code, refused.value.smpp_status) == (
            "backlog_full",
            CommandStatus.ESME_RTHROTTLED,
        )
        await gateway.intake.accept([request("+4915112345678")] * 5)  # another route: no limit
        assert gateway.backlog.stats.by_route == {"rest": 1}
        assert gateway.queue.route_size("rest") == 2
        assert gateway.queue.size("carrier") == 7
    finally:
        await gateway.stop()


def test_the_limits_come_from_links_and_routes_with_kannels_default() -> None:
    config = TandemConfig.model_validate(
        {
            "links": [
                {"type": "smpp", "name": "c", "host": "h", "system_id": "s"},
                {"type": "smpp", "name": "u", "host": "h", "system_id": "s", "queue_limit": None},
            ],
            "routes": [
                {"name": "r", "priority": 1, "targets": ["c"]},
                {"name": "q", "priority": 2, "targets": ["u"], "queue_limit": 50},
            ],
        }
    )
    assert backlog_limits(config) == BacklogLimits(links={"c": 1_000_000}, routes={"q": 50})


async def test_a_reload_brings_the_new_route_limits(tmp_path: Path) -> None:
    def write(limit: int) -> Path:
        path = tmp_path / "tandem.toml"
        path.write_text(
            f"""
data_dir = "{tmp_path / "data"}"
[store]
writer = "thread"
[smpp_server]
enabled = false
[http]
enabled = false
[[links]]
type = "smpp"
name = "carrier"
host = "127.0.0.1"
port = {free_port()}
system_id = "tandem"
queue_limit = 10
[[routes]]
name = "all"
priority = 1
targets = ["carrier"]
queue_limit = {limit}
""",
            encoding="utf-8",
        )
        return path

    gateway = Gateway(load_config(write(5)))
    await gateway.start()
    try:
        assert gateway.backlog.limits.routes == {"all": 5}
        assert await gateway.reload(write(8))
        assert gateway.backlog.limits == BacklogLimits(links={"carrier": 10}, routes={"all": 8})
    finally:
        await gateway.stop()
