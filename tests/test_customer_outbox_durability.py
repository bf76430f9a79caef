"""What Tandem owes its customers survives `kill -9`: receipts for SMPP messages that reached a
final status while the customer had no receiving bind, and MOs the carrier handed over (and
Tandem acknowledged) meanwhile, reach the customer when it binds to the restarted daemon; a
final HTTP receipt callback that had not got through is posted by the restarted daemon. Once
taken they are not offered again.

Processes: the daemon (`tandem run -c FILE`) in its own process; the SMSC simulator in this
one (it injects the MOs), and this test as the customer (an smpp.aio ESME, or an HTTP client
and an aiohttp callback endpoint), all on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
from pathlib import Path

import aiohttp
from aiohttp import web

from gateway.accounts import hash_password
from gateway.config import SimulatorConfig
from gateway.simulator import SmscSimulator
from smpp.aio import SmppClient
from smpp.constants import Tag
from smpp.pdu import DeliverSm, Pdu, SubmitSm
from smpp.session import SessionConfig
from tests.daemon_processes import (
    DAEMON_START,
    create_key,
    daemon,
    free_port,
    link_toml,
    wait_http,
)
from tests.waiting import wait_for

PASSWORD = "outbox1"
CLIENT = SessionConfig(window=20, enquire_link_interval=None, response_timeout=5.0)


def write_config(workdir: Path, smpp_port: int, sim_port: int, http_port: int = 0) -> Path:
    http = (
        f'host = "127.0.0.1"\nport = {http_port}\ncallback_retry_initial = 600.0'
        if http_port
        else "enabled = false"
    )
    path = workdir / "tandem.toml"
    path.write_text(
        f"""
data_dir = "{workdir / "data"}"
[smpp_server]
host = "127.0.0.1"
port = {smpp_port}
[http]
{http}
[egress]
allow = ["127.0.0.1"]   # the callback receiver of these tests
ports = ["1024-65535"]
[simulator]
enabled = false
{link_toml("sim", sim_port)}
[[routes]]
name = "all"
priority = 100
targets = ["sim"]
[[accounts]]
system_id = "acme"
password_hash = "{hash_password(PASSWORD)}"
mo_numbers = ["12345"]
""",
        encoding="utf-8",
    )
    return path


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def kept(database: Path) -> tuple[int, int, int]:
    """(messages delivered, receipts owed, MOs kept) as the daemon's store holds them."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
        delivered = connection.execute(
            "SELECT COUNT(*) FROM message_state WHERE status = 'delivered'"
        ).fetchone()[0]
        owed = connection.execute(
            "SELECT COUNT(*) FROM message_state WHERE receipt_owed IS NOT NULL"
        ).fetchone()[0]
        mos = connection.execute("SELECT COUNT(*) FROM mo_outbox").fetchone()[0]
    return int(delivered), int(owed), int(mos)


