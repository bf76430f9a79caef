"""`/v1/inbound` of a running daemon over HTTP: MOs the built-in simulator sent, listed by number
and time, newest first and paged, one by id, and the `inbound` key scope."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.test_http_harness import Daemon, running_daemon
from tests.test_smpp_server_support import wait_for

SUBSCRIBER = "447400123456"


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    async with running_daemon(tmp_path, key_settings={"scopes": ["messages", "inbound"]}) as d:
        yield d


async def test_mos_are_listed_by_number_newest_first_in_pages_and_read_by_id(
    daemon: Daemon,
) -> None:
    simulator = daemon.gateway.simulator
    started = quote(datetime.now(UTC).isoformat())
    await wait_for(lambda: bool(simulator.bound_system_ids), what="the link")  # type: ignore[attr-defined]
    for count, (source, text) in enumerate(
        ((SUBSCRIBER, "one"), ("447400999888", "other"), (SUBSCRIBER, "two")), start=1
    ):
        simulator.inject_mo(source, "12345", text)  # type: ignore[attr-defined]
        await wait_for(lambda n=count: daemon.gateway.inbound.stats.messages == n)  # in order
    await wait_for(lambda: daemon.gateway.inbound.stats.messages == 3)
    texts: list[str] = []
    after = ""
    while True:
        status, page, _ = await daemon.call(
            "GET", f"/v1/inbound?number=%2B{SUBSCRIBER}&limit=1&since={started}{after}"
        )
        assert status == 200, page
        texts += [item["text"] for item in page["inbound"]]
        if page["next"] is None:
            break
        after = f"&after={page['next']}"
    assert texts == ["two", "one"]
    status, page, _ = await daemon.call("GET", "/v1/inbound")
    first = page["inbound"][-1]
    assert (first["from"], first["to"], first["state"]) == (f"+{SUBSCRIBER}", "12345", "unmatched")
    status, one, _ = await daemon.call("GET", f"/v1/inbound/{first['id']}")
    assert status == 200 and one == first
    status, problem, _ = await daemon.call("GET", "/v1/inbound/999999")
    assert status == 404
    status, problem, _ = await daemon.call("GET", "/v1/inbound?since=yesterday")
    assert status == 422 and problem["field"] == "since"


async def test_a_key_without_the_inbound_scope_is_refused(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, key_settings={"scopes": ["messages"]}) as daemon:
        status, problem, _ = await daemon.call("GET", "/v1/inbound")
        assert status == 403 and problem["code"] == "insufficient_scope"
