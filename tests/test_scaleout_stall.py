"""A node that stalls longer than its lease (SIGSTOP: a frozen VM, a long pause) and then
resumes sends none of the messages another node took over meanwhile: real processes, the same
setup as `test_scaleout_crash` (two daemons on one PostgreSQL schema, one SMSC simulator
recording what it accepted). Node a holds a backlog (its link's tps share is low), is stopped
for longer than its lease, node b takes its queued messages over, node a is continued: every
message reaches the SMSC, and the only duplicates are node a's submits in flight when it
stopped (its window, one bind), not its backlog. Skips, saying why, where PostgreSQL is
absent."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import signal
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
from tests.store_backends import POSTGRES_DSN, drop_schemas, postgres_unavailable
from tests.test_scaleout_crash import statuses
from tests.waiting import wait_for

WINDOW = 10
LEASE = 2.0
MESSAGES = 800
TPS = 60.0  # the link's, over both nodes: 30 a second each while both hold a bind
BACKLOG = 200  # at least this many still queued on node a when it is stopped


def node_config(workdir: Path, node: str, http_port: int, smsc_port: int, schema: str) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    store = (
        f'[store]\nbackend = "postgresql"\ndsn = "{POSTGRES_DSN}"\n'
        f'database_schema = "{schema}"\nlease_seconds = {LEASE}\nwriter = "thread"\n'
        f'[node]\nname = "{node}"\n'
    )
    link = link_toml("sim", smsc_port, window=WINDOW, sessions=2, tps=TPS)
    route = '[[routes]]\nname = "everything"\npriority = 100\ntargets = ["sim"]\n'
    return write_config(workdir, http_port, [link], route, extra=store)


@pytest.mark.slow
async def test_a_node_stopped_past_its_lease_sends_none_of_its_taken_over_backlog(
    tmp_path: Path,
) -> None:
    reason = await postgres_unavailable()
    if reason is not None:
        pytest.skip(reason)
    schema = f"stall_{secrets.token_hex(4)}"
    smsc_port, port_a, port_b = free_port(), free_port(), free_port()
    smsc = simulator(tmp_path, "smsc", smsc_port, dlr_delay=0.2).start()
    config_a = node_config(tmp_path / "a", "node-a", port_a, smsc_port, schema)
    config_b = node_config(tmp_path / "b", "node-b", port_b, smsc_port, schema)
    key = create_key(config_a)
    (tmp_path / "b" / "data").mkdir(mode=0o700, exist_ok=True)
    shutil.copy2(tmp_path / "a" / "data" / "store.key", tmp_path / "b" / "data" / "store.key")
    record = tmp_path / "smsc.record"
    node_a = daemon(tmp_path / "a", config_a, "node-a").start()
    node_b: Process = daemon(tmp_path / "b", config_b, "node-b").start()
    stopped = False
    try:
        for port in (port_a, port_b):
            await wait_http(f"http://127.0.0.1:{port}/openapi.json", timeout=60)

        async def both_bound() -> bool:  # each node's binds come up with its share
            return "link sim is up" in node_a.output() and "link sim is up" in node_b.output()

        await wait_for(both_bound, "both nodes bound", interval=0.25)
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        texts = [f"stall message {n:05d}" for n in range(MESSAGES)]
        ids: list[str] = []
        async with aiohttp.ClientSession() as session:

            async def post(text: str) -> None:
                body = json.dumps({"to": "+447911123456", "from": "Stall", "text": text})
                async with session.post(
                    f"http://127.0.0.1:{port_a}/v1/messages", data=body, headers=headers
                ) as response:
                    assert response.status == 202, await response.text()
                    ids.append((await response.json())["id"])

            for start in range(0, MESSAGES, 50):
                await asyncio.gather(*(post(text) for text in texts[start : start + 50]))

        async def a_sending() -> bool:
            return sum(accepted_texts(record).values()) >= 30

        await wait_for(a_sending, "node a sending its backlog", interval=0.25)
        os.kill(node_a.pid, signal.SIGSTOP)
        stopped = True
        reached_at_stop = sum(accepted_texts(record).values())

        async def b_took_over() -> bool:
            return "took over" in node_b.output()

        await wait_for(b_took_over, "node b to take node a's messages over", interval=0.25)
        os.kill(node_a.pid, signal.SIGCONT)
        stopped = False

        async def all_reached() -> bool:
            return set(texts) <= set(accepted_texts(record))

        await wait_for(all_reached, "every message at the SMSC", timeout=120, interval=0.25)

        async def a_checked() -> bool:
            return "had lapsed" in node_a.output() or "may have lapsed" in node_a.output()

        await wait_for(a_checked, "node a to see that its lease lapsed", timeout=30, interval=0.25)

        async def all_delivered() -> bool:
            found = await statuses(schema, ids)
            return all(found.get(i) == "delivered" for i in ids)

        await wait_for(all_delivered, "every message delivered", timeout=120, interval=0.25)
        reached = accepted_texts(record)
        duplicates = sum(reached[text] - 1 for text in texts)
        print(
            f"\nstall: {MESSAGES} messages posted to node a, {reached_at_stop} at the SMSC when "
            f"it was stopped; {duplicates} duplicates (bound: its window {WINDOW} x 1 bind)"
        )
        assert reached_at_stop <= MESSAGES - BACKLOG  # a backlog was left to take over
        assert duplicates <= WINDOW
    finally:
        if stopped:
            os.kill(node_a.pid, signal.SIGCONT)
        for process in (node_a, node_b, smsc):
            process.stop()
        await drop_schemas([schema])
