"""An HTTP key and an SMPP account with the same name are two tenants: neither reads, cancels
or receives the receipts of the other's messages. A running daemon (HTTP API, customer SMPP
server, built-in simulator) on 127.0.0.1, an smpp.aio ESME and a real callback receiver."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from aiohttp import web

from gateway.messages import Channel, Tenant
from gateway.smpp_server import CustomerSmppServer
from gateway.store.schema import _MIGRATIONS
from gateway.store.sqlite import SqliteMessageStore
from smpp.aio import SmppClient
from smpp.constants import CommandStatus
from smpp.pdu import CancelSm, DeliverSm, Pdu, QuerySm, SubmitSm
from smpp.session import SessionConfig
from tests.test_http_harness import Daemon, free_port, running_daemon
from tests.test_smpp_server_support import PASSWORD, account
from tests.waiting import wait_for

UK = "+447911123456"
CLIENT = SessionConfig(window=10, enquire_link_interval=None, response_timeout=5.0)


@asynccontextmanager
async def daemon_with_acme_twice(
    tmp_path: Path, **key_settings: object
) -> AsyncIterator[tuple[Daemon, SmppClient, list[DeliverSm]]]:
    """The daemon with HTTP key `acme` (its `key`) and SMPP account `acme` bound as a
    transceiver; the receipts that account gets are collected."""
    receipts: list[DeliverSm] = []

    def collect(pdu: Pdu) -> Pdu:
        assert isinstance(pdu, DeliverSm)
        receipts.append(pdu)
        return pdu.response()

    async with running_daemon(
        tmp_path,
        smpp_server={"host": "127.0.0.1", "port": 0},
        accounts=[account("acme")],
        key_settings=dict(key_settings),
    ) as daemon:
        server = daemon.gateway.smpp_server
        assert isinstance(server, CustomerSmppServer) and server.port is not None
        client = SmppClient(CLIENT, request_handler=collect)
        await client.connect("127.0.0.1", server.port)
        await client.bind("transceiver", "acme", PASSWORD)
        try:
            yield daemon, client, receipts
        finally:
            await client.unbind()


def smpp_submit(**fields: object) -> SubmitSm:
    values: dict[str, object] = {
        "source_addr_ton": 5,
        "source_addr": "Shop",
        "dest_addr_ton": 1,
        "dest_addr_npi": 1,
        "destination_addr": UK[1:],
        "short_message": b"hello",
        "registered_delivery": 1,
    }
    values.update(fields)
    return SubmitSm(**values)  # type: ignore[arg-type]


def in_an_hour() -> str:
    return time.strftime("%y%m%d%H%M%S", time.gmtime(time.time() + 3600)) + "000+"


async def test_an_http_key_cannot_read_or_cancel_the_smpp_account_of_the_same_name(
    tmp_path: Path,
) -> None:
    async with daemon_with_acme_twice(tmp_path) as (daemon, client, _):
        accepted = await client.submit(smpp_submit(schedule_delivery_time=in_an_hour()))
        smpp_id = accepted.message_id  # type: ignore[attr-defined]

        read, problem, _ = await daemon.call("GET", f"/v1/messages/{smpp_id}")
        cancel, _, _ = await daemon.call("DELETE", f"/v1/messages/{smpp_id}")

        assert (read, problem["code"], problem["field"]) == (404, "not_found", "id")
        assert cancel == 404
        record = await daemon.gateway.message_store.get(smpp_id)
        assert record is not None and record.message.status.value in ("accepted", "queued")
        # The account itself still sees and owns it.
        state = await client.submit(QuerySm(message_id=smpp_id))
        assert state.command_status == CommandStatus.ESME_ROK


async def test_an_smpp_account_cannot_query_or_cancel_the_http_key_of_the_same_name(
    tmp_path: Path,
) -> None:
    async with daemon_with_acme_twice(tmp_path) as (daemon, client, _):
        send_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
        status, sent, _ = await daemon.call(
            "POST", "/v1/messages", {"to": UK, "text": "hi", "send_at": send_at}
        )
        assert status == 202, sent
        query = await client.submit(QuerySm(message_id=sent["id"]))
        cancel = await client.submit(CancelSm(message_id=sent["id"]))
        assert query.command_status == CommandStatus.ESME_RQUERYFAIL
        assert cancel.command_status == CommandStatus.ESME_RCANCELFAIL
        assert await daemon.message_status(sent["id"]) in ("accepted", "queued")


async def test_cancel_sm_does_not_reach_an_http_message_whose_reference_is_the_smpp_id(
    tmp_path: Path,
) -> None:
    """cancel_sm cancels a submit_multi's other destinations, found by reference: an HTTP
    customer chooses its references freely, so the lookup must stay within the tenant."""
    async with daemon_with_acme_twice(tmp_path) as (daemon, client, _):
        accepted = await client.submit(smpp_submit(schedule_delivery_time=in_an_hour()))
        smpp_id = accepted.message_id  # type: ignore[attr-defined]
        send_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
        _, sent, _ = await daemon.call(
            "POST",
            "/v1/messages",
            {"to": UK, "text": "hi", "send_at": send_at, "reference": smpp_id},
        )

        cancelled = await client.submit(CancelSm(message_id=smpp_id))

        assert cancelled.command_status == CommandStatus.ESME_ROK
        record = await daemon.gateway.message_store.get(smpp_id)
        assert record is not None and record.message.status.value == "deleted"
        assert await daemon.message_status(sent["id"]) in ("accepted", "queued")


async def test_the_smpp_accounts_receipts_never_go_to_the_http_keys_callback_url(
    tmp_path: Path,
) -> None:
    posted: list[bytes] = []

    async def receive(request: web.Request) -> web.Response:
        posted.append(await request.read())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/dlr", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    url = f"http://127.0.0.1:{port}/dlr"
    try:
        async with daemon_with_acme_twice(tmp_path, callback_url=url) as (daemon, client, receipts):
            accepted = await client.submit(smpp_submit())
            smpp_id = accepted.message_id  # type: ignore[attr-defined]

            async def receipted() -> bool:
                return any(smpp_id.encode() in bytes(r.short_message) for r in receipts)

            await wait_for(receipted, "the SMPP receipt")
            callbacks = daemon.api.callbacks
            assert callbacks is not None

            async def idle() -> bool:
                return callbacks.idle

            await wait_for(idle, "the callback sender to be idle")
            assert posted == []
            assert callbacks.stats.queued == 0

            # The key's own message does get its callback there: the receiver works.
            _, sent, _ = await daemon.call("POST", "/v1/messages", {"to": UK, "text": "hi"})

            async def called_back() -> bool:
                return len(posted) == 1

            await wait_for(called_back, "the callback")
            assert sent["id"].encode() in posted[0]
    finally:
        await runner.cleanup()


async def test_migration_5_keeps_existing_messages_and_looks_references_up_per_tenant(
    tmp_path: Path,
) -> None:
    path = tmp_path / "tandem.db"
    old = sqlite3.connect(path)
    for script in _MIGRATIONS[:4]:
        old.executescript(script)
    old.execute("PRAGMA user_version = 4")
    columns = (
        "id, account, channel, source_addr, source_ton, source_npi, destination, kind, "
        "priority, data_coding, body, esm_class, registered_delivery, targets, reference, "
        "created_at"
    )
    for message_id, channel, reference in (
        ("00000000000000000001", "smpp", None),
        ("00000000000000000002", "smpp", "00000000000000000001"),
        ("00000000000000000003", "http", "00000000000000000001"),
    ):
        old.execute(
            f"INSERT INTO message_content ({columns}) VALUES "
            "(?, 'acme', ?, 'Shop', 5, 0, '447911123456', 'transactional', 5, 0, x'68', 0, 1, "
            "'[]', ?, 1.0)",
            (message_id, channel, reference),
        )
        old.execute(
            "INSERT INTO message_state (id, status, attempts, updated_at) "
            "VALUES (?, 'queued', 0, 1.0)",
            (message_id,),
        )
    old.commit()
    old.close()

    store = SqliteMessageStore(path)
    await store.open()
    try:
        smpp = await store.find_references(Tenant(Channel.SMPP, "acme"), "00000000000000000001")
        http = await store.find_references(Tenant(Channel.HTTP, "acme"), "00000000000000000001")
        record = await store.get("00000000000000000003")
    finally:
        await store.close()
    assert smpp == ["00000000000000000002"]
    assert http == ["00000000000000000003"]
    assert record is not None and record.message.tenant == Tenant(Channel.HTTP, "acme")
