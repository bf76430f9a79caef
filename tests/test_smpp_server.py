"""The customer SMPP server with smpp.aio clients and raw sockets on 127.0.0.1: throttling,
isolation of misbehaving clients, bind guard, cancel_sm, data_sm, submit_multi, validation and
deliver_sm_resp error handling. (smpplib interop lives in test_smpp_server_smpplib.py.)"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from dlr.status import MessageStatus
from gateway.accounts import BindGuard
from gateway.inbound.model import InboundPart
from gateway.inbound.smpp_pdus import part_from_pdu
from gateway.messages import Channel, Tenant
from gateway.smpp_server import ServerSettings, estimate_segments
from smpp.aio import BindError, SmppClient
from smpp.codec import encode
from smpp.constants import CommandStatus, Tag
from smpp.pdu import (
    CancelSm,
    DataSm,
    DeliverSm,
    DistributionList,
    Pdu,
    QuerySm,
    SmeAddress,
    SubmitMulti,
    SubmitSm,
)
from smpp.session import SessionConfig
from tests.test_smpp_server_support import (
    DESTINATION,
    PASSWORD,
    Tandem,
    account,
    start_tandem,
    stop_tandem,
)
from tests.waiting import wait_for

FAST = ServerSettings(
    bind_timeout=1.0, write_stall_timeout=1.0, reassembly_timeout=0.5, delivery_retry_initial=0.05
)
CLIENT = SessionConfig(window=10, enquire_link_interval=None, response_timeout=5.0)


def mo_part(pdu: DeliverSm | None = None, **fields: Any) -> InboundPart:
    """An MO as the carrier link hands it to the daemon: a deliver_sm, or its fields."""
    return part_from_pdu("sim", pdu if pdu is not None else DeliverSm(**fields), time.time())


@pytest.fixture
async def tandem(tmp_path: Path) -> AsyncIterator[Tandem]:
    running = await start_tandem(
        tmp_path,
        [
            account("alice", mo_numbers=["12345"], window=10),
            account("paced", tps=50.0, window=20),
            account("slow", tps=5.0),
            account("shop", allowed_senders=[r"Shop", r"\d{5}"]),
            account("joiner", multipart="reassemble", mo_numbers=["777"]),
            account("flooder", window=5),
            account("sink", window=100, mo_numbers=["555"]),
        ],
        settings=FAST,
    )
    yield running
    await stop_tandem(running)


async def bound_client(
    tandem: Tandem,
    system_id: str,
    kind: str = "transceiver",
    handler: object = None,
    config: SessionConfig = CLIENT,
) -> SmppClient:
    client = SmppClient(config, request_handler=handler)  # type: ignore[arg-type]
    await client.connect("127.0.0.1", tandem.port)
    await client.bind(kind, system_id, PASSWORD)
    return client


def collector(into: list[DeliverSm]) -> Callable[[Pdu], Pdu]:
    """A request handler that keeps every deliver_sm it is given and answers it ESME_ROK."""

    def take(pdu: Pdu) -> Pdu:
        assert isinstance(pdu, DeliverSm)
        into.append(pdu)
        return pdu.response()

    return take


def receipted_ids(deliveries: list[DeliverSm]) -> list[str]:
    return [str(pdu.tlvs[Tag.RECEIPTED_MESSAGE_ID]) for pdu in deliveries]


def submit(text: str = "hello", **fields: object) -> SubmitSm:
    values: dict[str, object] = {
        "source_addr_ton": 5,
        "source_addr": "Shop",
        "dest_addr_ton": 1,
        "dest_addr_npi": 1,
        "destination_addr": DESTINATION,
        "short_message": text.encode(),
    }
    values.update(fields)
    return SubmitSm(**values)  # type: ignore[arg-type]


# --- throttling and isolation -------------------------------------------------------------------


async def test_submits_above_the_account_tps_are_throttled_and_counted_per_segment(
    tandem: Tandem,
) -> None:
    client = await bound_client(tandem, "slow")
    # 5 tps with a burst of 5: a 3-part message and two singles fit; the next part does not.
    long_text = b"x" * 400  # 3 segments of 153 GSM septets
    long_submit = submit(short_message=b"", tlvs={Tag.MESSAGE_PAYLOAD: long_text})
    # Written at once (the window is 10), so they all meet the bucket within one refill of
    # 0.2 s even on a busy machine; awaited one by one, a slow turn could let a token back in.
    pending = [client.send_request_nowait(p) for p in (long_submit, submit(), submit(), submit())]
    statuses = [(await answer).command_status for answer in pending]
    await client.unbind()
    assert statuses == [0, 0, 0, CommandStatus.ESME_RTHROTTLED]
    assert tandem.server.stats.throttled == 1


async def garbage_forever(port: int, stop: asyncio.Event) -> int:
    """Connect, spray random bytes, repeat; returns how many connections it made."""
    rounds = 0
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            for _ in range(20):
                writer.write(os.urandom(4096))
            await writer.drain()
            await asyncio.wait_for(reader.read(65536), 1.0)
            writer.close()
        except (ConnectionError, TimeoutError):
            pass
        rounds += 1
    return rounds


async def window_flood(port: int) -> tuple[int, int]:
    """A bound client that writes 2,000 submits at once, far past its window of 5, and only
    then reads; returns (answers read, throttled answers)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    from smpp.codec import PduDecoder
    from smpp.pdu import BindTransmitter

    writer.write(encode(BindTransmitter(sequence_number=1, system_id="flooder", password=PASSWORD)))
    decoder = PduDecoder(65536)
    answers: list[Pdu] = []
    while not answers:
        data = await asyncio.wait_for(reader.read(4096), 10)
        assert data, "the connection was closed before the bind was answered"
        answers.extend(p for p in decoder.feed(data) if isinstance(p, Pdu))
    assert answers[0].command_status == 0
    burst = b"".join(encode(submit(sequence_number=n)) for n in range(2, 2002))
    writer.write(burst)
    await writer.drain()
    answered: list[Pdu] = []
    while len(answered) < 2000:
        data = await asyncio.wait_for(reader.read(65536), 10)
        if not data:
            break
        answered.extend(p for p in decoder.feed(data) if isinstance(p, Pdu))
    writer.close()
    throttled = sum(p.command_status == CommandStatus.ESME_RTHROTTLED for p in answered)
    return len(answered), throttled


