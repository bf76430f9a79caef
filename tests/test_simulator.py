"""The SMSC simulator over real sockets: binds, ids, receipts, throttling, MOs and its record."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import smpplib.client
import smpplib.consts

from dlr.ids import MessageIdFormat, canonical_message_id
from dlr.receipt import DeliveryReceipt
from dlr.status import SegmentStatus
from gateway.config import SimulatorConfig
from gateway.simulator import SmscSimulator
from gateway.simulator_records import UNDELIVERABLE, ReceiptOutcome, ReceivedSubmit, record_lines
from smpp.aio import BindError, SmppClient
from smpp.codec import PduDecoder, encode
from smpp.constants import CommandStatus, Tag
from smpp.pdu import BindTransceiver, DataSm, DeliverSm, Pdu, SubmitSm, SubmitSmResp
from smpp.segmentation import Concatenation, split_text
from smpp.session import SessionConfig
from tests.waiting import WAIT, wait_for


def settings(**fields: object) -> SimulatorConfig:
    base: dict[str, object] = {"enabled": True, "port": 0, "dlr_delay": 0.0}
    base.update(fields)
    return SimulatorConfig.model_validate(base)


class Esme:
    """A client on our own asyncio adapter that collects what the simulator delivers."""

    def __init__(self, answer_status: int = 0) -> None:
        self.delivered: asyncio.Queue[DeliverSm] = asyncio.Queue()
        self.answer_status = answer_status
        self.client = SmppClient(SessionConfig(window=100), request_handler=self._on_request)

    def _on_request(self, pdu: Pdu) -> Pdu:
        assert isinstance(pdu, DeliverSm)
        self.delivered.put_nowait(pdu)
        return pdu.response(command_status=self.answer_status)

    async def connect(
        self, sim: SmscSimulator, kind: str = "transceiver", system_id: str = "acme"
    ) -> Esme:
        await self.client.connect("127.0.0.1", sim.port)
        await self.client.bind(kind, system_id, "pw")
        return self

    async def submit(self, **fields: object) -> SubmitSmResp:
        pdu = SubmitSm(
            source_addr="Shop",
            destination_addr="447700900123",
            short_message=b"hello there",
            registered_delivery=1,
        )
        for name, value in fields.items():
            setattr(pdu, name, value)
        response = await self.client.submit(pdu)
        assert isinstance(response, SubmitSmResp)
        return response

    async def next_delivery(self, timeout: float = WAIT) -> DeliverSm:
        return await asyncio.wait_for(self.delivered.get(), timeout)


@pytest.fixture
async def sim() -> AsyncIterator[SmscSimulator]:
    simulator = SmscSimulator(settings(), seed=7)
    async with simulator:
        yield simulator


async def test_submit_gets_a_hex_id_and_a_receipt_whose_ids_correlate(sim: SmscSimulator) -> None:
    esme = await Esme().connect(sim)
    response = await esme.submit()
    assert response.command_status == CommandStatus.ESME_ROK
    int(response.message_id, 16)  # hex as configured

    deliver = await esme.next_delivery()
    receipt = DeliveryReceipt.parse(deliver.short_message, deliver.tlvs, deliver.esm_class)
    assert receipt.status is SegmentStatus.DELIVERED
    assert receipt.id_from_tlv and deliver.tlvs[Tag.MESSAGE_STATE] == 2
    assert f"id:{response.message_id} " in deliver.short_message.decode()
    assert "text:hello there" in deliver.short_message.decode()
    assert (deliver.source_addr, deliver.destination_addr) == ("447700900123", "Shop")
    assert sim.received[0].message_id == response.message_id
    assert sim.stats.receipts_sent == 1


async def test_decimal_receipt_ids_match_hex_submit_ids_after_canonicalisation() -> None:
    async with SmscSimulator(settings(message_id_format="hex", dlr_id_format="dec")) as sim:
        esme = await Esme().connect(sim)
        response = await esme.submit()
        deliver = await esme.next_delivery()
        receipt = DeliveryReceipt.parse(deliver.short_message, deliver.tlvs, deliver.esm_class)
        assert receipt.message_id.isdigit() and receipt.message_id != response.message_id
        assert canonical_message_id(response.message_id, MessageIdFormat.HEX) == (
            canonical_message_id(receipt.message_id, MessageIdFormat.DEC)
        )


async def test_receipt_follows_the_configured_delay() -> None:
    async with SmscSimulator(settings(dlr_delay=0.3)) as sim:
        esme = await Esme().connect(sim)
        loop = asyncio.get_running_loop()
        sent_at = loop.time()
        await esme.submit()
        await esme.next_delivery()
        assert 0.25 <= loop.time() - sent_at < 1.0


async def test_smpplib_binds_submits_and_receives_the_receipt(sim: SmscSimulator) -> None:
    def converse(port: int) -> tuple[str, bytes]:
        client = smpplib.client.Client("127.0.0.1", port, timeout=5, allow_unknown_opt_params=True)
        sent: list[str] = []
        receipts: list[bytes] = []
        client.set_message_sent_handler(lambda pdu: sent.append(pdu.message_id.decode()))
        client.set_message_received_handler(lambda pdu: receipts.append(pdu.short_message))
        client.connect()
        try:
            client.bind_transceiver(system_id="legacy", password="pw")
            client.send_message(
                source_addr_ton=smpplib.consts.SMPP_TON_INTL,
                source_addr="447700900001",
                dest_addr_ton=smpplib.consts.SMPP_TON_INTL,
                destination_addr="447700900123",
                short_message=b"from smpplib",
                registered_delivery=1,
            )
            while not (sent and receipts):
                client.read_once()
            client.unbind()
        finally:
            client.disconnect()
        return sent[0], receipts[0]

    message_id, receipt = await asyncio.to_thread(converse, sim.port)
    assert receipt.startswith(f"id:{message_id} ".encode())
    assert b"stat:DELIVRD" in receipt
    assert sim.received[0].system_id == "legacy"


async def test_bind_with_wrong_credentials_is_refused() -> None:
    async with SmscSimulator(settings(system_id="acme", password="secret")) as sim:
        client = SmppClient()
        await client.connect("127.0.0.1", sim.port)
        with pytest.raises(BindError) as refused:
            await client.bind("transceiver", "acme", "wrong")
        assert refused.value.status == CommandStatus.ESME_RINVPASWD
        with pytest.raises(BindError) as unknown:
            await client.bind("transceiver", "other", "secret")
        assert unknown.value.status == CommandStatus.ESME_RINVSYSID
        await client.bind("transceiver", "acme", "secret")
        assert sim.stats.binds == 1 and sim.stats.binds_refused == 2
        client.close()


async def test_throttle_fraction_answers_that_share_with_esme_rthrottled() -> None:
    async with SmscSimulator(settings(throttle_fraction=0.25), seed=1) as sim:
        esme = await Esme().connect(sim)
        responses = await asyncio.gather(*(esme.submit(registered_delivery=0) for _ in range(400)))
        throttled = [r for r in responses if r.command_status == CommandStatus.ESME_RTHROTTLED]
        assert 60 <= len(throttled) <= 140
        assert all(r.message_id == "" for r in throttled)
        assert sim.stats.throttled == len(throttled)
        assert sim.stats.accepted == 400 - len(throttled)


async def test_undeliverable_fraction_and_outcome_policy_shape_the_receipts() -> None:
    async with SmscSimulator(settings(undeliverable_fraction=1.0)) as sim:
        esme = await Esme().connect(sim)
        await esme.submit()
        deliver = await esme.next_delivery()
        assert b"stat:UNDELIV" in deliver.short_message and b"dlvrd:000" in deliver.short_message
        assert deliver.tlvs[Tag.MESSAGE_STATE] == 5

    def by_destination(received: ReceivedSubmit) -> ReceiptOutcome:
        if received.destination_addr.endswith("9"):
            return ReceiptOutcome(SegmentStatus.EXPIRED, error=27)
        return UNDELIVERABLE

    async with SmscSimulator(settings(), outcome_policy=by_destination) as sim:
        esme = await Esme().connect(sim)
        await esme.submit(destination_addr="447700900999")
        receipt = await esme.next_delivery()
        assert b"stat:EXPIRED err:027" in receipt.short_message


async def test_receipts_only_when_registered_delivery_asks(sim: SmscSimulator) -> None:
    esme = await Esme().connect(sim)
    await esme.submit(registered_delivery=0)
    await esme.submit(registered_delivery=2)  # on failure only, and this one is delivered
    await esme.submit(registered_delivery=1, short_message=b"wanted")
    deliver = await esme.next_delivery()
    assert b"text:wanted" in deliver.short_message
    await asyncio.sleep(0.1)
    assert esme.delivered.empty()


async def test_submit_policy_refuses_with_the_chosen_status() -> None:
    def refuse_premium(received: ReceivedSubmit) -> int:
        return CommandStatus.ESME_RINVDSTADR if received.destination_addr.startswith("9") else 0

    async with SmscSimulator(settings(), submit_policy=refuse_premium) as sim:
        esme = await Esme().connect(sim)
        refused = await esme.submit(destination_addr="900123")
        accepted = await esme.submit()
        assert refused.command_status == CommandStatus.ESME_RINVDSTADR
        assert accepted.command_status == 0
        assert [r.status for r in sim.received] == [CommandStatus.ESME_RINVDSTADR, 0]


async def _first_read_after_a_submit(sim: SmscSimulator) -> list[Pdu]:
    """Bind a raw socket, send one submit_sm asking for a receipt; the PDUs of the next read."""
    reader, writer = await asyncio.open_connection("127.0.0.1", sim.port)
    decoder = PduDecoder(65536)
    try:
        writer.write(encode(BindTransceiver(sequence_number=1, system_id="raw", password="pw")))
        bound = decoder.feed(await asyncio.wait_for(reader.read(4096), WAIT))
        assert len(bound) == 1
        submit = SubmitSm(sequence_number=2, destination_addr="447700900123", short_message=b"x")
        submit.registered_delivery = 1
        writer.write(encode(submit))
        return [p for p in decoder.feed(await asyncio.wait_for(reader.read(4096), WAIT))]
    finally:
        writer.close()


async def test_before_resp_mode_writes_the_receipt_just_before_the_response() -> None:
    async with SmscSimulator(settings(receipt_mode="before-resp", dlr_delay=5.0)) as sim:
        seen = await _first_read_after_a_submit(sim)
    assert [type(p) for p in seen] == [DeliverSm, SubmitSmResp]
    deliver, response = seen
    assert isinstance(deliver, DeliverSm) and isinstance(response, SubmitSmResp)
    assert deliver.tlvs[Tag.RECEIPTED_MESSAGE_ID] == response.message_id


async def test_same_write_mode_writes_the_receipt_right_behind_the_response() -> None:
    async with SmscSimulator(settings(receipt_mode="same-write", dlr_delay=5.0)) as sim:
        seen = await _first_read_after_a_submit(sim)
    # One read brought both (one write on loopback), the response first, as fast SMSCs do.
    assert [type(p) for p in seen] == [SubmitSmResp, DeliverSm]
    response, deliver = seen
    assert isinstance(deliver, DeliverSm) and isinstance(response, SubmitSmResp)
    assert deliver.tlvs[Tag.RECEIPTED_MESSAGE_ID] == response.message_id


async def test_timer_mode_sends_the_receipt_after_its_delay_not_with_the_response() -> None:
    async with SmscSimulator(settings(receipt_mode="timer", dlr_delay=5.0)) as sim:
        seen = await _first_read_after_a_submit(sim)
        assert [type(p) for p in seen] == [SubmitSmResp]
        assert sim.pending_deliveries() == 1


async def test_delayed_mode_jitters_receipts_out_of_submit_order() -> None:
    config = settings(receipt_mode="delayed", dlr_delay=0.0, dlr_jitter=0.4)
    async with SmscSimulator(config, seed=3) as sim:
        esme = await Esme().connect(sim)
        ids = [(await esme.submit()).message_id for _ in range(30)]
        receipts = [await esme.next_delivery() for _ in ids]
    receipt_ids = [str(r.tlvs[Tag.RECEIPTED_MESSAGE_ID]) for r in receipts]
    assert sorted(receipt_ids) == sorted(ids)
    assert receipt_ids != ids


async def test_data_sm_is_answered_and_its_payload_recorded(sim: SmscSimulator) -> None:
    esme = await Esme().connect(sim)
    response = await esme.client.submit(
        DataSm(destination_addr="447700900123", tlvs={Tag.MESSAGE_PAYLOAD: b"payload text"})
    )
    assert response.command_status == 0 and getattr(response, "message_id", "")
    assert sim.received[0].operation == "data_sm"
    assert sim.received[0].text == "payload text"


async def test_injected_mo_reaches_the_bound_receiver(sim: SmscSimulator) -> None:
    esme = await Esme().connect(sim, kind="receiver", system_id="inbox")
    sim.inject_mo("447700900555", "12345", "STOP")
    mo = await esme.next_delivery()
    assert mo.esm_class == 0
    assert (mo.source_addr, mo.destination_addr, mo.short_message) == (
        "447700900555",
        "12345",
        b"STOP",
    )
    # Counted when the deliver_sm_resp reaches the simulator, a moment after the ESME saw it.
    await wait_for(lambda: sim.stats.mo_sent == 1, "the MO's answer at the simulator")


async def test_receipts_wait_for_a_rebind_after_the_client_goes_away() -> None:
    async with SmscSimulator(settings(dlr_delay=0.2)) as sim:
        first = await Esme().connect(sim)
        await first.submit(short_message=b"kept for later")
        first.client.close()
        await wait_for(lambda: sim.pending_deliveries() == 1, "the receipt kept for a rebind")
        second = await Esme().connect(sim)
        receipt = await second.next_delivery()
        assert b"text:kept for later" in receipt.short_message


async def test_a_refused_receipt_is_delivered_again() -> None:
    async with SmscSimulator(settings()) as sim:
        esme = await Esme(answer_status=CommandStatus.ESME_RSYSERR).connect(sim)
        await esme.submit()
        await esme.next_delivery()
        esme.answer_status = 0
        again = await esme.next_delivery()
        assert again.esm_class & 0x04
        await wait_for(lambda: sim.stats.receipts_sent == 1, "the receipt's answer")
        assert sim.stats.deliveries_retried == 1


async def test_restart_on_the_same_port_never_reuses_message_ids() -> None:
    sim = SmscSimulator(settings())
    await sim.start()
    esme = await Esme().connect(sim)
    before = (await esme.submit()).message_id
    await sim.stop()
    await asyncio.wait_for(esme.client.closed, WAIT)
    await sim.start()
    again = await Esme().connect(sim)
    after = (await again.submit()).message_id
    assert int(after, 16) > int(before, 16)
    await sim.stop()


async def test_record_file_has_one_line_per_submit_with_concatenation(tmp_path: Path) -> None:
    record = tmp_path / "received.jsonl"
    async with SmscSimulator(settings(record_file=record)) as sim:
        esme = await Esme().connect(sim)
        long_text = "part " * 60
        for concatenation in (Concatenation.UDH8, Concatenation.SAR):
            for segment in split_text(long_text, concatenation=concatenation, reference=77):
                await esme.submit(
                    short_message=segment.short_message,
                    esm_class=0x40 if segment.esm_class_udhi else 0,
                    data_coding=segment.data_coding,
                    tlvs=dict(segment.tlvs),
                    registered_delivery=0,
                )
        await wait_for(  # a tick of the simulator flushes the file
            lambda: record.exists() and len(record_lines(record)) >= 4, "four lines recorded"
        )
        lines = record_lines(record)
    assert len(lines) == 4
    assert [line["concat"]["kind"] for line in lines] == ["udh8", "udh8", "sar", "sar"]
    assert {line["concat"]["reference"] for line in lines} == {77}
    assert [line["concat"]["index"] for line in lines] == [1, 2, 1, 2]
    assert "".join(line["text"] for line in lines[:2]) == long_text
    assert all(line["status"] == 0 and line["message_id"] for line in lines)


def test_standalone_command_serves_and_reports_on_sigterm(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    record = tmp_path / "record.jsonl"
    command = ["sim", "smsc", "--port", str(port), "--id-format", "dec", "--record", str(record)]
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", *command],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stderr is not None
        assert "listening on" in process.stderr.readline()
        client = smpplib.client.Client("127.0.0.1", port, timeout=5, allow_unknown_opt_params=True)
        ids: list[str] = []
        client.set_message_sent_handler(lambda pdu: ids.append(pdu.message_id.decode()))
        client.connect()
        client.bind_transmitter(system_id="bench", password="pw")
        client.send_message(destination_addr="447700900123", short_message=b"standalone")
        client.read_once()
        client.unbind()
        client.disconnect()
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=10)
    finally:
        process.kill()
    assert process.returncode == 0
    assert ids and ids[0].isdigit()
    assert "submits=1" in err and "accepted=1" in err
    [line] = record_lines(record)
    assert (line["text"], line["message_id"]) == ("standalone", ids[0])


async def test_periodic_mos_go_to_a_bound_receiver() -> None:
    async with SmscSimulator(settings(mo_interval=0.05)) as sim:
        esme = await Esme().connect(sim, kind="receiver")
        first = await esme.next_delivery()
        second = await esme.next_delivery()
        assert first.short_message.startswith(b"MO test")
        assert first.short_message != second.short_message
