"""A STOP stops what was queued before it: messages accepted for a number while its link was
throttled (a low tps), then a STOP from that number over the carrier link, are not submitted;
they finish REJECTED with an error that says the recipient opted out, and the customer gets the
usual receipt for that final status. The confirmation of the STOP, queued after it, still goes.

Over real sockets: the simulator as the SMSC (it sends the STOP as an MO), an smpp.aio ESME as
the SMPP customer."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from gateway.messages import Channel, Message, MessageKind
from gateway.optouts.policy import OptOutPolicy
from gateway.optouts.registry import OptOutRegistry
from gateway.store import SqliteMessageStore
from smpp.aio import SmppClient
from smpp.constants import Tag
from smpp.pdu import DeliverSm, Pdu, SubmitSm
from smpp.session import SessionConfig
from tests.test_smpp_server_support import (
    PASSWORD,
    account,
    start_tandem,
    stop_tandem,
)
from tests.waiting import wait_for

SUBSCRIBER = "447400123456"
CONFIRMATION = "You will get no more messages."
QUEUED = 6


async def test_messages_queued_before_a_stop_are_rejected_not_submitted(tmp_path: Path) -> None:
    # One segment every two seconds: the first goes at once, the rest wait in the send queue.
    tandem = await start_tandem(
        tmp_path,
        [account("acme")],
        link={"tps": 0.5},
        extra={"inbound": {"replies": [{"kind": "opt_out", "text": CONFIRMATION}]}},
    )
    receipts: list[DeliverSm] = []

    def take(pdu: Pdu) -> Pdu:
        assert isinstance(pdu, DeliverSm)
        receipts.append(pdu)
        return pdu.response()

    client = SmppClient(
        SessionConfig(window=20, enquire_link_interval=None, response_timeout=10.0),
        request_handler=take,
    )
    try:
        await client.connect("127.0.0.1", tandem.port)
        await client.bind("transceiver", "acme", PASSWORD)
        ids = []
        for n in range(QUEUED):
            response = await client.submit(
                SubmitSm(
                    source_addr="12345",
                    dest_addr_ton=1,
                    dest_addr_npi=1,
                    destination_addr=SUBSCRIBER,
                    short_message=b"offer %d" % n,
                    registered_delivery=1,
                )
            )
            assert response.command_status == 0
            ids.append(response.message_id)  # type: ignore[attr-defined]

        tandem.simulator.inject_mo(SUBSCRIBER, "12345", "STOP", system_id="tandem")
        await wait_for(
            lambda: tandem.gateway.optouts.blocks(SUBSCRIBER, "12345"), what="the opt-out"
        )
        await wait_for(lambda: len(receipts) == QUEUED, what="a receipt for every message")
        await wait_for(
            lambda: (
                CONFIRMATION
                in [s.text for s in tandem.simulator.received if s.destination_addr == SUBSCRIBER]
            ),
            what="the confirmation, queued after the opt-out",
            timeout=30.0,
        )
        await asyncio.sleep(2.5)  # one more tps slot: nothing else of the six may go out
        await client.unbind()
        sent = [s.text for s in tandem.simulator.received if s.destination_addr == SUBSCRIBER]
    finally:
        client.close()
        await stop_tandem(tandem)

    with sqlite3.connect(tmp_path / "tandem.db") as conn:
        rows = dict(
            conn.execute(
                "SELECT id, status || '|' || coalesce(last_error, '') FROM message_state"
            ).fetchall()
        )
    finals = {message_id: rows[message_id] for message_id in ids}
    rejected = [m for m, row in finals.items() if row.startswith("rejected|")]
    delivered = [m for m, row in finals.items() if row.startswith("delivered|")]
    offers = [text for text in sent if text.startswith("offer")]
    assert len(rejected) >= QUEUED - 2, finals  # at most the first two left before the STOP
    assert len(rejected) + len(delivered) == QUEUED, finals
    assert len(offers) == len(delivered)  # what was rejected never reached the SMSC
    assert all("opted out" in finals[m] for m in rejected)
    by_id = {str(r.tlvs[Tag.RECEIPTED_MESSAGE_ID]): r.short_message for r in receipts}
    assert all(b"stat:REJECTD" in by_id[m] for m in rejected), by_id


async def test_the_queue_check_spares_internal_replies_and_exempt_otps_and_counts_the_rest(
    tmp_path: Path,
) -> None:
    store = SqliteMessageStore(tmp_path / "tandem.db", writer="thread")
    await store.open()
    try:
        registry = OptOutRegistry(store)
        policy = OptOutPolicy(registry, otp_exempt=["Secure"])
        await registry.opt_out(SUBSCRIBER, all_senders=True)

        def queued(
            sender: str,
            *,
            to: str = SUBSCRIBER,
            channel: Channel = Channel.SMPP,
            kind: MessageKind = MessageKind.TRANSACTIONAL,
        ) -> Message:
            return Message("acme", channel, sender, to, b"x", kind=kind)

        assert policy.stops_queued(queued("Shop"))
        assert not policy.stops_queued(queued("Shop", to="447400123457"))
        assert not policy.stops_queued(queued("12345", channel=Channel.INTERNAL))
        assert not policy.stops_queued(queued("Secure", kind=MessageKind.OTP))
        assert policy.stops_queued(queued("Secure"))  # exempt for OTPs only
        assert registry.stats.refused_queued == 2
        policy.enabled = False
        assert not policy.stops_queued(queued("Shop"))
    finally:
        await store.close()