async def never_reads(port: int, stop: asyncio.Event) -> None:
    """A bound receiver that stops reading its socket: receipts and MOs back up on it."""
    from smpp.pdu import BindTransceiver

    _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(encode(BindTransceiver(sequence_number=1, system_id="alice", password=PASSWORD)))
    await writer.drain()
    await stop.wait()
    writer.close()


async def test_garbage_window_flood_and_a_non_reader_do_not_disturb_a_client_at_its_tps(
    tandem: Tandem,
) -> None:
    stop = asyncio.Event()
    garbage = asyncio.create_task(garbage_forever(tandem.port, stop))
    stuck = asyncio.create_task(never_reads(tandem.port, stop))
    flood = asyncio.create_task(window_flood(tandem.port))
    client = await bound_client(tandem, "paced")
    statuses: list[int] = []
    latencies: list[float] = []
    started = time.monotonic()
    for n in range(100):  # 50 tps for two seconds, paced as a well-behaved client would
        await asyncio.sleep(max(0.0, started + n / 50 - time.monotonic()))
        sent_at = time.monotonic()
        statuses.append((await client.submit(submit(f"paced {n}"))).command_status)
        latencies.append(time.monotonic() - sent_at)
    await client.unbind()
    stop.set()
    rounds = await garbage
    await stuck
    answered, throttled = await flood
    assert statuses == [0] * 100
    assert max(latencies) < 1.0
    assert rounds >= 5  # the garbage kept coming the whole time
    assert answered == 2000  # the flood was answered in full, at its own pace
    assert throttled > 0  # and what it sent past its window was refused
    assert tandem.server.stats.connections >= rounds


async def test_a_client_that_never_binds_is_closed_after_the_bind_timeout(tandem: Tandem) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", tandem.port)
    started = time.monotonic()
    assert await asyncio.wait_for(reader.read(), 5) == b""
    assert 0.5 < time.monotonic() - started < 4
    writer.close()


