"""The opt-out check on every MT path of a running daemon, over real sockets: HTTP single and
multi-recipient sends, OTP sends and re-sends, SMPP submit_sm (smpplib as the customer),
data_sm and submit_multi; nothing refused is stored or queued; the opt-out confirmation passes
the opt-out it confirms and nothing else; an opt-out acknowledged while submits pour in on
another channel blocks every submit that comes after it."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.intake import IntakeRefusal, MessageRequest
from gateway.messages import Channel
from gateway.store.base import OptOutScope, OptOutVia
from smpp.aio import SmppClient
from smpp.constants import CommandStatus, Tag
from smpp.pdu import DataSm, SmeAddress, SubmitMulti, SubmitSm
from smpp.session import SessionConfig
from tests.test_http_harness import Daemon, running_daemon
from tests.test_smpp_server_smpplib import Esme, in_thread
from tests.test_smpp_server_support import (
    DESTINATION,
    PASSWORD,
    Tandem,
    account,
    start_tandem,
    stop_tandem,
)
from tests.waiting import wait_for

OPTED = "+447911123456"
OTHER = "+447911123458"
PROBLEM = "urn:tandem:problem:recipient_opted_out"
OTP_ROUTES = [{"name": "everything", "priority": 100, "targets": ["sim"]}]


def stored_messages(daemon: Daemon) -> int:
    path = daemon.gateway.config.store_path
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT count(*) FROM message_content").fetchone()[0])


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    async with running_daemon(
        tmp_path,
        routes=OTP_ROUTES,
        extra={
            "sender_groups": [{"name": "brand", "senders": ["Shop", "12345"]}],
            "optouts": {"otp_exempt": ["Secure"]},
        },
    ) as running:
        yield running


async def test_http_send_to_an_opted_out_number_is_refused_403_and_nothing_is_stored(
    daemon: Daemon,
) -> None:
    await daemon.gateway.optouts.opt_out(OPTED[1:], sender="12345", via=OptOutVia.KEYWORD)
    before = stored_messages(daemon)
    status, problem, _ = await daemon.call(
        "POST", "/v1/messages", {"to": OPTED, "from": "Shop", "text": "Sale!"}
    )
    assert status == 403, problem
    assert problem["type"] == PROBLEM and problem["field"] == "to"
    assert stored_messages(daemon) == before
    # Another sender (outside the group) still reaches the number; the same sender others.
    status, _, _ = await daemon.call(
        "POST", "/v1/messages", {"to": OPTED, "from": "Other", "text": "Hi"}
    )
    assert status == 202
    status, _, _ = await daemon.call(
        "POST", "/v1/messages", {"to": OTHER, "from": "Shop", "text": "Sale!"}
    )
    assert status == 202
    assert daemon.gateway.optout_stats.refused_http == 1


async def test_multi_recipient_send_names_the_opted_out_recipient_and_stores_none(
    daemon: Daemon,
) -> None:
    await daemon.gateway.optouts.opt_out(OPTED[1:], all_senders=True)
    before = stored_messages(daemon)
    status, problem, _ = await daemon.call(
        "POST", "/v1/messages", {"to": [OTHER, OPTED], "from": "Shop", "text": "Sale!"}
    )
    assert status == 403, problem
    assert problem["type"] == PROBLEM and problem["field"] == "to[1]"
    assert stored_messages(daemon) == before


async def test_otp_send_and_resend_are_refused_unless_the_sender_is_otp_exempt(
    daemon: Daemon,
) -> None:
    status, first, _ = await daemon.call("POST", "/v1/otp", {"to": OPTED, "from": "Shop"})
    assert status == 201, first
    await daemon.gateway.optouts.opt_out(OPTED[1:], all_senders=True)
    # A re-send (the verification is still pending) goes through intake again: refused.
    status, problem, _ = await daemon.call("POST", "/v1/otp", {"to": OPTED, "from": "Shop"})
    assert status == 403 and problem["type"] == PROBLEM, problem
    status, problem, _ = await daemon.call("POST", "/v1/otp", {"to": OPTED})
    assert status == 403 and problem["type"] == PROBLEM, problem
    status, exempt, _ = await daemon.call("POST", "/v1/otp", {"to": OPTED, "from": "Secure"})
    assert status == 201, exempt
    stats = daemon.gateway.optout_stats
    assert (stats.refused_otp, stats.otp_exempt_passed) == (2, 1)


async def test_the_confirmation_passes_only_the_opt_out_it_confirms(daemon: Daemon) -> None:
    gateway = daemon.gateway
    outcome = await gateway.optouts.opt_out(OPTED[1:], sender="12345", via=OptOutVia.KEYWORD)

    def reply(text: str, confirms: str | None, sender: str = "12345") -> MessageRequest:
        return MessageRequest(
            account="optouts",
            channel=Channel.HTTP,
            to=OPTED,
            sender=sender,
            text=text,
            confirms_optout=confirms,
        )

    accepted = await gateway.intake.accept(
        [reply("You will get no more messages.", outcome.confirmation)]
    )
    assert accepted[0].message.destination == OPTED[1:]
    with pytest.raises(IntakeRefusal) as refused:
        await gateway.intake.accept([reply("Come back!", None)])
    assert refused.value.code == "recipient_opted_out"
    # A STOPALL already in force is not the opt-out this reply confirms.
    await gateway.optouts.opt_out(OPTED[1:], all_senders=True)
    with pytest.raises(IntakeRefusal):
        await gateway.intake.accept([reply("Confirmed.", outcome.confirmation)])


# --- SMPP ----------------------------------------------------------------------------------------


@pytest.fixture
async def tandem(tmp_path: Path) -> AsyncIterator[Tandem]:
    running = await start_tandem(
        tmp_path,
        [account("alice"), account("vendor", optout_status=0x401)],
    )
    yield running
    await stop_tandem(running)


async def test_smpplib_submit_sm_to_an_opted_out_number_gets_esme_rx_p_appn(
    tandem: Tandem,
) -> None:
    await tandem.gateway.optouts.opt_out(DESTINATION, sender="Shop", via=OptOutVia.KEYWORD)

    def scenario(system_id: str) -> list[int]:
        esme = Esme(tandem.port)
        try:
            assert esme.bind("transceiver", system_id, PASSWORD) == 0
            refused = esme.submit(b"Sale!")
            other = esme.submit(b"Hello", source_addr="Bank")
            esme.read_until(lambda: refused in esme.responses and other in esme.responses)
            return [esme.responses[refused].status, esme.responses[other].status]
        finally:
            esme.close()

    assert await in_thread(scenario, "alice") == [CommandStatus.ESME_RX_P_APPN, 0]
    assert await in_thread(scenario, "vendor") == [0x401, 0]
    await wait_for(lambda: len(tandem.simulator.received) == 2, what="the two others")
    assert {r.text for r in tandem.simulator.received} == {"Hello"}
    assert tandem.gateway.optout_stats.refused_smpp == 2


async def test_data_sm_and_each_submit_multi_destination_are_checked(tandem: Tandem) -> None:
    await tandem.gateway.optouts.opt_out(DESTINATION, scope=OptOutScope.ALL)
    client = SmppClient(SessionConfig(window=10, enquire_link_interval=None))
    await client.connect("127.0.0.1", tandem.port)
    await client.bind("transmitter", "alice", PASSWORD)
    data = await client.submit(
        DataSm(
            source_addr="Shop",
            dest_addr_ton=1,
            destination_addr=DESTINATION,
            tlvs={Tag.MESSAGE_PAYLOAD: b"via data_sm"},
        )
    )
    multi = await client.submit(
        SubmitMulti(
            source_addr="Shop",
            dest_addresses=[SmeAddress(1, 1, DESTINATION), SmeAddress(1, 1, "447911123457")],
            short_message=b"to many",
        )
    )
    await client.unbind()
    assert data.command_status == CommandStatus.ESME_RX_P_APPN
    assert multi.command_status == 0
    unsuccess = multi.unsuccess_sme  # type: ignore[attr-defined]
    assert [(u.destination_addr, u.error_status_code) for u in unsuccess] == [
        (DESTINATION, CommandStatus.ESME_RX_P_APPN)
    ]
    await wait_for(lambda: len(tandem.simulator.received) == 1, what="the other destination")
    assert tandem.simulator.received[0].destination_addr == "447911123457"


async def test_an_opt_out_acknowledged_mid_stream_blocks_every_later_submit(
    tandem: Tandem,
) -> None:
    """STOP recorded (as the inbound handler does for an MO from the carrier link) while a
    customer pours submits in over SMPP: every submit sent after the opt-out was acknowledged
    is refused, and the accepted ones were all stored before the opt-out was."""
    gateway = tandem.gateway
    client = SmppClient(SessionConfig(window=50, enquire_link_interval=None))
    await client.connect("127.0.0.1", tandem.port)
    await client.bind("transmitter", "alice", PASSWORD)
    acknowledged = asyncio.Event()
    sent_after: list[asyncio.Future[Any]] = []
    all_sent: list[asyncio.Future[Any]] = []

    async def pour() -> None:
        for index in range(400):
            future = asyncio.ensure_future(
                client.submit(
                    SubmitSm(
                        source_addr_ton=5,
                        source_addr="Shop",
                        dest_addr_ton=1,
                        dest_addr_npi=1,
                        destination_addr=DESTINATION,
                        short_message=f"n{index}".encode(),
                    )
                )
            )
            all_sent.append(future)
            if acknowledged.is_set():
                sent_after.append(future)
            if index % 10 == 0:
                await asyncio.sleep(0)

    async def stop_midway() -> None:
        while len(all_sent) < 100:
            await asyncio.sleep(0)
        await gateway.optouts.opt_out(
            DESTINATION, sender="Shop", via=OptOutVia.KEYWORD, keyword="STOP", source="sim"
        )
        acknowledged.set()

    await asyncio.gather(pour(), stop_midway())
    answers = await asyncio.gather(*all_sent)
    after = await asyncio.gather(*sent_after)
    await client.unbind()
    assert len(after) > 100
    assert all(a.command_status == CommandStatus.ESME_RX_P_APPN for a in after)
    accepted = [a for a in answers if a.command_status == 0]
    assert accepted, "some submits went in before the opt-out"
    # Store order: every accepted message committed before the opt-out's audit row.
    path = gateway.config.store_path
    with sqlite3.connect(path) as conn:
        (optout_at,) = conn.execute("SELECT at FROM optout_audit").fetchone()
        latest = conn.execute("SELECT max(created_at) FROM message_content").fetchone()[0]
    assert latest <= optout_at
