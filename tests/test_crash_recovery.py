"""Crash recovery, with real processes: whatever the HTTP API acknowledged (202) survives a
`kill -9` of the daemon in mid-flow and reaches the SMSC at least once after a restart on the
same data directory; the only duplicates are the submits the carrier had answered but the
daemon had not yet recorded, so there are at most window x binds of them.

In the same-write and before-resp receipt modes (each receipt in the same TCP write as its
submit_sm_resp) the kill also lands among receipts being recorded: every message the SMSC
accepted must still end delivered, so no receipt the SMSC was told we had (deliver_sm_resp)
was only in memory when the process died (the SMSC offers the unanswered ones again).

Processes: the SMSC simulator (`tandem sim smsc --record FILE`, receipts as the mode says), the
daemon (`tandem run -c FILE`: SQLite store in a temporary directory, one SMPP link with two
binds of window 10), and this test as the HTTP client (64 concurrent requests). Every request
carries a text of its own, so the simulator's record identifies each acknowledged message.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from gateway.config import SimulatorConfig, SmppLinkConfig
from gateway.inbound.model import InboundPart
from gateway.links import LinkState, SendFailure, SubmittedSegment, build_link
from gateway.messages import Channel, Message
from gateway.queue import AsyncSendQueue
from gateway.simulator import SmscSimulator
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

WINDOW = 10
BINDS = 2
CONCURRENCY = 64


@dataclass
class Acknowledged:
    """What the client saw: every message id answered 202, with the text it was sent with."""

    by_text: dict[str, str] = field(default_factory=dict)
    refused: int = 0  # requests without a 202 (daemon killed under them): not acknowledged
    done: asyncio.Event = field(default_factory=asyncio.Event)


async def send_until_acknowledged(
    url: str, key: str, wanted: int, acknowledged: Acknowledged
) -> None:
    """Keep `CONCURRENCY` requests going until `wanted` messages were acknowledged; a request
    that fails (the daemon is down) is retried as a new message with a new text."""
    texts = (f"crash test message {n:07d}" for n in itertools.count())
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker() -> None:
            while len(acknowledged.by_text) < wanted:
                text = next(texts)
                body = json.dumps({"to": "+447911123456", "from": "Crash", "text": text})
                try:
                    async with session.post(url, data=body, headers=headers) as response:
                        document = await response.json(content_type=None)
                        status = response.status
                except (aiohttp.ClientError, TimeoutError):
                    acknowledged.refused += 1
                    await asyncio.sleep(0.05)
                    continue
                if status == 202:
                    acknowledged.by_text[text] = document["id"]
                else:
                    acknowledged.refused += 1
            acknowledged.done.set()

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


def all_delivered(database: Path, message_ids: Iterable[str]) -> bool:
    """Every message's status in the daemon's store is `delivered` (read-only, WAL lets us in)."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
        statuses = dict(connection.execute("SELECT id, status FROM messages").fetchall())
    return all(statuses.get(message_id) == "delivered" for message_id in message_ids)