async def test_a_receiver_that_stops_reading_is_dropped_and_its_deliveries_wait(
    tandem: Tandem,
) -> None:
    import socket

    from smpp.pdu import BindReceiver

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # it reads nothing, keeps little
    sock.connect(("127.0.0.1", tandem.port))
    sock.sendall(encode(BindReceiver(sequence_number=1, system_id="sink", password=PASSWORD)))
    await wait_for(lambda: tandem.server.stats.binds == 1, what="the bind")
    big = b"y" * 60_000  # a window of these (6 MB) overflows the kernel's buffers too
    for _ in range(100):
        tandem.gateway.on_mo(
            "sim",
            mo_part(
                source_addr="447700900001",
                destination_addr="555",
                tlvs={Tag.MESSAGE_PAYLOAD: big},
            ),
        )
    await wait_for(lambda: tandem.server.stats.dropped_slow_readers == 1, what="the drop")
    sock.close()
    runtime = tandem.server.runtime("sink")
    assert runtime is not None
    await wait_for(lambda: not runtime.binds, what="the bind to go")
    await wait_for(lambda: len(runtime.outbox) == 100, what="the deliveries to wait again")


# --- binds --------------------------------------------------------------------------------------


async def test_repeated_bind_failures_are_slowed_down_then_banned_even_with_good_credentials(
    tandem: Tandem,
) -> None:
    tandem.server.guard = BindGuard(free_failures=1, base_delay=0.3, ban_after=3, ban_seconds=60)
    # The third answer waits 0.6 s plus a password check: more than the fixture's 1 s bind
    # timeout on a busy machine, which would close the connection before the answer.
    tandem.server.session_config = dataclasses.replace(
        tandem.server.session_config, bind_timeout=10.0
    )
    timings = []
    for _ in range(3):
        client = SmppClient(CLIENT)
        await client.connect("127.0.0.1", tandem.port)
        started = time.monotonic()
        with pytest.raises(BindError) as refused:
            await client.bind("transmitter", "alice", "wrong")
        timings.append(time.monotonic() - started)
        assert refused.value.status == CommandStatus.ESME_RBINDFAIL
        client.close()
    # The added delay doubles from 0.3 s. Each answer also carries a password check whose
    # time varies with the machine's load, so only the delays' lower bounds are asserted.
    assert timings[1] >= 0.29
    assert timings[2] >= 0.59
    client = SmppClient(CLIENT)
    await client.connect("127.0.0.1", tandem.port)
    with pytest.raises(BindError) as banned:
        await client.bind("transmitter", "alice", PASSWORD)
    assert banned.value.status == CommandStatus.ESME_RBINDFAIL
    client.close()
    assert tandem.server.guard.stats.bans == 1
    assert tandem.server.stats.bind_refused_banned == 1


async def test_binds_beyond_max_binds_are_refused(tandem: Tandem) -> None:
    clients = [await bound_client(tandem, "alice", "transmitter") for _ in range(4)]
    extra = SmppClient(CLIENT)
    await extra.connect("127.0.0.1", tandem.port)
    with pytest.raises(BindError) as refused:
        await extra.bind("transmitter", "alice", PASSWORD)
    assert refused.value.status == CommandStatus.ESME_RBINDFAIL
    extra.close()
    await clients[0].unbind()
    await wait_for(lambda: len(tandem.server.runtime("alice").binds) == 3, what="the unbind")  # type: ignore[union-attr]
    replacement = await bound_client(tandem, "alice", "transmitter")
    for client in [*clients[1:], replacement]:
        await client.unbind()


# --- submits ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({"source_addr": "Spammer"}, CommandStatus.ESME_RINVSRCADR),
        ({"destination_addr": ""}, CommandStatus.ESME_RINVDSTADR),
        ({"destination_addr": "123"}, CommandStatus.ESME_RINVDSTADR),
        ({"short_message": b""}, CommandStatus.ESME_RINVMSGLEN),
        ({"validity_period": "bogus"}, CommandStatus.ESME_RINVEXPIRY),
        ({"validity_period": "200101000000000+"}, CommandStatus.ESME_RINVEXPIRY),  # past
        ({"schedule_delivery_time": "261399000000000+"}, CommandStatus.ESME_RINVSCHED),
        ({"esm_class": 0x04}, CommandStatus.ESME_RINVESMCLASS),
        (
            {"esm_class": 0x40, "short_message": b"\x09\x00\x03\x01"},
            CommandStatus.ESME_RINVESMCLASS,
        ),
        ({"tlvs": {Tag.MESSAGE_PAYLOAD: b"both"}}, CommandStatus.ESME_RINVOPTPARAMVAL),
    ],
)
async def test_invalid_submits_are_refused_with_the_matching_status(
    tandem: Tandem, fields: dict[str, object], status: int
) -> None:
    client = await bound_client(tandem, "shop", "transmitter")
    response = await client.submit(submit(**fields))
    await client.unbind()
    assert response.command_status == status


