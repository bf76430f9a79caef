"""Two nodes on one PostgreSQL, one killed with kill -9 in mid-flow: whatever either node's HTTP
API acknowledged (202) reaches the SMSC at least once, the survivor takes over the dead node's
unsent messages within its lease, every receipt is correlated (including those of messages the
dead node submitted, which the SMSC hands to the survivor's bind), and the only duplicates are
the dead node's submits the carrier had answered but the node had not yet recorded: at most
its window x binds.

Processes: the SMSC simulator (`tandem sim smsc --record FILE`), two daemons (`tandem run`,
each its own data directory and HTTP port, the same `[store]` on PostgreSQL at 127.0.0.1:5432,
db `test`, a schema of the test's own, `lease_seconds = 2`), each with one SMPP link (one
bind, window 10) to the simulator, and this test as the HTTP client posting to both nodes in
turn. Skips, saying why, where PostgreSQL is absent.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
import shutil
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import aiohttp
import asyncpg
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
from tests.waiting import wait_for

WINDOW = 10
BINDS = 1
LEASE = 2.0
CONCURRENCY = 32
TAKEOVER_SLACK = 3.0  # seconds: a renewal late on a machine shared by many


async def statuses(schema: str, ids: list[str]) -> dict[str, str]:
    conn = await asyncpg.connect(POSTGRES_DSN, server_settings={"search_path": schema})
    try:
        rows = await conn.fetch("SELECT id, status FROM message_state WHERE id = ANY($1)", ids)
    finally:
        await conn.close()
    return {r["id"]: r["status"] for r in rows}


def node_config(workdir: Path, node: str, http_port: int, smsc_port: int, schema: str) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    store = (
        f'[store]\nbackend = "postgresql"\ndsn = "{POSTGRES_DSN}"\n'
        f'database_schema = "{schema}"\nlease_seconds = {LEASE}\nwriter = "thread"\n'
        f'[node]\nname = "{node}"\n'
    )
    link = link_toml("sim", smsc_port, window=WINDOW, sessions=BINDS)
    route = '[[routes]]\nname = "everything"\npriority = 100\ntargets = ["sim"]\n'
    return write_config(workdir, http_port, [link], route, extra=store)


async def two_nodes_one_killed(tmp_path: Path, messages: int) -> None:
    reason = await postgres_unavailable()
    if reason is not None:
        pytest.skip(reason)
    schema = f"scaleout_{secrets.token_hex(4)}"  # its own, whichever worker runs it
    smsc_port, port_a, port_b = free_port(), free_port(), free_port()
    smsc = simulator(tmp_path, "smsc", smsc_port, dlr_delay=0.5).start()
    config_a = node_config(tmp_path / "a", "node-a", port_a, smsc_port, schema)
    config_b = node_config(tmp_path / "b", "node-b", port_b, smsc_port, schema)
    key = create_key(config_a)  # also creates the schema and node a's store.key
    # Every node of one database seals with the same key (docs/scale-out.md).
    (tmp_path / "b" / "data").mkdir(mode=0o700, exist_ok=True)
    shutil.copy2(tmp_path / "a" / "data" / "store.key", tmp_path / "b" / "data" / "store.key")
    record = tmp_path / "smsc.record"
    node_a = daemon(tmp_path / "a", config_a, "node-a").start()
    node_b: Process = daemon(tmp_path / "b", config_b, "node-b").start()
    urls = [f"http://127.0.0.1:{port_a}", f"http://127.0.0.1:{port_b}"]
    acknowledged: dict[str, str] = {}  # text -> message id
    by_node: dict[str, int] = {urls[0]: 0, urls[1]: 0}
    try:
        for url in urls:
            await wait_http(url + "/openapi.json")
        texts = (f"scale-out message {n:07d}" for n in itertools.count())
        turns = itertools.cycle(urls)
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        timeout = aiohttp.ClientTimeout(total=10)
        connector = aiohttp.TCPConnector(limit=CONCURRENCY)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

            async def worker() -> None:
                while len(acknowledged) < messages:
                    text, url = next(texts), next(turns)
                    body = json.dumps({"to": "+447911123456", "from": "Scale", "text": text})
                    try:
                        async with session.post(
                            url + "/v1/messages", data=body, headers=headers
                        ) as response:
                            document = await response.json(content_type=None)
                            if response.status == 202:
                                acknowledged[text] = document["id"]
                                by_node[url] += 1
                    except (aiohttp.ClientError, TimeoutError):
                        await asyncio.sleep(0.01)  # node a is dead: its turn is lost

            async def post_all() -> None:
                await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))

            client = asyncio.create_task(post_all())

            async def half() -> bool:
                return len(acknowledged) >= messages // 2

            await wait_for(half, "half of the messages acknowledged", timeout=300, interval=0.25)
            node_a.kill()
            killed_wall = time.time()
            acknowledged_by_a = by_node[urls[0]]
            await asyncio.wait_for(client, 600)
        acked = dict(acknowledged)
        ids = list(acked.values())

        async def all_reached() -> bool:
            return set(acked) <= set(accepted_texts(record))

        try:
            await wait_for(
                all_reached,
                "every acknowledged message at the SMSC",
                timeout=120,
                interval=0.25,
            )
        except AssertionError:
            missing = set(acked) - set(accepted_texts(record))
            found = await statuses(schema, [acked[text] for text in missing])
            raise AssertionError(
                f"{len(missing)} of {len(acked)} acknowledged messages never reached the SMSC; "
                f"their statuses: {sorted(Counter(found.values()).items())}"
            ) from None
        # The survivor's log says when it took node a's messages (its lines start with the
        # local time): within the lease, plus one renewal period, plus slack for a loaded host.
        taken = [
            datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            for line in node_b.output().splitlines()
            if "took over" in line
        ]
        after_kill = [at - killed_wall for at in taken if at >= killed_wall - 0.5]
        assert after_kill, "the survivor never took over node a's messages"
        takeover_seconds = after_kill[0]
        assert takeover_seconds <= LEASE + LEASE / 3 + TAKEOVER_SLACK

        async def all_delivered() -> bool:
            found = await statuses(schema, ids)
            return all(found.get(i) == "delivered" for i in ids)

        await wait_for(
            all_delivered,
            "every receipt correlated (a message left submitted lost one)",
            timeout=120,
            interval=0.25,
        )
        reached = accepted_texts(record)
        duplicates = sum(reached[text] - 1 for text in acked)
        print(
            f"\nscale-out crash: {len(acked)} acknowledged ({acknowledged_by_a} by node a before "
            f"kill -9); every one reached the SMSC and ended delivered; {duplicates} duplicates "
            f"(bound: node a's window {WINDOW} x {BINDS} binds); taken over "
            f"{takeover_seconds:.1f} s after the kill (lease {LEASE} s)"
        )
        assert acknowledged_by_a > 0
        assert duplicates <= WINDOW * BINDS
    finally:
        for process in (node_a, node_b, smsc):
            process.stop()
        await drop_schemas([schema])


async def test_two_nodes_one_killed_lose_no_acknowledged_message_or_receipt(
    tmp_path: Path,
) -> None:
    await two_nodes_one_killed(tmp_path, 2_000)


@pytest.mark.slow
async def test_twenty_thousand_messages_on_two_nodes_one_killed(tmp_path: Path) -> None:
    await two_nodes_one_killed(tmp_path, 20_000)
