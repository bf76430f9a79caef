"""The HTTP server's edge against real sockets: silent, trickling and idle connections are
closed within the configured time, the connection cap holds while a real client is served,
and an oversized head gets problem+json and one WARNING line without the header's value."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

from tests.test_http_harness import Daemon, running_daemon
from tests.waiting import wait_for

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]
# Generous upper bound over a configured timeout on a busy two-core machine: the assertion is
# that the connection ends, not how quickly the loop gets to it.
SLACK = 4.0


@asynccontextmanager
async def connection(daemon: Daemon) -> AsyncIterator[Stream]:
    reader, writer = await asyncio.open_connection("127.0.0.1", daemon.api.port)
    try:
        yield reader, writer
    finally:
        writer.close()


async def closed_after(
    reader: asyncio.StreamReader, within: float, since: float | None = None
) -> float:
    """Seconds from `since` (default: now) until the server closes the connection (reading and
    dropping what it sends); fails if that takes longer than `within` from now."""
    loop = asyncio.get_running_loop()
    start = loop.time() if since is None else since
    async with asyncio.timeout(within):
        while True:
            try:
                data = await reader.read(65536)
            except ConnectionError:
                break
            if not data:
                break
    return loop.time() - start


async def trickle(writer: asyncio.StreamWriter, data: bytes, every: float) -> None:
    """Send `data` a byte at a time until the server closes the connection."""
    try:
        for byte in data:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(every)
    except ConnectionError:
        pass


async def open_silently(daemon: Daemon, count: int) -> list[asyncio.StreamWriter]:
    writers = []
    for _ in range(count):
        _, writer = await asyncio.open_connection("127.0.0.1", daemon.api.port)
        writers.append(writer)
    return writers


async def test_silent_connections_are_closed_after_the_header_timeout(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, http={"header_timeout": 1.0}) as daemon:
        loop = asyncio.get_running_loop()
        readers = []
        for _ in range(300):
            opened_at = loop.time()
            reader, writer = await asyncio.open_connection("127.0.0.1", daemon.api.port)
            readers.append((reader, writer, opened_at))  # a dropped writer closes its socket
        times = await asyncio.gather(*(closed_after(r, 1.0 + SLACK, t) for r, _, t in readers))
        assert min(times) >= 0.9  # not before the configured time
        stats = daemon.api.stats.connections
        assert stats.header_timeouts == 300
        await wait_for(lambda: stats.open == 0, "every connection closed")
        for _, writer, _ in readers:
            writer.close()


async def test_a_head_trickled_a_byte_at_a_time_is_cut_at_the_header_timeout(
    tmp_path: Path,
) -> None:
    head = b"GET /openapi.json HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 10_000
    async with running_daemon(tmp_path, http={"header_timeout": 1.0}) as daemon:
        loop = asyncio.get_running_loop()
        started = loop.time()
        connections = [
            await asyncio.open_connection("127.0.0.1", daemon.api.port) for _ in range(100)
        ]
        senders = [asyncio.create_task(trickle(w, head, 0.1)) for _, w in connections]
        times = await asyncio.gather(
            *(closed_after(r, 1.0 + SLACK, started) for r, _ in connections)
        )
        await asyncio.gather(*senders)
        assert min(times) >= 0.9
        assert daemon.api.stats.connections.header_timeouts == 100
        for _, writer in connections:
            writer.close()


async def test_a_body_trickled_after_its_head_is_cut_at_the_header_timeout(
    tmp_path: Path,
) -> None:
    async with running_daemon(tmp_path, http={"header_timeout": 1.0}) as daemon:
        async with connection(daemon) as (reader, writer):
            writer.write(
                b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 1000\r\n"
                + f"Authorization: Bearer {daemon.key.secret}\r\n\r\n".encode()
            )
            sender = asyncio.create_task(trickle(writer, b"{" + b" " * 999, 0.05))
            elapsed = await closed_after(reader, 1.0 + SLACK)
            await sender
        assert elapsed >= 0.9
        assert daemon.api.stats.connections.body_timeouts == 1


async def test_an_idle_kept_alive_connection_is_closed_after_the_keepalive_timeout(
    tmp_path: Path,
) -> None:
    async with running_daemon(
        tmp_path, http={"keepalive_timeout": 1.0, "header_timeout": 30.0}
    ) as daemon:
        async with connection(daemon) as (reader, writer):
            for _ in range(2):  # the connection stays open between answered requests
                writer.write(b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n")
                status = await reader.readline()
                assert status.startswith(b"HTTP/1.1 200"), status
                length = 0
                while (line := await reader.readline()) != b"\r\n":
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
            elapsed = await closed_after(reader, 1.0 + SLACK)
        assert elapsed >= 0.9
        stats = daemon.api.stats.connections
        assert stats.keepalive_timeouts == 1
        assert stats.header_timeouts == 0


async def test_the_cap_holds_and_a_real_client_is_served_past_silent_connections(
    tmp_path: Path,
) -> None:
    async with running_daemon(
        tmp_path, http={"max_connections": 20, "header_timeout": 60.0}
    ) as daemon:
        stats = daemon.api.stats.connections
        silent = await open_silently(daemon, 20)
        await wait_for(lambda: stats.open == 20, "20 connections open")
        # A real client still gets its answer: the oldest silent connection gives way.
        for _ in range(3):
            status, body, _ = await daemon.call("GET", "/v1/messages/00000000000000000000")
            assert status == 404, body
            assert stats.open <= 20
        assert stats.evicted >= 1
        # More silent connections: the cap still holds.
        silent += await open_silently(daemon, 40)
        await asyncio.sleep(0.2)
        assert stats.open <= 20
        status, _, _ = await daemon.call("GET", "/openapi.json")
        assert status == 200
        assert stats.open <= 20
        for writer in silent:
            writer.close()


async def test_at_the_cap_with_every_connection_busy_a_new_one_is_closed(
    tmp_path: Path,
) -> None:
    async with running_daemon(
        tmp_path, http={"max_connections": 5, "header_timeout": 60.0}
    ) as daemon:
        stats = daemon.api.stats.connections
        head = (
            b"POST /v1/messages/preview HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
            + f"Authorization: Bearer {daemon.key.secret}\r\n\r\n".encode()
        )
        busy = []
        for _ in range(5):  # heads in, bodies still owed: mid-request, never evicted
            reader, writer = await asyncio.open_connection("127.0.0.1", daemon.api.port)
            writer.write(head + b"{")
            await writer.drain()
            busy.append((reader, writer))
        await wait_for(lambda: stats.open == 5, "5 connections open")
        reader, writer = await asyncio.open_connection("127.0.0.1", daemon.api.port)
        await closed_after(reader, SLACK)
        writer.close()
        assert stats.refused == 1
        assert stats.evicted == 0
        assert stats.open == 5
        for _, writer in busy:
            writer.close()


async def test_an_oversized_authorization_header_gets_431_and_one_warning_without_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "tdm_" + "S3cr3t" * 1700  # about 10 KB
    caplog.set_level(logging.DEBUG)
    async with running_daemon(tmp_path) as daemon:
        caplog.clear()
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                daemon.url + "/v1/messages",
                headers={"Authorization": f"Bearer {secret}"},
                json={"to": "+447911123456", "text": "hi"},
            ) as response,
        ):
            body = await response.json(content_type=None)
            assert response.status == 431
            assert response.content_type == "application/problem+json"
            assert body["code"] == "header_too_large"
        records = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert [r.levelname for r in records] == ["WARNING"], [r.getMessage() for r in records]
        assert "S3cr3t" not in caplog.text
        assert daemon.api.stats.connections.bad_requests == 1


async def test_an_oversized_request_line_gets_414_and_a_malformed_one_400(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with running_daemon(tmp_path) as daemon:
        caplog.clear()
        for request, status in (
            (b"GET /" + b"x" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", b"414"),
            (b"GET /a b c HTTP/9\r\nHost: x\r\n\r\n", b"400"),
        ):
            async with connection(daemon) as (reader, writer):
                writer.write(request)
                answer = await reader.read(65536)
            assert answer.split(b" ", 2)[1] == status, answer
            assert b"application/problem+json" in answer
        assert [r.levelname for r in caplog.records if r.levelno >= logging.WARNING] == [
            "WARNING",
            "WARNING",
        ]
        assert "xxxxxxxx" not in caplog.text


async def test_a_broken_chunk_while_a_handler_waits_for_its_body_ends_at_the_header_timeout(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with running_daemon(tmp_path, http={"header_timeout": 1.0}) as daemon:
        async with connection(daemon) as (reader, writer):
            writer.write(
                b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                b"Content-Type: application/json\r\n"
                + f"Authorization: Bearer {daemon.key.secret}\r\n\r\n".encode()
            )
            await writer.drain()
            await wait_for(lambda: daemon.api.stats.requests == 1, "the handler to read the body")
            writer.write(b'5\r\n{"to"\r\nCHUNKSECRET42\r\n')  # not a chunk size
            elapsed = await closed_after(reader, 1.0 + SLACK)
        assert elapsed >= 0.5
        assert daemon.api.stats.connections.body_timeouts == 1
        assert daemon.api.stats.server_errors == 0
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text[-2000:]
        assert "CHUNKSECRET42" not in caplog.text