async def test_pipelined_submits_each_get_their_own_answer_when_one_is_refused(
    tandem: Tandem,
) -> None:
    client = await bound_client(tandem, "alice", "transmitter")
    # Sent in one write, read in one go: intake sees them together.
    futures = [
        client.send_request_nowait(submit(destination_addr=destination))
        for destination in (DESTINATION, "123", "447911123457")
    ]
    answers = await asyncio.gather(*futures)
    await client.unbind()
    assert [a.command_status for a in answers] == [0, CommandStatus.ESME_RINVDSTADR, 0]
    ids = [a.message_id for a in answers]  # type: ignore[attr-defined]
    assert ids[0] and ids[2] and ids[0] != ids[2]
    await wait_for(lambda: len(tandem.simulator.received) == 2, what="the two good ones")


async def test_sender_ids_matching_the_account_patterns_are_accepted(tandem: Tandem) -> None:
    client = await bound_client(tandem, "shop", "transmitter")
    answers = [
        await client.submit(submit(source_addr=sender)) for sender in ("Shop", "12345", "1234")
    ]
    await client.unbind()
    assert [a.command_status for a in answers] == [0, 0, CommandStatus.ESME_RINVSRCADR]


async def test_data_sm_is_accepted_like_submit_sm(tandem: Tandem) -> None:
    client = await bound_client(tandem, "alice", "transmitter")
    response = await client.submit(
        DataSm(
            source_addr="Shop",
            dest_addr_ton=1,
            destination_addr=DESTINATION,
            tlvs={Tag.MESSAGE_PAYLOAD: b"via data_sm"},
        )
    )
    await client.unbind()
    assert response.command_status == 0
    record = await tandem.gateway.message_store.get(response.message_id)  # type: ignore[attr-defined]
    assert record is not None and record.message.body == b"via data_sm"


async def test_submit_multi_stores_one_message_per_destination_and_lists_failures(
    tandem: Tandem,
) -> None:
    client = await bound_client(tandem, "alice", "transmitter")
    response = await client.submit(
        SubmitMulti(
            source_addr="Shop",
            dest_addresses=[
                SmeAddress(1, 1, DESTINATION),
                SmeAddress(1, 1, "447911123457"),
                SmeAddress(1, 1, "12"),
                DistributionList("friends"),
            ],
            short_message=b"to many",
        )
    )
    await client.unbind()
    assert response.command_status == 0
    failed = sorted(u.destination_addr for u in response.unsuccess_sme)  # type: ignore[attr-defined]
    assert failed == ["12", "friends"]
    await wait_for(lambda: len(tandem.simulator.received) == 2, what="both messages")
    assert sorted(r.destination_addr for r in tandem.simulator.received) == sorted(
        [DESTINATION, "447911123457"]
    )


async def test_every_receipt_of_a_submit_multi_carries_the_id_it_was_answered_with(
    tandem: Tandem,
) -> None:
    got: list[DeliverSm] = []
    client = await bound_client(tandem, "alice", handler=collector(got))
    destinations = [DESTINATION, "447911123457", "447911123458"]
    response = await client.submit(
        SubmitMulti(
            source_addr="Shop",
            dest_addresses=[SmeAddress(1, 1, d) for d in destinations],
            short_message=b"to many",
            registered_delivery=1,
        )
    )
    assert response.command_status == 0
    await wait_for(lambda: len(got) == 3, what="three receipts")
    await client.unbind()
    assert receipted_ids(got) == [response.message_id] * 3  # type: ignore[attr-defined]
    # The receipt's source is the destination it reports on.
    assert sorted(pdu.source_addr for pdu in got) == sorted(destinations)


async def test_incomplete_multipart_submit_is_refused_after_the_reassembly_timeout(
    tandem: Tandem,
) -> None:
    client = await bound_client(tandem, "joiner", "transmitter")
    udh = bytes((5, 0, 3, 0x42, 2, 1))
    response = await client.submit(submit(short_message=udh + b"only part one", esm_class=0x40))
    await client.unbind()
    assert response.command_status == CommandStatus.ESME_RSUBMITFAIL
    assert tandem.simulator.received == []


# --- query and cancel ---------------------------------------------------------------------------