async def crash_and_recover(tmp_path: Path, messages: int, receipt_mode: str = "timer") -> None:
    smsc_port, http_port = free_port(), free_port()
    smsc = simulator(
        tmp_path, "smsc", smsc_port, dlr_delay=0.5, extra=["--receipt-mode", receipt_mode]
    ).start()
    link = link_toml("sim", smsc_port, window=WINDOW, sessions=BINDS)
    route = '[[routes]]\nname = "everything"\npriority = 100\ntargets = ["sim"]\n'
    config = write_config(tmp_path, http_port, [link], route)
    key = create_key(config)
    url = f"http://127.0.0.1:{http_port}"
    record = tmp_path / "smsc.record"
    first = daemon(tmp_path, config, "tandem-1").start()
    second: Process | None = None
    try:
        await wait_http(url + "/openapi.json")
        acknowledged = Acknowledged()
        client = asyncio.create_task(
            send_until_acknowledged(url + "/v1/messages", key, messages, acknowledged)
        )
        await wait_for(lambda: len(acknowledged.by_text) >= messages // 2, "half", interval=0.2)
        first.kill()
        acknowledged_at_kill = dict(acknowledged.by_text)
        await asyncio.sleep(0.3)  # the simulator writes its record every 10 ms
        reached_before_restart = accepted_texts(record)
        waiting_at_kill = sum(1 for t in acknowledged_at_kill if t not in reached_before_restart)

        second = daemon(tmp_path, config, "tandem-2").start()
        await asyncio.wait_for(client, 120)
        acked = acknowledged.by_text
        await wait_for(
            lambda: set(acked) <= set(accepted_texts(record)), "every submit", interval=0.2
        )
        database = tmp_path / "data" / "tandem.db"
        await wait_for(
            lambda: all_delivered(database, acked.values()),
            "every receipt (a message left submitted lost a receipt the SMSC had answered)",
            interval=0.2,
        )
        reached = accepted_texts(record)
        duplicates = sum(reached[text] - 1 for text in acked)
        print(
            f"\ncrash recovery: {len(acked)} acknowledged ({len(acknowledged_at_kill)} before "
            f"kill -9, {waiting_at_kill} of them not yet at the SMSC); {acknowledged.refused} "
            f"requests without 202; every acknowledged message reached the SMSC; "
            f"{duplicates} duplicates (bound: window {WINDOW} x {BINDS} binds)"
        )
        # The kill came mid-flow: acknowledged messages were still waiting to be sent.
        assert waiting_at_kill > 0
        assert len(acked) >= messages  # requests in flight at the end may add a few
        assert duplicates <= WINDOW * BINDS
    finally:
        for process in (first, second, smsc):
            if process is not None:
                process.stop()


async def test_acknowledged_messages_survive_kill_9_and_reach_the_smsc_after_restart(
    tmp_path: Path,
) -> None:
    await crash_and_recover(tmp_path, 2_000)


@pytest.mark.parametrize("receipt_mode", ["same-write", "before-resp"])
async def test_kill_9_among_receipts_in_the_same_write_loses_no_answered_receipt(
    tmp_path: Path, receipt_mode: str
) -> None:
    await crash_and_recover(tmp_path, 2_000, receipt_mode)


@pytest.mark.slow
async def test_ten_thousand_acknowledged_messages_survive_kill_9_mid_flow(tmp_path: Path) -> None:
    await crash_and_recover(tmp_path, 10_000)


class SlowRecordingSink:
    """A daemon whose store has not committed yet: `on_submitted` returns an awaitable that
    finishes only when the test opens the gate."""

    def __init__(self) -> None:
        self.accepted_by_carrier = 0
        self.gate = asyncio.Event()

    def on_submitted(
        self, link: str, message: Message, segments: Sequence[SubmittedSegment]
    ) -> asyncio.Future[bool]:
        self.accepted_by_carrier += 1
        return asyncio.ensure_future(self.gate.wait())

    def on_temporary_failure(self, link: str, message: Message, failure: SendFailure) -> None:
        raise AssertionError(f"unexpected temporary failure: {failure}")

    def on_permanent_failure(self, link: str, message: Message, failure: SendFailure) -> None:
        raise AssertionError(f"unexpected permanent failure: {failure}")

    def on_receipt(self, *args: object) -> None:
        return None

    def on_mo(self, link: str, part: InboundPart) -> None:
        return None

    def on_link_state(self, link: str, state: LinkState) -> None:
        return None


async def test_a_bind_stops_sending_while_window_accepted_messages_wait_to_be_recorded() -> None:
    """The window frees when the carrier answers, but the daemon records the answer a commit
    later; the link counts unrecorded messages against the window too, so a crash can resend
    at most window x binds messages the carrier already had."""
    window, binds = 4, 2
    async with SmscSimulator(SimulatorConfig(enabled=True, port=0, dlr_delay=60)) as sim:
        queue = AsyncSendQueue(on_expired=lambda expired: None)
        sink = SlowRecordingSink()
        link = build_link(
            SmppLinkConfig.model_validate(
                {
                    "type": "smpp",
                    "name": "carrier",
                    "host": "127.0.0.1",
                    "port": sim.port,
                    "system_id": "tandem",
                    "window": window,
                    "sessions": binds,
                }
            ),
            queue,
            sink,
        )
        for n in range(50):
            queue.put(
                Message(
                    account="a",
                    channel=Channel.HTTP,
                    source_addr="Shop",
                    destination="447700900123",
                    body=b"m%d" % n,
                    data_coding=0,
                ),
                "carrier",
            )
        await link.start()
        try:
            await wait_for(
                lambda: sink.accepted_by_carrier >= window * binds, "a full window on each bind"
            )
            await asyncio.sleep(0.2)  # room for any further submit to go out
            assert sink.accepted_by_carrier == window * binds
            assert sim.stats.accepted == window * binds
            sink.gate.set()
            await wait_for(lambda: sim.stats.accepted >= 50, "every message at the SMSC")
            assert sim.stats.accepted == 50
        finally:
            sink.gate.set()
            await link.stop()
