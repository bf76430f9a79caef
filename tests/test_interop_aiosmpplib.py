"""Interop: aiosmpplib's ESME (an independent asyncio client) against our server-role session.

It binds as transceiver over a real socket on 127.0.0.1, submits a single-part message, and
receives our deliver_sm. aiosmpplib always answers deliver_sm itself with ESME_ROK (it offers no
way to choose another status), so that is the status our side must see.
"""

from __future__ import annotations

import asyncio
import logging

from aiosmpplib import ESME, NPI, TON, AbstractHook, PhoneNumber, SmppMessage
from aiosmpplib import DeliverSm as TheirDeliverSm
from aiosmpplib import SubmitSm as TheirSubmitSm
from aiosmpplib import SubmitSmResp as TheirSubmitSmResp

from smpp.aio import SmppConnection, SmppHandler, serve_smpp
from smpp.constants import CommandStatus
from smpp.pdu import DeliverSm, Pdu, SubmitSm
from smpp.session import SessionConfig
from tests.waiting import WAIT


class RecordingHook(AbstractHook):
    def __init__(self) -> None:
        self.received_messages: list[SmppMessage] = []
        self.changed = asyncio.Event()

    async def sending(self, smpp_message: SmppMessage, pdu: bytes, client_id: str) -> None:
        pass

    async def received(self, smpp_message: SmppMessage | None, pdu: bytes, client_id: str) -> None:
        if smpp_message is not None:
            self.received_messages.append(smpp_message)
            self.changed.set()

    async def send_error(self, smpp_message: SmppMessage, error: Exception, client_id: str) -> None:
        pass

    async def wait_for(self, kind: type[SmppMessage]) -> SmppMessage:
        while True:
            for message in self.received_messages:
                if type(message) is kind:
                    return message
            self.changed.clear()
            await self.changed.wait()


class Smsc(SmppHandler):
    def __init__(self) -> None:
        self.binds: list[Pdu] = []
        self.submitted: list[SubmitSm] = []
        self.connection: SmppConnection | None = None
        self.lost: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()

    def connection_made(self, connection: SmppConnection) -> None:
        self.connection = connection

    def bind_requested(self, request: Pdu) -> int:
        self.binds.append(request)
        return CommandStatus.ESME_ROK

    def request_received(self, request: Pdu) -> Pdu:
        assert isinstance(request, SubmitSm)
        self.submitted.append(request)
        return request.response(message_id="tandem-1")

    def connection_lost(self, reason: str | None) -> None:
        if not self.lost.done():
            self.lost.set_result(reason)


async def test_aiosmpplib_binds_submits_and_acknowledges_our_deliver_sm() -> None:
    handlers: list[Smsc] = []

    def factory() -> Smsc:
        handlers.append(Smsc())
        return handlers[-1]

    config = SessionConfig(enquire_link_interval=None, response_timeout=5.0)
    server = await serve_smpp(factory, "127.0.0.1", 0, config=config, system_id="tandem")
    port = server.sockets[0].getsockname()[1]
    hook = RecordingHook()
    esme = ESME(
        smsc_host="127.0.0.1",
        smsc_port=port,
        system_id="aiosmpp",
        password="pw",
        hook=hook,
        enquire_link_interval=30.0,
        socket_timeout=5.0,
        log_level=logging.WARNING,
    )
    running = asyncio.create_task(esme.start())
    try:
        await esme.broker.enqueue(
            TheirSubmitSm(
                short_message="Hello from aiosmpplib",
                source=PhoneNumber("Tandem", TON.ALPHANUMERIC, NPI.UNKNOWN),
                destination=PhoneNumber("4915112345678", TON.INTERNATIONAL, NPI.ISDN),
                log_id="log-1",
            )
        )
        submit_resp = await asyncio.wait_for(hook.wait_for(TheirSubmitSmResp), WAIT)
        assert isinstance(submit_resp, TheirSubmitSmResp)
        assert submit_resp.message_id == "tandem-1"

        (smsc,) = handlers
        (bind,) = smsc.binds
        assert bind.command_id == 0x00000009  # bind_transceiver
        assert (bind.system_id, bind.password) == ("aiosmpp", "pw")  # type: ignore[attr-defined]
        (submitted,) = smsc.submitted
        assert submitted.short_message == b"Hello from aiosmpplib"
        assert (submitted.source_addr, submitted.source_addr_ton) == ("Tandem", 5)
        assert (submitted.destination_addr, submitted.dest_addr_ton) == ("4915112345678", 1)

        assert smsc.connection is not None
        mo = DeliverSm(source_addr="4915112345678", destination_addr="12345", short_message=b"ok")
        answer = await asyncio.wait_for(smsc.connection.request(mo), WAIT)
        assert answer.command_id == 0x80000005  # deliver_sm_resp
        assert answer.sequence_number == mo.sequence_number
        assert answer.command_status == CommandStatus.ESME_ROK
        delivered = await asyncio.wait_for(hook.wait_for(TheirDeliverSm), WAIT)
        assert isinstance(delivered, TheirDeliverSm)
        assert delivered.short_message == "ok"

        await asyncio.wait_for(esme.stop(), WAIT)
        assert await asyncio.wait_for(smsc.lost, WAIT) is None
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        server.close()
        await server.wait_closed()
