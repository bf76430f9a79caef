"""The confirmation of a STOP survives `kill -9` between answering the carrier and storing the
reply: the reply is owed in the store from the MO's own transaction, and the restarted daemon
sends it, once.

The window is held open on purpose: the route the replies take has room for one waiting message
(`queue_limit = 1`) and its one link is down, so a HELP's reply fills it and the STOP's
confirmation, after the carrier was answered, is refused for now (backlog full). Then the
daemon is killed; it restarts with the route pointing at the carrier link that is up and no
limit (the HELP reply stays queued for the link it was given to).

Processes: the daemon (`tandem run -c FILE`) in its own process; the SMSC simulator in this one
(it injects the MOs and receives the replies).
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from gateway.config import SimulatorConfig
from gateway.simulator import SmscSimulator
from tests.daemon_processes import DAEMON_START, daemon, free_port, link_toml
from tests.waiting import wait_for

SUBSCRIBER = "447400123456"
CONFIRMATION = "You will get no more messages."
HELP = "Reply STOP to stop."


def write_config(
    workdir: Path, sim_port: int, reply_target: str, dead_port: int, limit: int = 1
) -> Path:
    path = workdir / "tandem.toml"
    path.write_text(
        f"""
data_dir = "{workdir / "data"}"
[http]
enabled = false
[smpp_server]
enabled = false
[simulator]
enabled = false
{link_toml("sim", sim_port)}
{link_toml("dead", dead_port)}
[[routes]]
name = "replies"
priority = 100
targets = ["{reply_target}"]
queue_limit = {limit}
[[inbound.replies]]
kind = "opt_out"
text = "{CONFIRMATION}"
[[inbound.replies]]
kind = "help"
text = "{HELP}"
""",
        encoding="utf-8",
    )
    return path


def count(database: Path, sql: str) -> int:
    if not database.exists():
        return -1
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
        try:
            return int(connection.execute(sql).fetchone()[0])
        except sqlite3.OperationalError:  # not migrated yet
            return -1


async def test_a_stop_confirmation_owed_at_kill_9_is_sent_by_the_restarted_daemon(
    tmp_path: Path,
) -> None:
    simulator = SmscSimulator(
        SimulatorConfig(enabled=True, host="127.0.0.1", port=0, dlr_delay=0.0)
    )
    await simulator.start()
    assert simulator.port is not None
    dead_port = free_port()  # nothing listens there: the link stays down
    database = tmp_path / "data" / "tandem.db"
    first = daemon(tmp_path, write_config(tmp_path, simulator.port, "dead", dead_port))
    first.start()
    second = None
    try:
        await wait_for(
            lambda: bool(simulator.bound_system_ids),
            "the carrier link to bind",
            timeout=DAEMON_START,
        )
        simulator.inject_mo(SUBSCRIBER, "12345", "HELP", system_id="tandem")
        await wait_for(
            lambda: count(database, "SELECT count(*) FROM message_content") == 1,
            "the HELP reply, waiting for the link that is down",
        )
        simulator.inject_mo(SUBSCRIBER, "12345", "STOP", system_id="tandem")
        await wait_for(lambda: simulator.stats.mo_sent == 2, "both MOs answered")
        await wait_for(lambda: count(database, "SELECT count(*) FROM optouts") == 1, "the opt-out")
        owed = "SELECT count(*) FROM inbound_reply_owed"
        await wait_for(lambda: count(database, owed) == 1, "the confirmation owed")
        assert count(database, "SELECT count(*) FROM message_content") == 1  # not stored
        first.kill()

        config = write_config(tmp_path, simulator.port, "sim", dead_port, limit=1000)
        second = daemon(tmp_path, config, "tandem-2").start()

        def replies() -> list[str]:
            return [r.text for r in simulator.received if r.destination_addr == SUBSCRIBER]

        await wait_for(
            lambda: CONFIRMATION in replies(),
            "the confirmation after the restart",
            timeout=DAEMON_START,
        )
        await wait_for(lambda: count(database, owed) == 0, "the reply settled")
        await asyncio.sleep(3.0)  # a few more ticks of the restarted daemon: nothing twice
        assert replies() == [CONFIRMATION]
    finally:
        first.kill()
        if second is not None:
            second.stop()
        await simulator.stop()
    assert second is not None and "Traceback" not in second.output()
