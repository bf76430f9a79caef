"""Receipt callbacks from a running daemon to a real aiohttp sink: signed, retried after a 500,
given up on a 4xx, per message or per key, and recorded in the message's history."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from dlr.callback import SIGNATURE_HEADER, verify
from gateway.callbacks import HttpPoster
from gateway.config import EgressConfig
from gateway.egress import EgressPolicy
from tests.test_http_harness import LOCAL_RECEIVERS, Daemon, free_port, running_daemon
from tests.waiting import wait_for

UK = "+447911123456"
LOCAL = EgressPolicy.from_config(EgressConfig(**LOCAL_RECEIVERS))
FAST_RETRIES = {"callback_retry_initial": 0.05, "callback_retry_max_delay": 0.1}


@dataclass
class Sink:
    """A customer's callback endpoint: answers from `script` (then 200), keeps every request."""

    url: str
    script: list[int] = field(default_factory=list)
    received: list[tuple[bytes, str | None, int]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        status = self.script.pop(0) if self.script else 200
        self.received.append((await request.read(), request.headers.get(SIGNATURE_HEADER), status))
        return web.Response(status=status, text="ok")


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    port = free_port()
    receiver = Sink(f"http://127.0.0.1:{port}/dlr")
    app = web.Application()
    app.router.add_post("/dlr", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield receiver
    await runner.cleanup()


async def history_details(daemon: Daemon, message_id: str) -> list[str]:
    _, details, _ = await daemon.call("GET", f"/v1/messages/{message_id}")
    return [entry["detail"] for entry in details["history"]]


async def test_a_final_status_is_posted_signed_and_retried_after_a_500(
    tmp_path: Path, sink: Sink
) -> None:
    sink.script = [500]
    async with running_daemon(tmp_path, http=FAST_RETRIES) as daemon:
        _, sent, _ = await daemon.call(
            "POST",
            "/v1/messages",
            {"to": UK, "text": "hi", "callback_url": sink.url, "reference": "order-7"},
        )

        async def recorded() -> bool:
            return any("HTTP 200" in d for d in await history_details(daemon, sent["id"]))

        await wait_for(recorded, "the callback's HTTP 200 in the history")
        assert [status for _, _, status in sink.received] == [500, 200]
        secret = daemon.key.record.callback_secret
        for body, signature, _ in sink.received:
            assert signature is not None
            assert verify(secret, body, signature, time.time())
            assert not verify("another secret", body, signature, time.time())
        document = json.loads(sink.received[-1][0])
        assert document["message_id"] == sent["id"]
        assert (document["status"], document["final"]) == ("delivered", True)
        assert document["to"] == UK and document["reference"] == "order-7"
        [segment] = document["segments"]
        assert segment["status"] == "delivered" and segment["carrier_id"]
        details = await history_details(daemon, sent["id"])
        assert any(d.startswith(f"callback to {sink.url}: HTTP 200 (attempt 2)") for d in details)
        assert daemon.api.callbacks is not None
        assert daemon.api.callbacks.stats.retried == 1


async def test_a_keys_callback_url_serves_messages_without_their_own(
    tmp_path: Path, sink: Sink
) -> None:
    async with running_daemon(
        tmp_path, http={"callback_events": "all"}, key_settings={"callback_url": sink.url}
    ) as daemon:
        _, sent, _ = await daemon.call("POST", "/v1/messages", {"to": UK, "text": "hi"})

        async def both() -> bool:
            return [json.loads(b)["status"] for b, _, _ in sink.received] == [
                "submitted",
                "delivered",
            ]

        await wait_for(both, "the submitted and the delivered callback")
        assert all(json.loads(b)["message_id"] == sent["id"] for b, _, _ in sink.received)


async def test_a_4xx_answer_is_final_and_the_give_up_is_recorded(
    tmp_path: Path, sink: Sink
) -> None:
    sink.script = [404]
    async with running_daemon(tmp_path, http=FAST_RETRIES) as daemon:
        _, sent, _ = await daemon.call(
            "POST", "/v1/messages", {"to": UK, "text": "hi", "callback_url": sink.url}
        )

        async def given_up() -> bool:
            return any("given up: HTTP 404" in d for d in await history_details(daemon, sent["id"]))

        await wait_for(given_up, "the give-up in the history")
        assert len(sink.received) == 1


async def test_retries_stop_after_the_configured_period(tmp_path: Path) -> None:
    dead_url = f"http://127.0.0.1:{free_port()}/nobody-listens"
    http = {**FAST_RETRIES, "callback_retry_for": 0.3}
    async with running_daemon(tmp_path, http=http) as daemon:
        _, sent, _ = await daemon.call(
            "POST", "/v1/messages", {"to": UK, "text": "hi", "callback_url": dead_url}
        )

        async def given_up() -> bool:
            return any(
                "given up: no answer" in d for d in await history_details(daemon, sent["id"])
            )

        await wait_for(given_up, "the give-up in the history")
        assert daemon.api.callbacks is not None
        stats = daemon.api.callbacks.stats
        assert stats.given_up == 1 and 2 <= stats.attempts <= 8


# --- the keep-alive poster on its own ------------------------------------------------------------


async def test_the_poster_reuses_one_connection_and_sends_the_headers(sink: Sink) -> None:
    poster = HttpPoster(timeout=5.0, egress=LOCAL)
    try:
        for n in range(3):
            assert await poster.post(sink.url + "?n=1", b'{"n":%d}' % n, {"X-A": "b"}) == 200
        assert [body for body, _, _ in sink.received] == [b'{"n":0}', b'{"n":1}', b'{"n":2}']
        assert sum(len(idle) for idle in poster._idle.values()) == 1
    finally:
        poster.close()


async def test_a_silent_server_times_out_and_the_next_request_still_has_its_deadline() -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # read nothing, answer nothing

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    poster = HttpPoster(timeout=0.2, egress=LOCAL)
    try:
        for _ in range(2):
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                await poster.post(f"http://127.0.0.1:{port}/dlr", b"{}", {})
            assert 0.15 <= time.monotonic() - started < 2.0
        # Overlapping requests each get their own deadline.
        results = await asyncio.gather(
            *(poster.post(f"http://127.0.0.1:{port}/dlr", b"{}", {}) for _ in range(3)),
            return_exceptions=True,
        )
        assert all(isinstance(result, TimeoutError) for result in results)
    finally:
        poster.close()
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_cancelling_a_post_is_not_turned_into_a_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    poster = HttpPoster(timeout=5.0, egress=LOCAL)
    try:
        task = asyncio.create_task(poster.post(f"http://127.0.0.1:{port}/dlr", b"{}", {}))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not poster._deadlines._running
    finally:
        poster.close()
        server.close()
        await server.wait_closed()


async def test_a_url_that_is_not_http_is_refused() -> None:
    poster = HttpPoster(timeout=1.0)
    with pytest.raises(ValueError, match="not an http"):
        await poster.post("ftp://example.com/x", b"{}", {})


def test_a_url_judged_once_is_judged_the_same_again_and_each_policy_judges_for_itself() -> None:
    closed = EgressPolicy()
    opened = EgressPolicy.from_config(EgressConfig(allow=["127.0.0.1"], ports=["1024-65535"]))
    url = "http://127.0.0.1:40000/receipts"
    assert closed.url_refusal(url) == "port 40000 not allowed"
    assert closed.url_refusal(url) == "port 40000 not allowed"  # the kept answer
    assert opened.url_refusal(url) is None
    assert opened.url_refusal(url) is None
    assert opened.url_refusal("http://10.0.0.1:40000/") == "private address"
    assert opened == EgressPolicy.from_config(
        EgressConfig(allow=["127.0.0.1"], ports=["1024-65535"])
    )