async def test_cancel_sm_deletes_a_queued_message_of_the_account_only(tandem: Tandem) -> None:
    later = time.strftime("%y%m%d%H%M%S", time.gmtime(time.time() + 3600)) + "000+"
    owner = await bound_client(tandem, "alice", "transmitter")
    stranger = await bound_client(tandem, "shop", "transmitter")
    accepted = await owner.submit(submit(schedule_delivery_time=later))
    message_id = accepted.message_id  # type: ignore[attr-defined]
    refused = await stranger.submit(CancelSm(message_id=message_id))
    cancelled = await owner.submit(CancelSm(message_id=message_id))
    again = await owner.submit(CancelSm(message_id=message_id))
    state = await owner.submit(QuerySm(message_id=message_id))
    await owner.unbind()
    await stranger.unbind()
    assert refused.command_status == CommandStatus.ESME_RCANCELFAIL
    assert cancelled.command_status == 0
    assert again.command_status == CommandStatus.ESME_RCANCELFAIL
    record = await tandem.gateway.message_store.get(message_id)
    assert record is not None and record.message.status == MessageStatus.DELETED
    assert state.message_state == 4  # type: ignore[attr-defined]  # DELETED
    assert tandem.simulator.received == []


async def test_cancel_sm_with_a_submit_multis_id_cancels_every_destination(
    tandem: Tandem,
) -> None:
    later = time.strftime("%y%m%d%H%M%S", time.gmtime(time.time() + 3600)) + "000+"
    client = await bound_client(tandem, "alice", "transmitter")
    destinations = [DESTINATION, "447911123457", "447911123458"]
    response = await client.submit(
        SubmitMulti(
            source_addr="Shop",
            dest_addresses=[SmeAddress(1, 1, d) for d in destinations],
            short_message=b"never mind",
            schedule_delivery_time=later,
        )
    )
    multi_id = response.message_id  # type: ignore[attr-defined]
    cancelled = await client.submit(CancelSm(message_id=multi_id))
    await client.unbind()
    assert cancelled.command_status == 0
    store = tandem.gateway.message_store
    alice = Tenant(Channel.SMPP, "alice")
    ids = [multi_id, *await store.find_references(alice, multi_id)]  # type: ignore[attr-defined]
    assert len(ids) == 3
    for message_id in ids:
        record = await store.get(message_id)
        assert record is not None and record.message.status == MessageStatus.DELETED
    assert tandem.simulator.received == []


# --- deliveries ---------------------------------------------------------------------------------


async def test_temporary_deliver_sm_errors_are_retried_and_permanent_ones_dropped(
    tandem: Tandem,
) -> None:
    seen: list[bytes] = []

    def answer(pdu: Pdu) -> Pdu:
        assert isinstance(pdu, DeliverSm)
        seen.append(pdu.short_message)
        if pdu.short_message == b"refused":
            return pdu.response(command_status=CommandStatus.ESME_RX_P_APPN)
        if seen.count(pdu.short_message) == 1:
            return pdu.response(command_status=CommandStatus.ESME_RTHROTTLED)
        return pdu.response()

    client = await bound_client(tandem, "alice", "receiver", handler=answer)
    for text in (b"busy", b"refused"):
        tandem.gateway.on_mo(
            "sim",
            mo_part(source_addr="447700900001", destination_addr="12345", short_message=text),
        )
    await wait_for(lambda: tandem.server.stats.delivery_failed == 1, what="the refusal")
    # The busy one is offered again after the retry delay (a wrongly retried refusal would be
    # offered again on the same schedule, by then).
    await wait_for(lambda: tandem.server.stats.delivered == 1, what="the retried delivery")
    await client.unbind()
    assert sorted(seen) == [b"busy", b"busy", b"refused"]  # retried once, the refused dropped
    assert tandem.server.stats.delivered == 1
    assert tandem.server.stats.delivery_retries == 1
    assert not tandem.server.runtime("alice").outbox  # type: ignore[union-attr]


