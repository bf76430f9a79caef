"""Route failover with real processes: two SMSC simulators behind one route (failover order, or
weighted shares) and one of them killed (`kill -9`) in mid-run. Every message the HTTP API
acknowledged still ends delivered: what was queued for the dead link moves to the other one,
and what was in flight on it is sent again there.

The simulator that dies sends each receipt before its submit_sm_resp (`--dlr-before-resp`), so
a submit it did acknowledge comes with its receipt and "delivered" is a fair demand of every
message; a submit it never answered must be delivered through the other simulator.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import aiohttp
import pytest

from tests.daemon_processes import (
    Process,
    accepted_texts,
    create_key,
    daemon,
    free_port,
    link_toml,
    simulator,
    wait_http,
    write_config,
)
from tests.waiting import wait_for

MESSAGES = 1_500
KILL_AFTER = 400
CONCURRENCY = 32


def statuses(database: Path) -> dict[str, str]:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
        return dict(connection.execute("SELECT id, status FROM messages").fetchall())


async def send_all(url: str, key: str, doomed: Process, acknowledged: dict[str, str]) -> None:
    """Send MESSAGES messages (unique texts); kill the `doomed` simulator once KILL_AFTER of
    them were acknowledged. Every message must be acknowledged: the daemon stays up."""
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    indexes = iter(range(MESSAGES))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONCURRENCY)) as http:

        async def worker() -> None:
            for index in indexes:
                text = f"failover message {index:05d}"
                body = json.dumps({"to": "+447911123456", "from": "Failover", "text": text})
                async with http.post(url, data=body, headers=headers) as response:
                    document = await response.json(content_type=None)
                    assert response.status == 202, document
                acknowledged[text] = document["id"]
                if len(acknowledged) == KILL_AFTER:
                    doomed.kill()

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


@pytest.mark.parametrize(
    "route",
    [
        'strategy = "failover"\ntargets = ["doomed", "survivor"]',
        'strategy = "weighted"\ntargets = ["doomed", "survivor"]\nweights = [3, 1]',
    ],
    ids=["failover", "weighted"],
)
async def test_killing_one_smsc_mid_run_loses_nothing_every_message_ends_delivered(
    tmp_path: Path, route: str
) -> None:
    doomed_port, survivor_port, http_port = free_port(), free_port(), free_port()
    doomed = simulator(
        tmp_path, "doomed", doomed_port, dlr_delay=0.0, extra=["--dlr-before-resp"]
    ).start()
    survivor = simulator(tmp_path, "survivor", survivor_port, dlr_delay=0.0).start()
    links = [link_toml("doomed", doomed_port), link_toml("survivor", survivor_port)]
    routes = f'[[routes]]\nname = "both"\npriority = 1\n{route}\n'
    config = write_config(tmp_path, http_port, links, routes)
    key = create_key(config)
    gateway = daemon(tmp_path, config).start()
    database = tmp_path / "data" / "tandem.db"
    try:
        await wait_http(f"http://127.0.0.1:{http_port}/openapi.json")
        # Both links up before the first message, or one might carry none before the kill.
        await wait_for(
            lambda: all(
                f"link {name} is up" in gateway.output() for name in ("doomed", "survivor")
            ),
            "both links up",
            interval=0.05,
        )
        acknowledged: dict[str, str] = {}
        await send_all(f"http://127.0.0.1:{http_port}/v1/messages", key, doomed, acknowledged)

        # Messages the dead SMSC never answered are retried after the first backoff (5 s).
        current: dict[str, str] = {}
        waiting: list[str] = []

        def all_delivered() -> bool:
            current.update(statuses(database))
            waiting[:] = [i for i in acknowledged.values() if current.get(i) != "delivered"]
            return not waiting

        await wait_for(
            all_delivered,
            lambda: (
                f"every message delivered ({len(waiting)} not; one is {current.get(waiting[0])})"
            ),
            interval=0.2,
        )
        at_doomed = accepted_texts(tmp_path / "doomed.record")
        at_survivor = accepted_texts(tmp_path / "survivor.record")
        print(
            f"\nfailover: {len(acknowledged)} acknowledged; {len(at_doomed)} reached the killed "
            f"SMSC, {len(at_survivor)} the survivor; {len(waiting)} not delivered"
        )
        assert len(acknowledged) == MESSAGES
        assert waiting == [], f"{len(waiting)} messages not delivered: {current[waiting[0]]}"
        # The kill came mid-run: both carried traffic, and everything after it went on.
        assert at_doomed and at_survivor
        sent_after_kill = [f"failover message {i:05d}" for i in range(MESSAGES - 100, MESSAGES)]
        assert all(text in at_survivor for text in sent_after_kill)
    finally:
        for process in (gateway, survivor, doomed):
            process.stop()
