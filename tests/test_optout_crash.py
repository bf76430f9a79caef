"""`kill -9` of a real daemon process while opt-outs are being recorded over HTTP: every
opt-out the API acknowledged is in force after a restart on the same data directory, and the
restarted daemon refuses messages to those numbers."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import aiohttp

from tests.daemon_processes import (
    ROOT,
    TANDEM,
    Process,
    daemon,
    free_port,
    link_toml,
    simulator,
    wait_http,
    write_config,
)
from tests.waiting import wait_for

NUMBERS = [f"+4479111{index:05d}" for index in range(10_000, 10_400)]


def optouts_key(config: Path) -> str:
    created = subprocess.run(
        [
            *TANDEM,
            "keys",
            "create",
            "-c",
            str(config),
            "--name",
            "ops",
            "--rps",
            "1e6",
            "--mps",
            "1e6",
            "--scopes",
            "messages,optouts",
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    ).stdout
    return created.split("key:", 1)[1].split()[0]


async def test_an_acknowledged_opt_out_survives_kill_9(tmp_path: Path) -> None:
    smsc_port, http_port = free_port(), free_port()
    smsc = simulator(tmp_path, "smsc", smsc_port).start()
    route = '[[routes]]\nname = "everything"\npriority = 100\ntargets = ["sim"]\n'
    config = write_config(tmp_path, http_port, [link_toml("sim", smsc_port)], route)
    key = optouts_key(config)
    url = f"http://127.0.0.1:{http_port}"
    headers = {"Authorization": f"Bearer {key}"}
    first = daemon(tmp_path, config, "tandem-1").start()
    second: Process | None = None
    acknowledged: list[str] = []
    try:
        await wait_http(url + "/openapi.json")
        async with aiohttp.ClientSession(headers=headers) as session:

            async def put(number: str) -> None:
                try:
                    async with session.put(
                        f"{url}/v1/optouts/{number}", json={"scope": "all"}
                    ) as response:
                        if response.status == 201:
                            acknowledged.append(number)
                except aiohttp.ClientError:
                    pass  # the daemon died under it: not acknowledged

            async def pour() -> None:
                for start in range(0, len(NUMBERS), 16):
                    await asyncio.gather(*(put(n) for n in NUMBERS[start : start + 16]))

            pouring = asyncio.create_task(pour())
            await wait_for(
                lambda: len(acknowledged) >= 100, "100 opt-outs acknowledged", interval=0.005
            )
            first.kill()
            await pouring
            # Answers the daemon wrote before it died may still be read after the kill: they
            # were acknowledged all the same, so every one of them must be in force.
            killed_with = list(acknowledged)
            assert 100 <= len(killed_with) < len(NUMBERS)

            second = daemon(tmp_path, config, "tandem-2").start()
            await wait_http(url + "/openapi.json")
            in_force: set[str] = set()
            after = ""
            while True:
                async with session.get(f"{url}/v1/optouts?limit=1000{after}") as response:
                    page = await response.json()
                in_force |= {entry["number"] for entry in page["optouts"]}
                if page["next"] is None:
                    break
                after = f"&after={page['next']}"
            assert set(killed_with) <= in_force
            async with session.post(
                f"{url}/v1/messages", json={"to": killed_with[-1], "from": "Shop", "text": "x"}
            ) as response:
                problem = await response.json(content_type=None)
                assert response.status == 403 and problem["code"] == "recipient_opted_out"
    finally:
        first.kill()
        if second is not None:
            second.stop()
        smsc.stop()
