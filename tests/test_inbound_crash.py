"""kill -9 of a real daemon process right after the carrier's deliver_sm were answered: every MO
it answered is in the store, and a part held for reassembly is still there after the restart
(and then goes on as the part it is when the rest never comes). The carrier is an SMSC
simulator in the test process, bound by the daemon's SMPP link over 127.0.0.1."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from gateway.config import SimulatorConfig
from gateway.simulator import SmscSimulator
from tests.daemon_processes import daemon, free_port, link_toml, wait_http, write_config
from tests.waiting import wait_for

COUNT = 300


def stored(path: Path) -> list[tuple[str, str, str | None]]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
        rows = connection.execute("SELECT text, state, part_of FROM inbound ORDER BY id")
        return [(r[0], r[1], r[2]) for r in rows]


async def test_mos_answered_to_the_carrier_survive_kill_9_and_a_held_part_waits_again(
    tmp_path: Path,
) -> None:
    carrier = SmscSimulator(SimulatorConfig(enabled=True, host="127.0.0.1", port=0))
    await carrier.start()
    http_port = free_port()
    config = write_config(
        tmp_path,
        http_port,
        [link_toml("carrier", carrier.port)],
        '[[routes]]\nname = "all"\npriority = 1\ntargets = ["carrier"]\n',
        extra="[inbound]\nreassembly_timeout = 1.0\n",
    )
    database = tmp_path / "data" / "tandem.db"
    process = daemon(tmp_path, config).start()
    try:
        await wait_http(f"http://127.0.0.1:{http_port}/openapi.json")
        await wait_for(lambda: bool(carrier.bound_system_ids), what="the bind")
        carrier.inject_mo(
            "447400123456",
            "5555",
            short_message=bytes((5, 0, 3, 9, 2, 1)) + b"first half ",
            esm_class=0x40,
        )
        for n in range(COUNT):
            carrier.inject_mo("447400123456", "5555", f"mo {n}")
        await wait_for(lambda: carrier.stats.mo_sent == COUNT + 1, timeout=30, what="answers")
        process.kill()  # at once: no shutdown code runs
        rows = stored(database)
        assert sorted(text for text, _, _ in rows if text.startswith("mo ")) == sorted(
            f"mo {n}" for n in range(COUNT)
        )
        assert ("first half ", "held") in [(text, state) for text, state, _ in rows]

        process = daemon(tmp_path, config, name="again").start()
        await wait_http(f"http://127.0.0.1:{http_port}/openapi.json")

        # The held part waits for its other half again, then goes on alone.
        def held() -> list[tuple[str, str, str | None]]:
            return [row for row in stored(database) if row[0] == "first half "]

        await wait_for(lambda: held()[0][1] != "held", "the held part to go on", interval=0.1)
        assert held() == [("first half ", "unmatched", None)]
        assert len(stored(database)) == COUNT + 1
    finally:
        process.stop()
        await carrier.stop()
