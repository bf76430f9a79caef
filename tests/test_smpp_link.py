"""The SMPP carrier link against the SMSC simulator, over real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import random
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from dlr.ids import MessageIdFormat, canonical_message_id
from dlr.status import SegmentStatus
from gateway.config import SimulatorConfig, SmppLinkConfig
from gateway.inbound.model import InboundPart
from gateway.links import LinkState, ReceiptReport, SendFailure, SubmittedSegment, build_link
from gateway.links.smpp_client import (
    RatePacer,
    ThrottleGovernor,
    reconnect_delay,
    relative_validity,
)
from gateway.messages import Channel, Message
from gateway.queue import AsyncSendQueue
from gateway.simulator import SmscSimulator
from gateway.simulator_records import ReceivedSubmit
from smpp.codec import PduDecoder, encode
from smpp.constants import CommandStatus
from smpp.pdu import BindTransceiver
from smpp.text import encode_text
from tests.waiting import WAIT, wait_for


class RecordingSink:
    """The daemon's side of the contract, as a test double that keeps everything it is told.

    Temporary failures are put straight back on the queue, as the daemon would (without its
    backoff, to keep the tests fast)."""

    def __init__(self, queue: AsyncSendQueue) -> None:
        self.queue = queue
        self.submitted: dict[str, list[SubmittedSegment]] = {}
        self.submit_reports = 0
        self.temporary: list[tuple[Message, SendFailure]] = []
        self.permanent: list[tuple[Message, SendFailure]] = []
        self.receipts: list[ReceiptReport] = []
        self.mos: list[InboundPart] = []
        self.states: list[LinkState] = []
        self.receipt_gate: Callable[[], Awaitable[None]] | None = None

    def on_submitted(
        self, link: str, message: Message, segments: Sequence[SubmittedSegment]
    ) -> None:
        self.submit_reports += 1
        self.submitted[message.id] = list(segments)

    def on_temporary_failure(self, link: str, message: Message, failure: SendFailure) -> None:
        self.temporary.append((message, failure))
        self.queue.put(message, link)

    def on_permanent_failure(self, link: str, message: Message, failure: SendFailure) -> None:
        self.permanent.append((message, failure))

    def on_receipt(self, link: str, report: ReceiptReport) -> Awaitable[None] | None:
        self.receipts.append(report)
        return self.receipt_gate() if self.receipt_gate is not None else None

    def on_mo(self, link: str, part: InboundPart) -> None:
        self.mos.append(part)

    def on_link_state(self, link: str, state: LinkState) -> None:
        self.states.append(state)


def link_config(port: int, **fields: Any) -> SmppLinkConfig:
    values: dict[str, Any] = {
        "type": "smpp",
        "name": "carrier",
        "host": "127.0.0.1",
        "port": port,
        "system_id": "tandem",
        "password": "secret",
        "submit_id_format": "hex",
        "dlr_id_format": "hex",
        "reconnect_initial": 0.05,
        "reconnect_max": 0.2,
        "response_timeout": 2.0,
    }
    values.update(fields)
    return SmppLinkConfig.model_validate(values)


def message(text: str = "hello", destination: str = "447700900123") -> Message:
    data_coding, body = encode_text(text)
    return Message(
        account="acme",
        channel=Channel.HTTP,
        source_addr="Shop",
        destination=destination,
        body=body,
        data_coding=data_coding,
        text=text,
    )


class Harness:
    def __init__(self, sim: SmscSimulator, **link_fields: Any) -> None:
        self.sim = sim
        self.queue = AsyncSendQueue(on_expired=lambda expired: None)
        self.sink = RecordingSink(self.queue)
        self.link = build_link(link_config(sim.port, **link_fields), self.queue, self.sink)

    def send(self, *messages: Message) -> list[Message]:
        for item in messages:
            self.queue.put(item, self.link.name)
        return list(messages)

    async def all_submitted(self, messages: Sequence[Message], timeout: float = WAIT) -> None:
        await wait_for(
            lambda: all(m.id in self.sink.submitted for m in messages),
            f"{len(messages)} messages submitted",
            timeout=timeout,
        )


def sim_settings(**fields: Any) -> SimulatorConfig:
    values: dict[str, Any] = {"enabled": True, "port": 0, "dlr_delay": 0.0}
    values.update(fields)
    return SimulatorConfig.model_validate(values)


@pytest.fixture
async def sim() -> AsyncIterator[SmscSimulator]:
    async with SmscSimulator(sim_settings(), seed=3) as simulator:
        yield simulator


@pytest.fixture
async def harness(sim: SmscSimulator) -> AsyncIterator[Harness]:
    setup = Harness(sim)
    await setup.link.start()
    yield setup
    await setup.link.stop()


# --- sans-IO pieces -----------------------------------------------------------------------------


def test_sparse_throttles_cost_one_short_pause_each() -> None:
    governor = ThrottleGovernor()
    now = 10.0
    for _ in range(200):  # one throttle in twenty answers, like a carrier refusing 5%
        for _ in range(19):
            now += 0.001
            governor.on_success(now)
        now += 0.001
        governor.on_throttled(now, sent_at=now - 0.0005)
        assert 0.0005 <= governor.pause <= 0.05
        assert governor.delay(now) == pytest.approx(governor.pause)
    assert governor.pause == pytest.approx(0.003, rel=0.2)  # three response intervals
    governor.on_success(now + 0.001)
    assert governor.level == 0.0


def test_dense_throttles_double_the_pause_up_to_the_cap_then_successes_relax_it() -> None:
    governor = ThrottleGovernor()
    governor.on_throttled(now=10.0, sent_at=9.99)
    first = governor.pause
    # Answers to submits sent before that pause are old news: no longer pause.
    governor.on_throttled(now=10.0 + first / 2, sent_at=9.995)
    assert governor.pause == first
    pauses = []
    for step in range(20):
        governor.on_throttled(now=11.0 + step, sent_at=10.9 + step)
        pauses.append(governor.pause)
    assert pauses[5] > pauses[4] > pauses[3]  # doubling once throttles dominate
    assert governor.pause == governor.max_pause and governor.level == 1.0
    for step in range(30):
        governor.on_success(now=40.0 + step)
    assert governor.pause == 0.0 and governor.level == 0.0
    assert governor.delay(100.0) == 0.0


def test_rate_pacer_spaces_sends_and_catches_up_only_a_short_burst() -> None:
    pacer = RatePacer(rate=100.0)
    waits = [pacer.reserve(now=50.0) for _ in range(20)]
    immediate = sum(1 for wait in waits if wait == 0.0)
    assert immediate == 5  # the 50 ms burst allowance at 100/s
    assert waits[-1] == pytest.approx(0.15)  # the 20th send: 15 slots of 10 ms after the burst
    assert RatePacer(rate=None).reserve(now=1.0) == 0.0


def test_reconnect_delay_is_exponential_jittered_and_capped() -> None:
    rng = random.Random(5)
    delays = [reconnect_delay(n, 1.0, 30.0, rng) for n in range(1, 12)]
    assert 0.5 <= delays[0] <= 1.0
    assert 4.0 <= delays[3] <= 8.0
    assert all(15.0 <= delay <= 30.0 for delay in delays[6:])
    assert len({round(d, 6) for d in delays[6:]}) > 1  # jitter spreads reconnect storms


def test_relative_validity_uses_smpp_relative_time() -> None:
    assert relative_validity(3600 + 61) == "000000010101000R"
    assert relative_validity(2 * 86_400) == "000002000000000R"


# --- over sockets -------------------------------------------------------------------------------


async def test_link_binds_submits_and_reports_canonical_carrier_ids(harness: Harness) -> None:
    sent = harness.send(*(message(f"message {n}") for n in range(20)))
    await harness.all_submitted(sent)
    assert harness.link.state is LinkState.UP
    assert harness.sink.states[:2] == [LinkState.STARTING, LinkState.UP]
    by_text = {r.text: r for r in harness.sim.received}
    for item in sent:
        [segment] = harness.sink.submitted[item.id]
        raw = by_text[item.text or ""].message_id
        assert segment.raw_id == raw
        assert segment.carrier_id == canonical_message_id(raw, MessageIdFormat.HEX)
        assert (segment.index, segment.total) == (0, 1)
    assert harness.link.stats.messages_submitted == 20
    assert harness.link.stats.responses == {0: 20}


async def test_receipts_reach_the_sink_with_ids_that_match_the_submits(harness: Harness) -> None:
    [item] = harness.send(message())
    await harness.all_submitted([item])
    await wait_for(lambda: len(harness.sink.receipts) == 1, "the receipt")
    report = harness.sink.receipts[0]
    assert report.status is SegmentStatus.DELIVERED
    assert report.detail.startswith("stat:DELIVRD")
    assert report.key == harness.sink.submitted[item.id][0].carrier_id


async def test_a_receipt_is_acknowledged_only_after_the_sink_finishes(harness: Harness) -> None:
    release = asyncio.Event()

    async def slow_record() -> None:
        await release.wait()

    harness.sink.receipt_gate = slow_record
    harness.send(message())
    await wait_for(lambda: len(harness.sink.receipts) == 1, "the receipt")
    await asyncio.sleep(0.1)
    assert harness.sim.stats.receipts_sent == 0  # no deliver_sm_resp yet
    release.set()
    await wait_for(lambda: harness.sim.stats.receipts_sent == 1, "the receipt answered")


async def test_a_failing_sink_makes_the_smsc_offer_the_receipt_again(harness: Harness) -> None:
    attempts = 0

    async def flaky_record() -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise RuntimeError("store unavailable")

    harness.sink.receipt_gate = flaky_record
    harness.send(message())
    await wait_for(lambda: len(harness.sink.receipts) == 2, "the receipt offered again")
    assert harness.sim.stats.deliveries_retried == 1


async def test_long_message_goes_as_udh_parts_with_one_reference(harness: Harness) -> None:
    text = "Long message " * 20  # 260 GSM characters: two parts
    [item] = harness.send(message(text))
    await harness.all_submitted([item])
    parts = harness.sink.submitted[item.id]
    assert [(p.index, p.total) for p in parts] == [(0, 2), (1, 2)]
    received = harness.sim.received
    assert [r.concat.index for r in received if r.concat] == [1, 2]
    assert len({r.concat.reference for r in received if r.concat}) == 1
    assert "".join(r.text for r in received) == text
    assert all(r.registered_delivery == 1 for r in received)


async def test_sar_concatenation_from_config(sim: SmscSimulator) -> None:
    setup = Harness(sim, concatenation="sar")
    await setup.link.start()
    try:
        [item] = setup.send(message("x" * 200))
        await setup.all_submitted([item])
        assert [r.concat.kind for r in sim.received if r.concat] == ["sar", "sar"]
        assert all(r.esm_class & 0x40 == 0 for r in sim.received)
    finally:
        await setup.link.stop()


async def test_too_many_parts_is_a_permanent_failure(sim: SmscSimulator) -> None:
    setup = Harness(sim, max_parts=2)
    await setup.link.start()
    try:
        [item] = setup.send(message("y" * 500))
        await wait_for(lambda: len(setup.sink.permanent) == 1, "a permanent failure")
        failed, failure = setup.sink.permanent[0]
        assert failed.id == item.id and failure.status is None and "parts" in failure.reason
        assert sim.received == []
    finally:
        await setup.link.stop()


async def test_carrier_refusal_is_permanent_with_the_status_and_sys_error_is_temporary() -> None:
    answers = iter([CommandStatus.ESME_RINVDSTADR, CommandStatus.ESME_RSYSERR])

    def policy(received: ReceivedSubmit) -> int:
        return next(answers, 0)

    async with SmscSimulator(sim_settings(), submit_policy=policy) as sim:
        setup = Harness(sim)
        await setup.link.start()
        try:
            first = setup.send(message("refused"))[0]
            await wait_for(lambda: len(setup.sink.permanent) == 1, "a permanent failure")
            second = setup.send(message("retried"))[0]
            await setup.all_submitted([second])
        finally:
            await setup.link.stop()
    failed, failure = setup.sink.permanent[0]
    assert failed.id == first.id and failure.status == CommandStatus.ESME_RINVDSTADR
    [(requeued, temporary)] = setup.sink.temporary
    assert requeued.id == second.id and temporary.status == CommandStatus.ESME_RSYSERR


async def test_reconnects_after_the_smsc_restarts_and_keeps_sending(sim: SmscSimulator) -> None:
    setup = Harness(sim)
    await setup.link.start()
    try:
        first = setup.send(message("before"))
        await setup.all_submitted(first)
        await sim.stop()
        await wait_for(lambda: setup.link.state is LinkState.DOWN, "the link down")
        during = setup.send(message("during the outage"))
        await wait_for(lambda: setup.link.stats.connect_failures >= 1, "a reconnect to fail")
        await sim.start()
        await setup.all_submitted(during)
        assert setup.link.state is LinkState.UP
        assert setup.link.stats.reconnects == 1
        assert setup.sink.states[-2:] == [LinkState.DOWN, LinkState.UP]
    finally:
        await setup.link.stop()
    assert setup.sink.states[-1] is LinkState.STOPPED


async def test_connection_lost_with_submits_in_flight_requeues_them(sim: SmscSimulator) -> None:
    setup = Harness(sim, window=5)
    await setup.link.start()
    try:
        await wait_for(lambda: setup.link.state is LinkState.UP, "the link up")
        sim.answer_submits = False
        sent = setup.send(*(message(f"hung {n}") for n in range(5)))
        await wait_for(lambda: sim.stats.unanswered == 5, "5 submits unanswered")
        sim.answer_submits = True
        sim.disconnect_all()
        await setup.all_submitted(sent)
    finally:
        await setup.link.stop()
    assert {m.id for m, _ in setup.sink.temporary} == {m.id for m in sent}
    assert all("connection lost" in f.reason for _, f in setup.sink.temporary)
    assert setup.sink.submit_reports == 5


async def test_window_bounds_submits_in_flight_over_all_sessions(sim: SmscSimulator) -> None:
    setup = Harness(sim, sessions=3, window=4, response_timeout=0.5)
    await setup.link.start()
    try:
        await wait_for(lambda: setup.link.stats.sessions_up == 3, "3 sessions up")
        sim.answer_submits = False
        sent = setup.send(*(message(f"w{n}") for n in range(40)))
        await wait_for(lambda: sim.stats.unanswered >= 12, "12 submits unanswered")
        await asyncio.sleep(0.2)
        assert sim.stats.unanswered == 12 and setup.link.stats.in_flight == 12
        sim.answer_submits = True  # the unanswered ones time out and come back
        await setup.all_submitted(sent)
    finally:
        await setup.link.stop()
    assert setup.link.stats.max_in_flight == 12
    assert setup.link.stats.timeouts == 12
    assert len(setup.sink.temporary) == 12


async def test_tps_is_honoured_across_sessions(sim: SmscSimulator) -> None:
    setup = Harness(sim, sessions=2, window=20, tps=150.0)
    await setup.link.start()
    try:
        sent = setup.send(*(message(f"t{n}") for n in range(375)))
        await setup.all_submitted(sent)
    finally:
        await setup.link.stop()
    stamps = sorted(r.at for r in sim.received)
    steady = stamps[25:]  # past the start-up burst allowance
    rate = (len(steady) - 1) / (steady[-1] - steady[0])
    assert 135.0 <= rate <= 165.0, rate


async def test_tps_counts_segments_not_messages(sim: SmscSimulator) -> None:
    setup = Harness(sim, tps=100.0)
    await setup.link.start()
    try:
        sent = setup.send(*(message("z" * 300) for _ in range(50)))  # 2 parts each
        await setup.all_submitted(sent)
    finally:
        await setup.link.stop()
    stamps = sorted(r.at for r in sim.received)[5:]
    rate = (len(stamps) - 1) / (stamps[-1] - stamps[0])
    assert 90.0 <= rate <= 110.0, rate


async def test_throttling_pauses_the_bind_and_loses_nothing() -> None:
    async with SmscSimulator(sim_settings(throttle_fraction=0.05), seed=11) as sim:
        setup = Harness(sim, window=10)
        await setup.link.start()
        try:
            sent = setup.send(*(message(f"th{n}") for n in range(600)))
            await setup.all_submitted(sent)
        finally:
            await setup.link.stop()
    stats = setup.link.stats
    assert stats.throttles == sim.stats.throttled > 0
    assert setup.sink.submit_reports == 600 and not setup.sink.temporary
    assert stats.responses[CommandStatus.ESME_RTHROTTLED] == stats.throttles
    accepted = [r.text for r in sim.received if r.status == 0]
    assert sorted(accepted) == sorted(m.text for m in sent)  # each exactly once


async def test_a_carrier_that_throttles_everything_is_backed_off_then_resumes() -> None:
    async with SmscSimulator(sim_settings(throttle_fraction=1.0)) as sim:
        setup = Harness(sim, window=5)
        await setup.link.start()
        try:
            sent = setup.send(*(message(f"b{n}") for n in range(10)))
            await wait_for(lambda: setup.link.throttle_level >= 0.1, "the link to back off")
            attempts_while_throttled = sim.stats.throttled
            await asyncio.sleep(0.3)
            # Backed off: pauses of 100 ms and more, not a tight retry loop.
            assert sim.stats.throttled - attempts_while_throttled <= 25
            sim.settings.throttle_fraction = 0.0
            await setup.all_submitted(sent)
        finally:
            await setup.link.stop()


async def test_bind_refused_is_retried_with_backoff_and_never_marks_the_link_up() -> None:
    async with SmscSimulator(sim_settings(system_id="tandem", password="other")) as sim:
        setup = Harness(sim)
        await setup.link.start()
        await asyncio.sleep(0.6)  # room for a retry loop without backoff to show
        await wait_for(lambda: setup.link.stats.bind_failures >= 2, "a second bind refused")
        await setup.link.stop()
    stats = setup.link.stats
    assert 2 <= stats.bind_failures <= 15  # backoff 50 ms doubling to 200 ms
    assert LinkState.UP not in setup.sink.states


async def test_mo_messages_reach_the_sink(harness: Harness) -> None:
    await wait_for(lambda: harness.link.state is LinkState.UP, "the link up")
    harness.sim.inject_mo("447700900555", "12345", "STOP", system_id="tandem")
    await wait_for(lambda: len(harness.sink.mos) == 1, "the MO")
    mo = harness.sink.mos[0]
    assert mo.text == "STOP" and mo.source == "447700900555" and mo.destination == "12345"
    assert harness.link.stats.mos == 1


async def test_stop_hands_back_messages_it_still_holds(sim: SmscSimulator) -> None:
    setup = Harness(sim, response_timeout=5.0)
    await setup.link.start()
    await wait_for(lambda: setup.link.state is LinkState.UP, "the link up")
    sim.answer_submits = False
    sent = setup.send(*(message(f"s{n}") for n in range(3)))
    await wait_for(lambda: sim.stats.unanswered == 3, "3 submits unanswered")
    await setup.link.stop(drain_seconds=0.1)
    assert {m.id for m, _ in setup.sink.temporary} == {m.id for m in sent}
    assert setup.link.state is LinkState.STOPPED


@pytest.fixture
def tls_certificate(tmp_path: Path) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    arguments = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-keyout"]
    arguments += [str(key), "-out", str(cert), "-subj", "/CN=localhost", "-addext"]
    arguments += ["subjectAltName=IP:127.0.0.1,DNS:localhost"]
    subprocess.run(
        [openssl, *arguments],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


async def test_tls_link_verifies_the_smsc_against_its_ca_file(
    tls_certificate: tuple[Path, Path],
) -> None:
    cert, key = tls_certificate
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    async with SmscSimulator(sim_settings(), tls=server_context) as sim:
        trusted = Harness(sim, tls=True, tls_ca_file=str(cert))
        await trusted.link.start()
        try:
            [item] = trusted.send(message("over TLS"))
            await trusted.all_submitted([item])
        finally:
            await trusted.link.stop()
        untrusted = Harness(sim, tls=True)  # system CAs do not know this certificate
        await untrusted.link.start()
        await wait_for(lambda: untrusted.link.stats.connect_failures >= 1, "the TLS refusal")
        await untrusted.link.stop()
    assert [r.text for r in sim.received] == ["over TLS"]
    assert untrusted.link.stats.connect_failures >= 1
    assert LinkState.UP not in untrusted.sink.states


async def test_a_silent_smsc_is_detected_by_enquire_link_and_reconnected() -> None:
    """A peer that answers the bind and then nothing (not even enquire_link) is dropped after
    enquire_link_interval + response_timeout, and the link binds again."""
    binds = 0

    async def silent_smsc(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal binds
        decoder = PduDecoder(65536)
        try:
            while data := await reader.read(4096):
                for pdu in decoder.feed(data):
                    if isinstance(pdu, BindTransceiver):
                        binds += 1
                        writer.write(encode(pdu.response(system_id="silent")))
        finally:
            writer.close()

    server = await asyncio.start_server(silent_smsc, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    queue = AsyncSendQueue(on_expired=lambda expired: None)
    sink = RecordingSink(queue)
    config = link_config(port, enquire_link_interval=0.2, response_timeout=0.3)
    link = build_link(config, queue, sink)
    await link.start()
    try:
        # Up, down when the probe goes unanswered, up again. (On a busy machine the first bind
        # may itself time out at 0.3 s; the sequence is the same from the bind that succeeds.)
        await wait_for(lambda: len(sink.states) >= 4, "up, down and up again")
        assert sink.states[:4] == [LinkState.STARTING, LinkState.UP, LinkState.DOWN, LinkState.UP]
        assert binds >= 2
        assert link.stats.reconnects >= 1
    finally:
        await link.stop()
        server.close()
        await server.wait_closed()


async def test_a_part_refused_after_another_was_accepted_reports_the_accepted_part() -> None:
    def refuse_second_part(received: ReceivedSubmit) -> int:
        second = received.concat is not None and received.concat.index == 2
        return CommandStatus.ESME_RSUBMITFAIL if second else 0

    async with SmscSimulator(sim_settings(), submit_policy=refuse_second_part) as sim:
        setup = Harness(sim)
        await setup.link.start()
        try:
            [item] = setup.send(message("p" * 200))
            await wait_for(lambda: len(setup.sink.permanent) == 1, "a permanent failure")
        finally:
            await setup.link.stop()
    failed, failure = setup.sink.permanent[0]
    assert failed.id == item.id and failure.status == CommandStatus.ESME_RSUBMITFAIL
    [accepted] = failure.submitted
    assert (accepted.index, accepted.total) == (0, 2)
    assert accepted.raw_id == sim.received[0].message_id
