"""SIGTERM under load, with real processes: the daemon stops accepting, lets its links wait for
the answers to what they sent (`[shutdown] drain_seconds`), flushes the store and ends 0. Every
message the HTTP API acknowledged is in the store, none is left half-submitted (a segment
`pending`), and after a restart each reaches the SMSC exactly once and ends delivered: a
graceful stop, unlike `kill -9` (tests/test_crash_recovery.py), resends nothing.

Processes: `tandem sim smsc --record FILE`, `tandem run` (one SMPP link, two binds of window
10), and this test as the HTTP client with 64 concurrent requests, each with a text of its own.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import sqlite3
import time
from pathlib import Path

from tests.daemon_processes import (
    accepted_texts,
    create_key,
    daemon,
    free_port,
    link_toml,
    simulator,
    wait_http,
    write_config,
)
from tests.test_crash_recovery import (
    Acknowledged,
    all_delivered,
    send_until_acknowledged,
)
from tests.waiting import wait_for

WINDOW = 10
BINDS = 2
MESSAGES = 1_500
STOP_WITHIN = 30.0


def store_rows(database: Path) -> tuple[dict[str, str], int]:
    """Each message's status, and how many segments are still `pending` (sent, unanswered)."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
        statuses = dict(connection.execute("SELECT id, status FROM messages").fetchall())
        (pending,) = connection.execute(
            "SELECT COUNT(*) FROM segments WHERE status = 'pending'"
        ).fetchone()
    return statuses, pending


async def test_sigterm_under_load_loses_nothing_acknowledged_and_resends_nothing(
    tmp_path: Path,
) -> None:
    smsc_port, http_port = free_port(), free_port()
    smsc = simulator(tmp_path, "smsc", smsc_port, dlr_delay=0.5).start()
    config = write_config(
        tmp_path,
        http_port,
        [link_toml("sim", smsc_port, window=WINDOW, sessions=BINDS)],
        '[[routes]]\nname = "everything"\npriority = 100\ntargets = ["sim"]\n',
        extra="[shutdown]\ndrain_seconds = 5.0\n",
    )
    key = create_key(config)
    url = f"http://127.0.0.1:{http_port}"
    record = tmp_path / "smsc.record"
    first = daemon(tmp_path, config, "tandem-1").start()
    second = None
    try:
        await wait_http(url + "/openapi.json")
        acknowledged = Acknowledged()
        client = asyncio.create_task(
            send_until_acknowledged(url + "/v1/messages", key, MESSAGES, acknowledged)
        )
        await wait_for(lambda: len(acknowledged.by_text) >= MESSAGES // 2, "half", interval=0.2)
        assert first.popen is not None
        first.popen.send_signal(signal.SIGTERM)
        stop_began = time.monotonic()
        exit_code = await asyncio.to_thread(first.popen.wait, STOP_WITHIN)
        stop_took = time.monotonic() - stop_began
        acknowledged_at_stop = dict(acknowledged.by_text)
        assert exit_code == 0, first.output()[-3000:]
        output = first.output()
        assert "Traceback" not in output, output[-3000:]

        # The stopped daemon's store: everything acknowledged, nothing half-submitted.
        database = tmp_path / "data" / "tandem.db"
        statuses, pending = store_rows(database)
        missing = [i for i in acknowledged_at_stop.values() if i not in statuses]
        assert missing == []
        assert pending == 0
        waiting = sum(
            1 for i in acknowledged_at_stop.values() if statuses[i] in ("accepted", "queued")
        )
        await asyncio.sleep(0.3)  # the simulator writes its record every 10 ms
        at_smsc_before_restart = accepted_texts(record)
        assert all(count == 1 for count in at_smsc_before_restart.values())

        second = daemon(tmp_path, config, "tandem-2").start()
        await asyncio.wait_for(client, 120)
        acked = acknowledged.by_text
        await wait_for(
            lambda: set(acked) <= set(accepted_texts(record)), "every submit", interval=0.2
        )
        await wait_for(
            lambda: all_delivered(database, acked.values()), "every receipt", interval=0.2
        )
        reached = accepted_texts(record)
        duplicates = sum(reached[text] - 1 for text in acked)
        print(
            f"\nSIGTERM under load: {len(acknowledged_at_stop)} acknowledged before the stop, "
            f"{waiting} of them still queued; stop took {stop_took:.1f} s; "
            f"{len(acked)} acknowledged in all, {duplicates} duplicates"
        )
        assert waiting > 0  # the stop came mid-flow
        assert duplicates == 0
    finally:
        for process in (first, second, smsc):
            if process is not None:
                process.stop()


async def test_a_stop_answers_every_customer_submit_it_read_before_unbinding(
    tmp_path: Path,
) -> None:
    """SMPP customers: the server stops reading, answers what it read (each stored first),
    then unbinds. So every message in the store was acknowledged to its customer: none would
    come again as a duplicate when the customer resends what got no answer."""
    from smpp.aio import SmppClient
    from smpp.constants import CommandStatus
    from tests.test_smpp_server import CLIENT, submit
    from tests.test_smpp_server_support import PASSWORD, account, start_tandem

    tandem = await start_tandem(tmp_path, [account("acme", window=100)])
    client = SmppClient(CLIENT)
    await client.connect("127.0.0.1", tandem.port)
    await client.bind("transceiver", "acme", PASSWORD)
    acknowledged: set[str] = set()
    errors: list[str] = []
    stopping = False

    async def sender(worker: int) -> None:
        for n in itertools.count():
            if stopping and n % 5 == 0:
                await asyncio.sleep(0)
            try:
                answer = await client.submit(submit(f"drain {worker} {n}"), timeout=10)
            except Exception as exc:  # unbound, closed: what was not answered is not acknowledged
                errors.append(repr(exc))
                return
            if answer.command_status == CommandStatus.ESME_ROK:
                acknowledged.add(answer.message_id)
            else:
                errors.append(f"status {answer.command_status:#x}")

    senders = [asyncio.create_task(sender(worker)) for worker in range(50)]
    try:
        await wait_for(lambda: len(acknowledged) >= 500, timeout=60, what="500 acknowledged")
        stopping = True
        await tandem.gateway.stop()  # what SIGTERM does
        await asyncio.wait_for(asyncio.gather(*senders), 30)
    finally:
        for task in senders:
            task.cancel()
        client.close()
        await tandem.simulator.stop()
    with sqlite3.connect(f"file:{tmp_path / 'tandem.db'}?mode=ro", uri=True) as connection:
        stored = {
            row[0]
            for row in connection.execute("SELECT id FROM message_content WHERE account = 'acme'")
        }
    assert acknowledged <= stored  # nothing acknowledged is lost
    assert stored - acknowledged == set(), (len(stored - acknowledged), sorted(set(errors)))
