"""`/v1/inbound` of a running daemon over HTTP: MOs the built-in simulator sent, listed by number
and time, newest first and paged, one by id, and the `inbound` key scope."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from gateway.cli import main
from tests.test_http_harness import Daemon, running_daemon
from tests.waiting import wait_for

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
        # One at a time, so their order is known.
        await wait_for(lambda n=count: daemon.gateway.inbound.stats.messages == n, f"MO {count}")
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


@pytest.mark.parametrize("raw_id", ["99999999999999999999", "9223372036854775808", "%C2%B2"])
async def test_an_id_no_row_can_have_is_not_found_not_a_server_error(
    daemon: Daemon, raw_id: str
) -> None:
    # Past a 64-bit integer, or a Unicode digit that int() refuses: no row has it.
    status, problem, _ = await daemon.call("GET", f"/v1/inbound/{raw_id}")
    assert status == 404, problem
    status, problem, _ = await daemon.call("GET", f"/v1/inbound?limit={raw_id}")
    assert status == 422 and problem["field"] == "limit"


async def test_a_key_without_the_inbound_scope_is_refused(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, key_settings={"scopes": ["messages"]}) as daemon:
        status, problem, _ = await daemon.call("GET", "/v1/inbound")
        assert status == 403 and problem["code"] == "insufficient_scope"


REPLIES = [
    {"kind": "opt_out", "text": "Unsubscribed. Reply START to undo."},
    {"kind": "opt_in", "text": "Subscribed again."},
]


async def test_tandem_sim_mo_sends_stop_the_confirmation_goes_out_and_the_next_send_is_refused(
    tmp_path: Path,
) -> None:
    async with running_daemon(tmp_path, extra={"inbound": {"replies": REPLIES}}) as daemon:
        simulator: Any = daemon.gateway.simulator
        await wait_for(lambda: bool(simulator.bound_system_ids), what="the link")
        port = daemon.api.port
        config = tmp_path / "cli.toml"
        config.write_text(
            f'data_dir = "{tmp_path / "data"}"\n[http]\nhost = "127.0.0.1"\nport = {port}\n'
            "[simulator]\nenabled = true\n",
            encoding="utf-8",
        )
        argv = ["sim", "mo", "-c", str(config), "--from", f"+{SUBSCRIBER}", "--to", "12345"]
        assert await asyncio.to_thread(main, [*argv, "--text", "STOP"]) == 0

        def replies() -> list[tuple[str, str]]:
            return [
                (r.source_addr, r.text)
                for r in simulator.received
                if r.destination_addr == SUBSCRIBER
            ]

        await wait_for(lambda: bool(replies()), what="the confirmation")
        assert replies() == [("12345", REPLIES[0]["text"])]
        status, problem, _ = await daemon.call(
            "POST", "/v1/messages", {"to": f"+{SUBSCRIBER}", "from": "12345", "text": "Sale"}
        )
        assert status == 403 and problem["code"] == "recipient_opted_out"
        assert await asyncio.to_thread(main, [*argv, "--text", "START"]) == 0
        await wait_for(lambda: len(replies()) == 2, what="the opt-in reply")
        status, _, _ = await daemon.call(
            "POST", "/v1/messages", {"to": f"+{SUBSCRIBER}", "from": "12345", "text": "Sale"}
        )
        assert status == 202


async def test_tandem_inbound_block_keeps_the_numbers_mos_out_of_every_route(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with running_daemon(tmp_path) as daemon:
        config = tmp_path / "cli.toml"
        config.write_text(f'data_dir = "{tmp_path / "data"}"\n', encoding="utf-8")
        block = ["inbound", "block", "-c", str(config), f"+{SUBSCRIBER}", "--reason", "spam"]
        assert await asyncio.to_thread(main, block) == 0
        assert await asyncio.to_thread(main, ["inbound", "list", "-c", str(config)]) == 0
        assert f"+{SUBSCRIBER}" in capsys.readouterr().out
        await daemon.gateway.inbound.refresh_block_list()  # the daemon's own poll, at once
        assert SUBSCRIBER in daemon.gateway.inbound.blocked
        assert main(["inbound", "block", "-c", str(config), "not-a-number"]) == 2
        unblock = ["inbound", "unblock", "-c", str(config), SUBSCRIBER]
        assert await asyncio.to_thread(main, unblock) == 0
        await daemon.gateway.inbound.refresh_block_list()
        assert not daemon.gateway.inbound.blocked
