"""Interop: smpplib (an independent, synchronous ESME) against our server-role session.

smpplib runs in a thread over a real socket on 127.0.0.1: it binds as transceiver, submits a
3-part UCS-2 message with a concatenation UDH, and answers our deliver_sm with a status of its
own choosing.
"""

from __future__ import annotations

import asyncio
import threading

import smpplib.client
import smpplib.consts
import smpplib.gsm

from smpp.aio import SmppConnection, SmppHandler, serve_smpp
from smpp.constants import CommandStatus
from smpp.pdu import DeliverSm, Pdu, SubmitSm
from smpp.reassembly import parse_udh
from smpp.session import SessionConfig
from tests.waiting import WAIT

TEXT = "Привет! Сообщение из трёх частей, закодированное в UCS-2. " * 3  # 3 parts of 67 chars
CHOSEN_STATUS = smpplib.consts.SMPP_ESME_RX_T_APPN  # what smpplib answers our deliver_sm with


class RecordingSmsc(SmppHandler):
    def __init__(self, parts_expected: int) -> None:
        self.parts_expected = parts_expected
        self.binds: list[Pdu] = []
        self.submitted: list[SubmitSm] = []
        self.connection: SmppConnection | None = None
        self.deliver_answer: asyncio.Future[Pdu] = asyncio.get_running_loop().create_future()

    def connection_made(self, connection: SmppConnection) -> None:
        self.connection = connection

    def bind_requested(self, request: Pdu) -> int:
        self.binds.append(request)
        return CommandStatus.ESME_ROK

    def request_received(self, request: Pdu) -> Pdu:
        assert isinstance(request, SubmitSm)
        self.submitted.append(request)
        if len(self.submitted) == self.parts_expected:
            asyncio.get_running_loop().create_task(self.push_deliver_sm())
        return request.response(message_id=f"msg-{len(self.submitted)}")

    async def push_deliver_sm(self) -> None:
        assert self.connection is not None
        mo = DeliverSm(source_addr="4915112345678", destination_addr="12345", short_message=b"hi")
        self.deliver_answer.set_result(await self.connection.request(mo))


def run_smpplib_esme(port: int, results: dict[str, object]) -> None:
    client = smpplib.client.Client("127.0.0.1", port, timeout=5, allow_unknown_opt_params=True)
    submit_resps: list[tuple[int, str, int]] = []
    delivered: list[bytes] = []

    def on_sent(pdu: object) -> None:
        message_id = pdu.message_id  # type: ignore[attr-defined]
        text = message_id.decode() if isinstance(message_id, bytes) else message_id
        submit_resps.append((pdu.sequence, text, pdu.status))  # type: ignore[attr-defined]

    def on_received(pdu: object) -> int:
        delivered.append(pdu.short_message)  # type: ignore[attr-defined]
        return CHOSEN_STATUS

    client.set_message_sent_handler(on_sent)
    client.set_message_received_handler(on_received)
    client.connect()
    try:
        client.bind_transceiver(system_id="smpplib", password="pw", system_type="test")
        parts, data_coding, esm_class = smpplib.gsm.make_parts(TEXT)
        results["parts"] = list(parts)
        for part in parts:
            client.send_message(
                source_addr_ton=smpplib.consts.SMPP_TON_ALNUM,
                source_addr="Tandem",
                dest_addr_ton=smpplib.consts.SMPP_TON_INTL,
                dest_addr_npi=smpplib.consts.SMPP_NPI_ISDN,
                destination_addr="4915112345678",
                short_message=part,
                data_coding=data_coding,
                esm_class=esm_class,
                registered_delivery=True,
            )
        while len(submit_resps) < len(parts) or not delivered:
            client.read_once()
        unbind_resp = client.unbind()
        results["unbind_status"] = unbind_resp.status
    finally:
        client.disconnect()
    results["submit_resps"] = submit_resps
    results["delivered"] = delivered


async def test_smpplib_binds_submits_three_part_ucs2_and_answers_deliver_sm() -> None:
    handlers: list[RecordingSmsc] = []

    def factory() -> RecordingSmsc:
        handlers.append(RecordingSmsc(parts_expected=3))
        return handlers[-1]

    config = SessionConfig(enquire_link_interval=None, response_timeout=5.0)
    server = await serve_smpp(factory, "127.0.0.1", 0, config=config, system_id="tandem")
    port = server.sockets[0].getsockname()[1]
    results: dict[str, object] = {}
    thread = threading.Thread(target=run_smpplib_esme, args=(port, results), daemon=True)
    try:
        thread.start()
        await asyncio.wait_for(asyncio.to_thread(thread.join, 20), 25)
        assert not thread.is_alive()
        (smsc,) = handlers
        (bind,) = smsc.binds
        assert (bind.system_id, bind.password, bind.system_type) == ("smpplib", "pw", "test")  # type: ignore[attr-defined]

        # Three submit_sm, UCS-2 (data_coding 8) with UDHI, reassembling to the sent text.
        assert len(results["parts"]) == 3  # type: ignore[arg-type]
        assert len(smsc.submitted) == 3
        assert all(s.data_coding == 8 and s.esm_class & 0x40 for s in smsc.submitted)
        assert [s.short_message for s in smsc.submitted] == results["parts"]
        headers = [parse_udh(s.short_message) for s in smsc.submitted]
        concat = [h.concat for h in headers]
        assert all(c is not None and c.total == 3 for c in concat)
        assert [c.seqnum for c in concat if c is not None] == [1, 2, 3]
        assert len({c.reference for c in concat if c is not None}) == 1
        assert b"".join(h.payload for h in headers).decode("utf-16-be") == TEXT
        assert [(s.destination_addr, s.source_addr) for s in smsc.submitted] == [
            ("4915112345678", "Tandem")
        ] * 3

        # smpplib saw our submit_sm_resp: its sequence numbers and our message ids.
        assert results["submit_resps"] == [
            (s.sequence_number, f"msg-{i}", 0) for i, s in enumerate(smsc.submitted, 1)
        ]

        # Our deliver_sm reached smpplib, and its deliver_sm_resp carries the status it chose.
        assert results["delivered"] == [b"hi"]
        answer = await asyncio.wait_for(smsc.deliver_answer, WAIT)
        assert answer.command_status == CHOSEN_STATUS
        assert results["unbind_status"] == 0
    finally:
        server.close()
        await server.wait_closed()
