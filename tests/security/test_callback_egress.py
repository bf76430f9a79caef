"""Where receipt callbacks may go (gateway.egress): internal addresses are refused at every
connect, by name or literal, at submit time when the URL says so; ports are restricted; the
operator's allowlist and proxy work; a refusal is recorded as the rule, not as what answered;
URLs are redacted in logs and history; a revoked key's messages stay signed.

Everything listens on 127.0.0.1 (127.0.0.2 stands for a public customer server where a test
needs two addresses); the "DNS" of the rebinding tests is a stand-in that answers as an
attacker's name server would."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver

from dlr.callback import SIGNATURE_HEADER, verify
from gateway.callbacks import HttpPoster
from gateway.config import EgressConfig
from gateway.egress import (
    EgressConnector,
    EgressPolicy,
    EgressRefused,
    is_internal,
    redact_url,
)
from gateway.keys import revoke_key
from tests.test_http_harness import LOCAL_RECEIVERS, Daemon, free_port, running_daemon
from tests.waiting import wait_for

UK = "+447911123456"
ANY_HIGH_PORT = {"ports": ["1024-65535"]}


def policy(**settings: Any) -> EgressPolicy:
    return EgressPolicy.from_config(EgressConfig(**settings))


# --- the rule --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.8.9.10",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # carrier-grade NAT
        "0.0.0.0",
        "224.0.0.1",
        "239.255.255.250",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "fd12:3456::1",
        "ff02::1",
        "::ffff:127.0.0.1",  # IPv4-mapped
        "::ffff:10.0.0.1",
        "2002:7f00:1::1",  # 6to4 around 127.0.0.1
        "64:ff9b::a00:1",  # NAT64 around 10.0.0.1
    ],
)
def test_internal_addresses_are_refused_by_default(address: str) -> None:
    parsed = ipaddress.ip_address(address)
    assert is_internal(parsed)
    assert EgressPolicy().address_refusal("hooks.example", parsed) == "private address"


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700::1111"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert EgressPolicy().address_refusal("hooks.example", ipaddress.ip_address(address)) is None


def test_the_operator_allowlist_names_networks_or_hosts_and_ports_stay_restricted() -> None:
    rule = policy(allow=["10.1.2.0/24", "Hooks.Internal"], ports=[443, "9000-9001"])
    assert rule.address_refusal("x", ipaddress.ip_address("10.1.2.7")) is None
    assert rule.address_refusal("x", ipaddress.ip_address("10.1.3.7")) == "private address"
    assert rule.address_refusal("hooks.internal.", ipaddress.ip_address("10.9.9.9")) is None
    assert rule.url_refusal("https://10.1.2.7/dlr") is None
    assert rule.url_refusal("http://10.1.2.7:9001/dlr") is None
    assert rule.url_refusal("http://10.1.2.7/dlr") == "port 80 not allowed"
    assert rule.url_refusal("https://hooks.internal:22/") == "port 22 not allowed"
    assert EgressPolicy().url_refusal("https://example.com/dlr") is None
    assert EgressPolicy().url_refusal("http://example.com:8080/dlr") is None
    assert EgressPolicy().url_refusal("http://example.com:6379/") == "port 6379 not allowed"
    assert EgressPolicy().url_refusal("http://localhost/dlr") == "private address"
    assert EgressPolicy().url_refusal("http://[::1]/dlr") == "private address"
    for legacy in ("2130706433", "127.1", "0x7f.0.0.1", "017700000001"):
        assert EgressPolicy().url_refusal(f"http://{legacy}/dlr") == "private address", legacy


def test_a_bad_egress_config_names_the_key() -> None:
    from gateway.config import ConfigError, parse_config

    for text, key in (
        ('[egress]\nallow = ["10.0.0.0/33"]', "egress.allow"),
        ('[egress]\nports = ["80-"]', "egress.ports"),
        ('[egress]\nproxy = "socks5://127.0.0.1:1080"', "egress.proxy"),
    ):
        with pytest.raises(ConfigError) as raised:
            parse_config(text, "tandem.toml")
        assert str(raised.value).startswith(f"tandem.toml: {key}: "), str(raised.value)


def test_urls_are_redacted_for_logs_and_history() -> None:
    assert (
        redact_url("https://user:pa55@hooks.example:8443/dlr/v1?token=abc&x=1&bare#frag")
        == "https://***@hooks.example:8443/dlr/v1?token=***&x=***&***"
    )
    assert redact_url("http://hooks.example/dlr") == "http://hooks.example/dlr"


# --- the daemon ------------------------------------------------------------------------------


@dataclass
class Receiver:
    url: str
    status: int = 200
    received: list[tuple[str, bytes, str | None]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append((request.path_qs, body, request.headers.get(SIGNATURE_HEADER)))
        return web.Response(status=self.status, text="ok")


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    port = free_port()
    found = Receiver(f"http://127.0.0.1:{port}/dlr")
    app = web.Application()
    app.router.add_post("/dlr", found.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield found
    await runner.cleanup()


async def history(daemon: Daemon, message_id: str) -> list[str]:
    _, details, _ = await daemon.call("GET", f"/v1/messages/{message_id}")
    return [entry["detail"] for entry in details["history"]]


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:8080/admin/links", "private address"),
        ("http://[::1]/dlr", "private address"),
        ("http://10.0.0.7/dlr", "private address"),
        ("http://169.254.169.254/latest/meta-data/", "private address"),
        ("http://localhost:8443/dlr", "private address"),
        ("http://hooks.example:22/dlr", "port 22 not allowed"),
    ],
)
async def test_a_callback_url_to_an_internal_address_is_refused_at_submit(
    tmp_path: Path, url: str, reason: str
) -> None:
    async with running_daemon(tmp_path, egress={}) as daemon:
        status, problem, _ = await daemon.call(
            "POST", "/v1/messages", {"to": UK, "text": "hi", "callback_url": url}
        )
    assert status == 422, problem
    assert (problem["code"], problem["field"]) == ("callback_url_refused", "callback_url")
    assert reason in problem["detail"]


async def test_a_name_resolving_to_loopback_is_refused_at_connect_and_history_says_only_that(
    tmp_path: Path, receiver: Receiver
) -> None:
    """The key's URL names `localhost` on the receiver's port: not checked at submit (it is
    the key's), refused when the callback connects; the receiver never hears of it."""
    port = receiver.url.rsplit(":", 1)[1].split("/")[0]
    by_name = f"http://localhost:{port}/dlr"
    async with running_daemon(
        tmp_path, egress=ANY_HIGH_PORT, key_settings={"callback_url": by_name}
    ) as daemon:
        _, sent, _ = await daemon.call("POST", "/v1/messages", {"to": UK, "text": "hi"})

        async def given_up() -> bool:
            return any("given up" in d for d in await history(daemon, sent["id"]))

        await wait_for(given_up, "the give-up in the history")
        details = [d for d in await history(daemon, sent["id"]) if d.startswith("callback")]
        assert details == [f"callback to {by_name} given up: refused: private address (attempt 1)"]
        assert receiver.received == []
        callbacks = daemon.api.callbacks
        assert callbacks is not None and callbacks.stats.retried == 0


async def test_the_allowlist_lets_callbacks_reach_an_internal_receiver(
    tmp_path: Path, receiver: Receiver
) -> None:
    async with running_daemon(tmp_path, egress=LOCAL_RECEIVERS) as daemon:
        status, sent, _ = await daemon.call(
            "POST", "/v1/messages", {"to": UK, "text": "hi", "callback_url": receiver.url}
        )
        assert status == 202, sent

        async def delivered() -> bool:
            return len(receiver.received) == 1

        await wait_for(delivered, "the callback")


async def test_credentials_and_query_values_never_reach_logs_or_history(
    tmp_path: Path, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.status = 404  # a final refusal: logged as a warning and recorded
    secret_url = receiver.url.replace("http://", "http://user:s3cret@") + "?token=t0ken&n=1"
    caplog.set_level(logging.INFO)
    async with running_daemon(tmp_path) as daemon:
        _, sent, _ = await daemon.call(
            "POST", "/v1/messages", {"to": UK, "text": "hi", "callback_url": secret_url}
        )

        async def given_up() -> bool:
            return any("given up" in d for d in await history(daemon, sent["id"]))

        await wait_for(given_up, "the give-up in the history")
        details = await history(daemon, sent["id"])
    assert receiver.received[0][0] == "/dlr?token=t0ken&n=1"  # the receiver gets the real URL
    logged = [r.getMessage() for r in caplog.records if r.name.startswith("tandem")]
    recorded = "\n".join(details + logged)
    assert "s3cret" not in recorded and "t0ken" not in recorded
    assert "given up: HTTP 404" in recorded and "?token=***&n=***" in recorded


async def test_a_revoked_keys_messages_are_still_signed_with_its_secret(
    tmp_path: Path, receiver: Receiver
) -> None:
    async with running_daemon(
        tmp_path,
        http={"key_cache_seconds": 0.0},
        simulator={"dlr_delay": 0.5},
        key_settings={"callback_url": receiver.url},
    ) as daemon:
        _, sent, _ = await daemon.call("POST", "/v1/messages", {"to": UK, "text": "hi"})
        assert await revoke_key(daemon.gateway.message_store, "acme")

        async def called_back() -> bool:
            return len(receiver.received) == 1

        await wait_for(called_back, "the callback")
    _, body, signature = receiver.received[0]
    assert json.loads(body)["message_id"] == sent["id"]
    assert signature is not None
    assert verify(daemon.key.record.callback_secret, body, signature, time.time())


# --- at every connect: rebinding, aiohttp clients, the proxy ---------------------------------


class RebindingDns:
    """An attacker's name server: a public-looking answer first (127.0.0.2 stands for it and
    is the only address allowed), then the internal one."""

    def __init__(self) -> None:
        self.answers = ["127.0.0.2", "127.0.0.1"]

    def next_address(self) -> str:
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]

    async def getaddrinfo(self, host: str, port: int) -> list[tuple[Any, ...]]:
        address = self.next_address()
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]