async def test_reassembling_account_gets_a_multipart_mo_as_one_deliver_sm(tandem: Tandem) -> None:
    got: list[DeliverSm] = []
    client = await bound_client(tandem, "joiner", "receiver", handler=collector(got))
    text = b"A" * 150 + b"B" * 150
    for seq, chunk in ((2, text[150:]), (1, text[:150])):
        tandem.gateway.on_mo(
            "sim",
            mo_part(
                source_addr="447700900001",
                destination_addr="777",
                esm_class=0x40,
                short_message=bytes((5, 0, 3, 9, 2, seq)) + chunk,
            ),
        )
    await wait_for(lambda: bool(got), what="the joined MO")
    await asyncio.sleep(0.1)
    await client.unbind()
    (joined,) = got
    assert joined.esm_class & 0x40 == 0
    assert joined.tlvs[Tag.MESSAGE_PAYLOAD] == text  # longer than 254 octets: in message_payload


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
async def test_tls_listener_serves_binds_and_submits(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    running = await start_tandem(
        tmp_path / "tandem",
        [account("alice")],
        smpp_server={"tls_port": 0, "tls_cert_file": str(cert), "tls_key_file": str(key)},
    )
    try:
        assert running.server.tls_port not in (None, running.port)
        context = ssl.create_default_context(cafile=str(cert))
        context.check_hostname = False
        client = SmppClient(CLIENT)
        await client.connect("127.0.0.1", running.server.tls_port or 0, ssl=context)
        await client.bind("transmitter", "alice", PASSWORD)
        response = await client.submit(submit("over TLS"))
        await client.unbind()
        assert response.command_status == 0
        await wait_for(lambda: len(running.simulator.received) == 1, what="the submit")
    finally:
        await stop_tandem(running)


def test_segment_estimate_follows_gsm_and_octet_limits() -> None:
    assert [estimate_segments(n, 0) for n in (1, 160, 161, 306, 307)] == [1, 1, 2, 2, 3]
    assert [estimate_segments(n, 8) for n in (140, 141, 268, 269)] == [1, 2, 2, 3]


# --- the outbox kept in the store ---------------------------------------------------------------


async def test_an_mo_meeting_a_full_outbox_is_refused_for_now_and_lands_on_the_smscs_retry(
    tmp_path: Path,
) -> None:
    tandem = await start_tandem(
        tmp_path,
        [account("tiny", mo_numbers=["888"], delivery_queue_max=1)],
        settings=FAST,
    )
    try:
        for text in ("first", "second"):
            tandem.simulator.inject_mo("447700900001", "888", text, system_id="tandem")
        await wait_for(lambda: tandem.simulator.stats.mo_sent == 1, what="the first MO taken")
        await wait_for(
            lambda: tandem.simulator.stats.deliveries_retried >= 1, what="the second refused"
        )
        assert tandem.server.stats.mo_refused_full >= 1

        got: list[DeliverSm] = []
        client = await bound_client(tandem, "tiny", "receiver", handler=collector(got))
        await wait_for(lambda: len(got) == 2, what="both MOs")  # the SMSC offered it again
        await client.unbind()
        assert [pdu.short_message for pdu in got] == [b"first", b"second"]
        # The carrier's answer reaches the simulator after the MO is kept, not before the
        # customer sees it: wait for the count itself.
        await wait_for(lambda: tandem.simulator.stats.mo_sent == 2, what="both MOs answered")
    finally:
        await stop_tandem(tandem)


async def test_mo_parts_held_for_reassembly_are_replaced_by_the_whole_or_survive_a_restart(
    tmp_path: Path,
) -> None:
    accounts = [account("joiner", multipart="reassemble", mo_numbers=["777"])]
    tandem = await start_tandem(tmp_path, accounts, settings=FAST)

    def part(reference: int, seq: int, text: bytes) -> DeliverSm:
        return DeliverSm(
            source_addr="447700900001",
            destination_addr="777",
            esm_class=0x40,
            short_message=bytes((5, 0, 3, reference, 2, seq)) + text,
        )

    try:
        for pdu in (part(1, 1, b"whole "), part(1, 2, b"message"), part(2, 1, b"half ")):
            taken = tandem.gateway.on_mo("sim", mo_part(pdu))
            assert taken is not None
            await taken  # answered to the carrier only now: kept in the store
        store = tandem.gateway.message_store
        kept = await store.queued_mos()  # type: ignore[attr-defined]
        assert [m.part_of is None for m in kept] == [True]  # the whole, for the account
        held = await store.held_inbound()  # type: ignore[attr-defined]
        assert [record.row.text for record in held] == ["half "]  # waits at the gateway
    finally:
        await stop_tandem(tandem)

    again = await start_tandem(tmp_path, accounts, settings=FAST)
    try:
        got: list[DeliverSm] = []
        client = await bound_client(again, "joiner", "receiver", handler=collector(got))
        await wait_for(lambda: len(got) == 2, what="the whole and the part")
        await asyncio.sleep(0.1)
        await client.unbind()
        whole, half = sorted(got, key=lambda pdu: pdu.esm_class)
        assert (whole.esm_class & 0x40, whole.short_message) == (0, b"whole message")
        assert half.esm_class & 0x40 and half.short_message.endswith(b"half ")  # as it came
        await wait_for(lambda: len(got) == 2, what="nothing more")
    finally:
        await stop_tandem(again)
    reopened = await start_tandem(tmp_path, accounts, settings=FAST)
    try:
        assert await reopened.gateway.message_store.queued_mos() == []  # type: ignore[attr-defined]
    finally:
        await stop_tandem(reopened)


async def test_a_receipt_the_customer_refuses_for_good_is_dropped_and_said_in_history(
    tandem: Tandem,
) -> None:
    from dlr.status import StatusSource

    refused: list[DeliverSm] = []

    def refuse(pdu: Pdu) -> Pdu:
        assert isinstance(pdu, DeliverSm)
        refused.append(pdu)
        return pdu.response(command_status=CommandStatus.ESME_RX_P_APPN)

    client = await bound_client(tandem, "alice", handler=refuse)
    response = await client.submit(submit(registered_delivery=1))
    message_id = response.message_id  # type: ignore[attr-defined]
    await wait_for(lambda: tandem.server.stats.delivery_failed == 1, what="the refusal")
    await client.unbind()
    store = tandem.gateway.message_store

    async def recorded() -> list[str]:
        record = await store.get(message_id)
        assert record is not None
        return [
            entry.event.detail
            for entry in record.history
            if entry.event.source is StatusSource.SMPP_RECEIPT
        ]

    async def refusal_recorded() -> bool:
        return bool(await recorded())

    await wait_for(refusal_recorded, "the refusal in the history", interval=0.02)
    assert await recorded() == ["receipt refused by the customer with 0x00000065"]
    assert len(refused) == 1  # not offered again
    assert await store.owed_receipts() == []  # type: ignore[attr-defined]


async def test_receipts_owed_past_their_ttl_are_not_sent_after_a_restart(tmp_path: Path) -> None:
    accounts = [account("brief", delivery_ttl=0.5), account("patient")]
    tandem = await start_tandem(tmp_path, accounts, settings=FAST)
    ids = {}
    try:
        for system_id in ("brief", "patient"):
            client = await bound_client(tandem, system_id, "transmitter")
            response = await client.submit(submit(registered_delivery=1))
            ids[system_id] = response.message_id  # type: ignore[attr-defined]
            await client.unbind()
        store = tandem.gateway.message_store
        await wait_for(lambda: tandem.server.stats.receipts_queued == 2, what="both receipts")
    finally:
        await stop_tandem(tandem)
    await asyncio.sleep(0.6)  # past brief's delivery_ttl

    again = await start_tandem(tmp_path, accounts, settings=FAST)
    try:
        store = again.gateway.message_store
        owed = await store.owed_receipts()  # type: ignore[attr-defined]
        assert [o.message.id for o in owed] == [ids["patient"]]
        got: list[DeliverSm] = []
        receivers = [
            await bound_client(again, system_id, "receiver", handler=collector(got))
            for system_id in ("brief", "patient")
        ]
        # brief bound first: had its receipt been owed, it would be on its way before this.
        await wait_for(lambda: bool(got), what="patient's receipt")
        brief = again.server.runtime("brief")
        assert brief is not None and not brief.outbox  # nothing waits for brief either
        for client in receivers:
            await client.unbind()
        assert receipted_ids(got) == [ids["patient"]]
    finally:
        await stop_tandem(again)


async def test_an_accounts_route_tags_choose_the_routes_its_messages_may_take(
    tmp_path: Path,
) -> None:
    routes = [
        {"name": "premium", "priority": 1, "tags": ["premium"], "targets": ["sim"]},
        {"name": "standard", "priority": 100, "targets": ["sim"]},
    ]
    accounts = [account("bank", route_tags=["premium"]), account("shop")]
    tandem = await start_tandem(tmp_path, accounts, settings=FAST, routes=routes)
    try:
        chosen = {}
        for system_id in ("bank", "shop"):
            client = await bound_client(tandem, system_id)
            response = await client.submit(submit())
            await client.unbind()
            record = await tandem.gateway.message_store.get(response.message_id)  # type: ignore[attr-defined]
            assert record is not None
            chosen[system_id] = record.message.route
        assert chosen == {"bank": "premium", "shop": "standard"}
    finally:
        await stop_tandem(tandem)


async def test_receipts_beyond_the_outbox_bound_wait_in_the_store_and_all_arrive(
    tmp_path: Path,
) -> None:
    tandem = await start_tandem(tmp_path, [account("busy", delivery_queue_max=4)], settings=FAST)
    try:
        sender = await bound_client(tandem, "busy", "transmitter")
        ids = []
        for n in range(15):
            response = await sender.submit(submit(f"busy {n}", registered_delivery=1))
            ids.append(response.message_id)  # type: ignore[attr-defined]
        await sender.unbind()
        store = tandem.gateway.message_store
        await wait_for(lambda: tandem.server.stats.receipts_deferred == 11, what="11 deferred")
        assert len(await store.owed_receipts()) == 15  # type: ignore[attr-defined]

        got: list[DeliverSm] = []
        receiver = await bound_client(tandem, "busy", "receiver", handler=collector(got))
        await wait_for(lambda: len(got) == 15, what="every receipt")
        await asyncio.sleep(0.2)
        await receiver.unbind()
        assert sorted(receipted_ids(got)) == sorted(ids)  # each once, none dropped
        assert tandem.server.stats.delivery_dropped_full == 0
        assert tandem.server.stats.receipts_refilled == 11

        async def settled() -> bool:
            return not await store.owed_receipts()  # type: ignore[attr-defined]

        await wait_for(settled, "the store to settle every receipt", interval=0.02)
    finally:
        await stop_tandem(tandem)


async def test_a_message_whose_validity_ends_while_it_waits_gets_its_expired_receipt(
    tandem: Tandem,
) -> None:
    got: list[DeliverSm] = []
    client = await bound_client(tandem, "alice", handler=collector(got))
    response = await client.submit(
        submit(
            registered_delivery=1,
            schedule_delivery_time="000000000010000R",  # held for 10 s ...
            validity_period="000000000001000R",  # ... but valid for 1 s
        )
    )
    assert response.command_status == 0
    await wait_for(lambda: bool(got), "the receipt")
    await client.unbind()
    assert receipted_ids(got) == [response.message_id]  # type: ignore[attr-defined]
    assert b"stat:EXPIRED" in got[0].short_message
    assert tandem.simulator.stats.submits == 0  # never sent


async def test_a_message_the_sweep_finds_expired_gets_its_expired_receipt_too(
    tandem: Tandem,
) -> None:
    from gateway.messages import Channel, Message

    # Stored but not in the send queue (as after a restart, before the queue caught up):
    # the periodic sweep is what expires it.
    now = time.time()
    message = Message(
        account="alice",
        channel=Channel.SMPP,
        source_addr="Shop",
        destination=DESTINATION,
        body=b"too late",
        text="too late",
        registered_delivery=1,
        validity_at=now - 1,
        status=MessageStatus.QUEUED,
        created_at=now - 5,
    )
    await tandem.gateway.message_store.accept([message])
    got: list[DeliverSm] = []
    client = await bound_client(tandem, "alice", handler=collector(got))
    await tandem.gateway.sweep()
    await wait_for(lambda: bool(got), "the receipt")
    await client.unbind()
    assert receipted_ids(got) == [message.id]
    assert b"stat:EXPIRED" in got[0].short_message


async def test_receipts_waiting_in_the_store_past_their_ttl_are_cleared_while_running(
    tmp_path: Path,
) -> None:
    import dataclasses

    settings = dataclasses.replace(FAST, forget_expired_interval=0.3)
    accounts = [account("brief", delivery_ttl=0.5, delivery_queue_max=1)]
    tandem = await start_tandem(tmp_path, accounts, settings=settings)
    try:
        client = await bound_client(tandem, "brief", "transmitter")
        for n in range(3):
            await client.submit(submit(f"brief {n}", registered_delivery=1))
        await client.unbind()
        await wait_for(lambda: tandem.server.stats.receipts_deferred == 2, what="2 deferred")
        store = tandem.gateway.message_store

        async def owed() -> int:
            return len(await store.owed_receipts())  # type: ignore[attr-defined]

        assert await owed() == 3

        async def cleared() -> bool:
            return await owed() == 0

        # The one in memory expires; the two in the store are cleared.
        await wait_for(cleared, "every receipt past its ttl cleared", interval=0.05)
        assert tandem.server.stats.delivery_expired == 1
    finally:
        await stop_tandem(tandem)