async def test_receipts_and_mos_owed_to_a_customer_survive_kill_9(tmp_path: Path) -> None:
    simulator = SmscSimulator(
        SimulatorConfig(enabled=True, host="127.0.0.1", port=0, dlr_delay=0.0)
    )
    await simulator.start()
    assert simulator.port is not None
    smpp_port = free_port()
    config = write_config(tmp_path, smpp_port, simulator.port)
    database = tmp_path / "data" / "tandem.db"
    first = daemon(tmp_path, config, "tandem-1").start()
    second = daemon(tmp_path, config, "tandem-2")
    try:
        await wait_for(lambda: listening(smpp_port), "the SMPP server", timeout=DAEMON_START)
        await wait_for(lambda: bool(simulator.bound_system_ids), "the link to bind")

        # A transmitter only: the receipts have no bind to go to.
        sender = SmppClient(CLIENT)
        await sender.connect("127.0.0.1", smpp_port)
        await sender.bind("transmitter", "acme", PASSWORD)
        ids = []
        for n in range(10):
            response = await sender.submit(
                SubmitSm(
                    source_addr="Acme",
                    dest_addr_ton=1,
                    dest_addr_npi=1,
                    destination_addr="447911123456",
                    short_message=b"outbox %d" % n,
                    registered_delivery=1,
                )
            )
            assert response.command_status == 0
            ids.append(response.message_id)  # type: ignore[attr-defined]
        for n in range(3):
            simulator.inject_mo("447700900001", "12345", f"reply {n}", system_id="tandem")
        await wait_for(lambda: kept(database) == (10, 10, 3), "receipts owed and MOs kept")
        await wait_for(lambda: simulator.stats.mo_sent == 3, "the MOs acknowledged")

        first.kill()
        second.start()
        await wait_for(
            lambda: listening(smpp_port), "the restarted SMPP server", timeout=DAEMON_START
        )

        got: list[DeliverSm] = []

        def take(pdu: Pdu) -> Pdu:
            assert isinstance(pdu, DeliverSm)
            got.append(pdu)
            return pdu.response()

        receiver = SmppClient(CLIENT, request_handler=take)
        await receiver.connect("127.0.0.1", smpp_port)
        await receiver.bind("receiver", "acme", PASSWORD)
        await wait_for(lambda: len(got) >= 13, "the receipts and MOs")
        await wait_for(lambda: kept(database)[1:] == (0, 0), "the store to settle them")
        await receiver.unbind()

        receipts = [pdu for pdu in got if pdu.esm_class & 0x04]
        mos = [pdu for pdu in got if not pdu.esm_class & 0x04]
        assert sorted(str(r.tlvs[Tag.RECEIPTED_MESSAGE_ID]) for r in receipts) == sorted(ids)
        assert all(b"stat:DELIVRD" in r.short_message for r in receipts)
        assert sorted(m.short_message for m in mos) == [b"reply 0", b"reply 1", b"reply 2"]
        assert len(got) == 13  # nothing twice
    finally:
        first.kill()
        second.stop()
        await simulator.stop()
    assert "Traceback" not in second.output()


async def test_a_final_callback_that_did_not_get_through_is_posted_after_kill_9(
    tmp_path: Path,
) -> None:
    answers = [503]  # then 200
    received: list[tuple[int, dict[str, object]]] = []

    async def endpoint(request: web.Request) -> web.Response:
        status = answers.pop(0) if answers else 200
        received.append((status, json.loads(await request.read())))
        return web.Response(status=status)

    app = web.Application()
    app.router.add_post("/dlr", endpoint)
    runner = web.AppRunner(app)
    await runner.setup()
    callback_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", callback_port).start()
    simulator = SmscSimulator(
        SimulatorConfig(enabled=True, host="127.0.0.1", port=0, dlr_delay=0.0)
    )
    await simulator.start()
    assert simulator.port is not None
    http_port = free_port()
    config = write_config(tmp_path, free_port(), simulator.port, http_port)
    key = create_key(config)
    database = tmp_path / "data" / "tandem.db"
    first = daemon(tmp_path, config, "tandem-1").start()
    second = daemon(tmp_path, config, "tandem-2")
    url = f"http://127.0.0.1:{http_port}"
    try:
        await wait_http(url + "/openapi.json")
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                url + "/v1/messages",
                json={
                    "to": "+447911123456",
                    "text": "callback after a crash",
                    "callback_url": f"http://127.0.0.1:{callback_port}/dlr",
                },
                headers={"Authorization": f"Bearer {key}"},
            ) as response,
        ):
            assert response.status == 202
            message_id = (await response.json())["id"]
        # Refused once; its retry is ten minutes away when the daemon dies.
        await wait_for(lambda: len(received) == 1, "the first attempt")
        assert kept(database)[:2] == (1, 1)
        first.kill()

        second.start()
        await wait_http(url + "/openapi.json")  # a start on a loaded machine has its own limit
        await wait_for(lambda: len(received) == 2, "the callback after the restart")
        await wait_for(lambda: kept(database)[1] == 0, "the callback settled")
        status, body = received[1]
        assert (status, body["message_id"], body["status"]) == (200, message_id, "delivered")
        await asyncio.sleep(0.3)
        assert len(received) == 2  # once
    finally:
        first.kill()
        second.stop()
        await simulator.stop()
        await runner.cleanup()
    assert "Traceback" not in second.output()