class RebindingResolver(AbstractResolver):
    def __init__(self, dns: RebindingDns) -> None:
        self.dns = dns

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[Any]:
        address = self.dns.next_address()
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        return None


@dataclass
class Listener:
    connections: int = 0


async def closing_server(host: str, port: int, seen: Listener) -> asyncio.Server:
    """Answers every request 200 and closes, so each request needs a new connection."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.connections += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    return await asyncio.start_server(serve, host, port)


@pytest.fixture
async def public_and_internal() -> AsyncIterator[tuple[int, Listener, Listener]]:
    port = free_port()
    public, internal = Listener(), Listener()
    servers = [
        await closing_server("127.0.0.2", port, public),
        await closing_server("127.0.0.1", port, internal),
    ]
    yield port, public, internal
    for server in servers:
        server.close()
        await server.wait_closed()


async def test_a_name_rebound_to_an_internal_address_is_refused_at_the_next_connect(
    public_and_internal: tuple[int, Listener, Listener],
) -> None:
    port, public, internal = public_and_internal
    dns = RebindingDns()
    rule = policy(allow=["127.0.0.2/32"], **ANY_HIGH_PORT)
    poster = HttpPoster(timeout=5.0, egress=rule, resolve=dns.getaddrinfo)
    try:
        assert await poster.post(f"http://hooks.example:{port}/dlr", b"{}", {}) == 200
        with pytest.raises(EgressRefused, match="refused: private address"):
            await poster.post(f"http://hooks.example:{port}/dlr", b"{}", {})
    finally:
        poster.close()
    assert (public.connections, internal.connections) == (1, 0)


async def test_an_aiohttp_client_with_the_egress_resolver_is_held_to_the_same_rule(
    public_and_internal: tuple[int, Listener, Listener],
) -> None:
    port, public, internal = public_and_internal
    rule = policy(allow=["127.0.0.2/32"], **ANY_HIGH_PORT)
    connector = EgressConnector(
        rule, RebindingResolver(RebindingDns()), use_dns_cache=False, force_close=True
    )
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.post(f"http://hooks.example:{port}/dlr", data=b"{}") as response:
            assert response.status == 200
        with pytest.raises(aiohttp.ClientConnectorError, match="refused: private address"):
            await session.post(f"http://hooks.example:{port}/dlr", data=b"{}")
        with pytest.raises(aiohttp.ClientConnectorError, match="refused: port 22 not allowed"):
            await session.post("http://hooks.example:22/dlr", data=b"{}")
        for literal in ("127.0.0.1", "[::1]", "2130706433", "127.1"):
            with pytest.raises(aiohttp.ClientConnectorError, match="refused: private address"):
                await session.post(f"http://{literal}:{port}/dlr", data=b"{}")
    assert (public.connections, internal.connections) == (1, 0)


async def test_callbacks_go_through_the_operators_proxy_with_connect(
    receiver: Receiver,
) -> None:
    """A CONNECT proxy on 127.0.0.1 (it resolves names its own way: here every name is the
    receiver). Literal internal addresses are still refused before the proxy is asked."""
    target_port = int(receiver.url.rsplit(":", 1)[1].split("/")[0])
    asked: list[bytes] = []

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        asked.append(head.split(b"\r\n", 1)[0])
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(proxy, "127.0.0.1", 0)
    proxy_port = server.sockets[0].getsockname()[1]
    rule = policy(proxy=f"http://127.0.0.1:{proxy_port}", **ANY_HIGH_PORT)
    poster = HttpPoster(timeout=5.0, egress=rule)
    try:
        url = f"http://hooks.example:{target_port}/dlr"
        assert await poster.post(url, b'{"n":1}', {}) == 200
        with pytest.raises(EgressRefused, match="refused: private address"):
            await poster.post(f"http://10.0.0.1:{target_port}/dlr", b"{}", {})
    finally:
        poster.close()
        server.close()
    assert asked == [f"CONNECT hooks.example:{target_port} HTTP/1.1".encode()]
    assert [body for _, body, _ in receiver.received] == [b'{"n":1}']


def test_tandem_keys_create_refuses_an_internal_callback_url_unless_allowed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gateway.cli import main

    config = tmp_path / "tandem.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n', encoding="utf-8")
    create = ["keys", "create", "-c", str(config), "--name"]
    assert main([*create, "a", "--callback-url", "http://10.0.0.7/dlr"]) == 2
    assert "callback-url cannot be used: private address" in capsys.readouterr().err
    assert main([*create, "b", "--callback-url", "https://hooks.example/dlr"]) == 0
    config.write_text(
        f'data_dir = "{tmp_path / "data"}"\n[egress]\nallow = ["10.0.0.0/24"]\n', encoding="utf-8"
    )
    assert main([*create, "c", "--callback-url", "http://10.0.0.7/dlr"]) == 0
