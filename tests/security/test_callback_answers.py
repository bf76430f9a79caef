"""A callback receiver cannot make the daemon buffer its answer: a real `tandem run` process
posts receipt callbacks to receivers on 127.0.0.1 that answer with a 256 MiB body (one huge
chunk, a Content-Length, or no length at all, until close) and the daemon's peak resident
memory (VmHWM) hardly moves; the receivers count how much they got to send. And the poster in
process against hand-written answers: short ones keep the connection, long ones close it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from gateway.callbacks import HttpPoster
from gateway.config import EgressConfig
from gateway.egress import EgressPolicy
from tests.daemon_processes import create_key, daemon, free_port, link_toml, wait_http
from tests.test_http_harness import LOCAL_RECEIVERS
from tests.waiting import wait_for

UK = "+447911123456"
LOCAL = EgressPolicy.from_config(EgressConfig(**LOCAL_RECEIVERS))
MIB = 1024 * 1024
STREAMED = 256 * MIB
HEADS = {
    "/chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n" % STREAMED,
    "/length": b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % STREAMED,
    "/until-close": b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n",
}


@dataclass
class FloodingReceiver:
    """Answers each callback 200 with a head from `HEADS` (by path) and streams up to
    `STREAMED` bytes of body as fast as the daemon takes them."""

    port: int
    sent: dict[str, int] = field(default_factory=dict)  # path -> body bytes the daemon took

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        path = head.split(b" ", 2)[1].decode()
        writer.write(HEADS[path])
        block = b"x" * MIB
        self.sent[path] = 0
        try:
            while self.sent[path] < STREAMED:
                writer.write(block)
                await writer.drain()
                self.sent[path] += len(block)
        except (ConnectionError, OSError):
            pass  # the daemon closed the connection: what we wanted
        finally:
            writer.close()


@pytest.fixture
async def flooding_receiver() -> AsyncIterator[FloodingReceiver]:
    receiver = FloodingReceiver(free_port())
    server = await asyncio.start_server(receiver.serve, "127.0.0.1", receiver.port)
    yield receiver
    server.close()


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc status")


async def test_a_receiver_streaming_a_huge_answer_does_not_grow_the_daemons_memory(
    tmp_path: Path, flooding_receiver: FloodingReceiver
) -> None:
    http_port, sim_port = free_port(), free_port()
    config = tmp_path / "tandem.toml"
    config.write_text(
        f"""
data_dir = "{tmp_path / "data"}"
[smpp_server]
enabled = false
[http]
host = "127.0.0.1"
port = {http_port}
[egress]
allow = ["127.0.0.1"]   # the receiver of this test
ports = ["1024-65535"]
[simulator]
enabled = true
host = "127.0.0.1"
port = {sim_port}
dlr_delay = 0.0
{link_toml("sim", sim_port)}
[[routes]]
name = "all"
priority = 100
targets = ["sim"]
""",
        encoding="utf-8",
    )
    key = create_key(config)
    process = daemon(tmp_path, config).start()
    base = f"http://127.0.0.1:{http_port}"
    try:
        await wait_http(base + "/openapi.json")
        auth = {"Authorization": f"Bearer {key}"}
        async with aiohttp.ClientSession(headers=auth) as session:

            async def send(path: str) -> str:
                url = f"http://127.0.0.1:{flooding_receiver.port}{path}"
                body = {"to": UK, "text": "hi", "callback_url": url}
                async with session.post(base + "/v1/messages", json=body) as response:
                    assert response.status == 202, await response.text()
                    return str((await response.json())["id"])

            async def callback_outcomes(message_id: str) -> list[str]:
                async with session.get(f"{base}/v1/messages/{message_id}") as response:
                    details = [e["detail"] for e in (await response.json())["history"]]
                return [d for d in details if d.startswith("callback")]

            # Warm up (first requests, first callback) before the baseline is taken.
            await send("/length")
            await asyncio.sleep(1.0)
            before = peak_rss_kib(process.pid)
            sent = [await send(path) for path in HEADS]

            async def recorded() -> bool:
                return all([await callback_outcomes(m) for m in sent])

            await wait_for(
                recorded,
                lambda: (
                    f"the callbacks recorded; peak RSS {before} KiB -> "
                    f"{peak_rss_kib(process.pid)} KiB, body bytes taken {flooding_receiver.sent}"
                ),
                interval=0.1,
            )
            after = peak_rss_kib(process.pid)
            outcomes = [await callback_outcomes(m) for m in sent]
    finally:
        process.stop()
    print(f"peak RSS {before} KiB -> {after} KiB; body bytes taken {flooding_receiver.sent}")
    assert all(o[0].endswith(": HTTP 200 (attempt 1)") for o in outcomes), outcomes
    assert after - before < 32 * 1024, (before, after)  # 256 MiB were offered three times
    # What the receivers got to write is what the sockets' buffers hold, not the body.
    assert all(taken < 32 * MIB for taken in flooding_receiver.sent.values())


# --- the poster against hand-written answers (in process) ----------------------------------


@pytest.mark.parametrize(
    ("answer", "reused"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", True),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", True),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"2;x=y\r\nok\r\n0\r\nX-Trailer: 1\r\n\r\n",
            True,
        ),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + b"x" * 5000, False),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1388\r\n" + b"x" * 5000, False),
        (b"HTTP/1.1 200 OK\r\n\r\nuntil close", False),
    ],
)
async def test_a_short_answer_keeps_the_connection_and_a_long_one_closes_it(
    answer: bytes, reused: bool
) -> None:
    connections = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                writer.write(answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    poster = HttpPoster(timeout=5.0, egress=LOCAL)
    try:
        for _ in range(2):
            assert await poster.post(f"http://127.0.0.1:{port}/dlr", b"{}", {}) == 200
    finally:
        poster.close()
        server.close()
    assert connections == (1 if reused else 2)


async def test_an_endless_head_is_a_malformed_answer_not_a_buffer() -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nX-Filler: ")
        try:
            for _ in range(64):
                writer.write(b"y" * MIB)
                await writer.drain()
        except ConnectionError:
            pass
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    poster = HttpPoster(timeout=5.0, egress=LOCAL)
    try:
        with pytest.raises(ValueError, match="head is too long"):
            await poster.post(f"http://127.0.0.1:{port}/dlr", b"{}", {})
    finally:
        poster.close()
        server.close()
