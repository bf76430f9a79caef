"""The sandbox (the daemon's built-in SMSC simulator) keeps the promises the README makes: a
one-time code it was sent can be read back (`tandem sim inbox`), and a kill -9 of the daemon
loses no receipt it owed. Real `tandem run` processes, a real HTTP client, SIGKILL."""

from __future__ import annotations

import asyncio
import re
import subprocess
from pathlib import Path

import aiohttp
import pytest

from gateway import sim_journal
from gateway.config import load_config
from gateway.sim_journal import SimulatorJournal
from tests.daemon_processes import (
    ROOT,
    TANDEM,
    Process,
    create_key,
    daemon,
    free_port,
    wait_http,
)
from tests.waiting import wait_for

UK = "+447400123456"


def sandbox_config(workdir: Path, http_port: int, *, dlr_delay: float = 0.0) -> Path:
    simulator_port = free_port()
    path = workdir / "tandem.toml"
    path.write_text(
        f"""
data_dir = "{workdir / "data"}"
[smpp_server]
enabled = false
[http]
host = "127.0.0.1"
port = {http_port}
[simulator]
enabled = true
port = {simulator_port}
dlr_delay = {dlr_delay}
[[links]]
type = "smpp"
name = "simulator"
host = "127.0.0.1"
port = {simulator_port}
system_id = "tandem"
submit_id_format = "hex"
dlr_id_format = "hex"
reconnect_initial = 0.1
reconnect_max = 0.5
[[routes]]
name = "all"
priority = 1
targets = ["simulator"]
""",
        encoding="utf-8",
    )
    return path


