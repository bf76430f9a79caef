"""An MO for an SMPP account that has no receiving bind is not lost and not dropped: the carrier
is answered once it is kept in the account's durable outbox (`mo_outbox`, the same rows and
outbox as the receipts owed to customers), and it is delivered when the account binds, then
settled. (After a `kill -9` meanwhile too: tests/test_customer_outbox_durability.py.)

Over real sockets: the simulator as the SMSC sends the MOs, an smpp.aio ESME binds later."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from smpp.aio import SmppClient
from smpp.pdu import DeliverSm, Pdu
from smpp.session import SessionConfig
from tests.test_smpp_server_support import (
    PASSWORD,
    account,
    start_tandem,
    stop_tandem,
)
from tests.waiting import wait_for


def owed(database: Path) -> int:
    with sqlite3.connect(database) as conn:
        return int(conn.execute("SELECT count(*) FROM mo_outbox").fetchone()[0])


async def test_mos_for_an_account_that_is_not_bound_are_delivered_when_it_binds(
    tmp_path: Path,
) -> None:
    tandem = await start_tandem(tmp_path, [account("acme", mo_numbers=["12345"])])
    database = tmp_path / "tandem.db"
    got: list[DeliverSm] = []

    def take(pdu: Pdu) -> Pdu:
        assert isinstance(pdu, DeliverSm)
        got.append(pdu)
        return pdu.response()

    client = SmppClient(
        SessionConfig(window=20, enquire_link_interval=None, response_timeout=10.0),
        request_handler=take,
    )
    try:
        for n in range(3):
            tandem.simulator.inject_mo("447700900001", "12345", f"reply {n}", system_id="tandem")
        await wait_for(lambda: tandem.simulator.stats.mo_sent == 3, what="the MOs answered")
        await wait_for(lambda: owed(database) == 3, what="the MOs kept for the account")
        await asyncio.sleep(1.0)  # housekeeping ticks with no bind: nothing goes, nothing drops
        assert owed(database) == 3
        assert tandem.server.stats.delivery_dropped_full == 0

        await client.connect("127.0.0.1", tandem.port)
        await client.bind("receiver", "acme", PASSWORD)
        await wait_for(lambda: len(got) == 3, what="the MOs owed, once bound", timeout=30.0)
        await wait_for(lambda: owed(database) == 0, what="the outbox to settle them")
        await client.unbind()
    finally:
        client.close()
        await stop_tandem(tandem)
    assert sorted(pdu.short_message for pdu in got) == [b"reply 0", b"reply 1", b"reply 2"]