def sim_inbox(config: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TANDEM, "sim", "inbox", "-c", str(config), *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def wait_statuses(
    session: aiohttp.ClientSession, url: str, ids: list[str], wanted: str
) -> dict[str, str]:
    """Poll until every message has status `wanted`; the statuses seen."""
    statuses: dict[str, str] = {}

    async def reached() -> bool:
        for message_id in ids:
            async with session.get(f"{url}/v1/messages/{message_id}") as response:
                statuses[message_id] = (await response.json())["status"]
        return all(status == wanted for status in statuses.values())

    await wait_for(reached, lambda: f"every message {wanted}: {statuses}", interval=0.1)
    return statuses


async def test_the_sandbox_otp_flow_completes_with_the_code_from_the_inbox(tmp_path: Path) -> None:
    http_port = free_port()
    config = sandbox_config(tmp_path, http_port)
    key = create_key(config)
    running = daemon(tmp_path, config).start()
    url = f"http://127.0.0.1:{http_port}"
    headers = {"Authorization": f"Bearer {key}"}
    try:
        await wait_http(url + "/openapi.json")
        async with aiohttp.ClientSession(headers=headers) as session:
            async with session.post(f"{url}/v1/otp", json={"to": UK}) as response:
                assert response.status == 201, await response.text()
                otp_id = (await response.json())["id"]
            inbox: list[subprocess.CompletedProcess[str]] = []

            async def listed_one() -> bool:
                # A process each time: not too often, and in a thread, so that the loop meanwhile
                # sees the daemon close the session's idle keep-alive connection (15 s) instead
                # of the next request going out on it.
                inbox[:] = [await asyncio.to_thread(sim_inbox, config, "--to", UK)]
                return bool(inbox[0].stdout)

            await wait_for(
                listed_one, lambda: f"the code in the inbox: {inbox[0].stderr}", interval=0.2
            )
            listed = inbox[0]
            assert listed.returncode == 0
            assert f"inbox: {tmp_path / 'data' / 'simulator.jsonl'}" in listed.stderr
            code = re.search(r"code is (\d{6})\b", listed.stdout)
            assert code is not None, listed.stdout
            check = {"code": code.group(1)}
            async with session.post(f"{url}/v1/otp/{otp_id}/check", json=check) as response:
                assert response.status == 200, await response.text()
                assert (await response.json())["status"] == "approved"
    finally:
        running.stop()


def test_sim_inbox_refuses_when_the_simulator_is_off(tmp_path: Path) -> None:
    config = tmp_path / "off.toml"
    config.write_text(f'data_dir = "{tmp_path}"\n[simulator]\nenabled = false\n', encoding="utf-8")
    listed = sim_inbox(config)
    assert listed.returncode == 2
    assert "the simulator is off" in listed.stderr


async def test_receipts_owed_before_a_kill_9_arrive_after_the_restart(tmp_path: Path) -> None:
    http_port = free_port()
    # Receipts an hour away: when the daemon is killed, every one of them is still owed.
    config = sandbox_config(tmp_path, http_port, dlr_delay=3600.0)
    key = create_key(config)
    url = f"http://127.0.0.1:{http_port}"
    first: Process | None = daemon(tmp_path, config, "tandem-1").start()
    second: Process | None = None
    texts = [f"owed receipt {n}" for n in range(5)]
    try:
        await wait_http(url + "/openapi.json")
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as session:
            ids = []
            for text in texts:
                body = {"to": UK, "from": "Tandem", "text": text}
                async with session.post(f"{url}/v1/messages", json=body) as response:
                    assert response.status == 202, await response.text()
                    ids.append((await response.json())["id"])
            statuses = await wait_statuses(session, url, ids, "submitted")
            assert set(statuses.values()) == {"submitted"}, statuses
            assert first is not None
            first.kill()  # SIGKILL: the simulator inside dies with its receipts in hand
            first = None
            second = daemon(tmp_path, config, "tandem-2").start()
            await wait_http(url + "/openapi.json")
            statuses = await wait_statuses(session, url, ids, "delivered")
            assert set(statuses.values()) == {"delivered"}, statuses
        listed = sim_inbox(config, "--limit", "0")
        assert all(text in listed.stdout for text in texts), listed.stdout
    finally:
        for process in (first, second):
            if process is not None:
                process.stop()


def test_the_sandbox_gives_up_on_a_missing_receipt_within_minutes() -> None:
    sandbox = load_config(None)
    simulator_link = sandbox.link("simulator")
    assert sandbox.link_dlr_timeout(simulator_link) <= 600
    # A copy pointed at a carrier keeps the carriers' 48 h for its own links.
    assert sandbox.dlr.dlr_timeout == 172_800


def journal_submits(journal: SimulatorJournal, numbers: range) -> None:
    from gateway.simulator_records import DELIVERED, ReceivedSubmit, build_receipt

    for number in numbers:
        received = ReceivedSubmit(
            at=1000.0 + number,
            system_id="tandem",
            operation="submit_sm",
            source_addr="Tandem",
            destination_addr="447400123456",
            data_coding=0,
            esm_class=0,
            registered_delivery=1,
            payload=f"text {number}".encode(),
            tlvs={},
            message_id=f"A{number}",
        )
        journal.accepted(
            at=received.at,
            system_id="tandem",
            message_id=received.message_id,
            source="Tandem",
            destination="447400123456",
            text=received.text,
            receipt_id=f"A{number}",
            receipt=build_receipt(received, f"A{number}", DELIVERED),
        )


def test_the_journal_keeps_what_is_owed_and_skips_a_line_cut_short(tmp_path: Path) -> None:
    path = tmp_path / "simulator.jsonl"
    journal = SimulatorJournal(path)
    assert journal.open() == []
    journal_submits(journal, range(3))
    journal.settled("A1")
    with path.open("a", encoding="utf-8") as cut:
        cut.write('{"t": "settled", "id": "A0"')  # a kill -9 in the middle of a write
    assert path.stat().st_mode & 0o777 == 0o600

    again = SimulatorJournal(path)
    owed = again.open()
    assert [receipt.receipt_id for receipt in owed] == ["A0", "A2"]
    assert owed[0].pdu.short_message.startswith(b"id:A0 ")
    assert [entry.text for entry in sim_journal.read_inbox(path)] == ["text 0", "text 1", "text 2"]
    again.close()


def test_a_compacted_journal_owes_only_the_receipts_not_settled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sim_journal, "COMPACT_AFTER", 3)  # rewritten every few lines
    path = tmp_path / "simulator.jsonl"
    journal = SimulatorJournal(path)
    journal.open()
    for number in range(6):
        journal_submits(journal, range(number, number + 1))
        if number != 4:
            journal.settled(f"A{number}")
    journal.close()
    again = SimulatorJournal(path)
    assert [receipt.receipt_id for receipt in again.open()] == ["A4"]
    assert [entry.message_id for entry in sim_journal.read_inbox(path)] == [
        f"A{n}" for n in range(6)
    ]
    again.close()
