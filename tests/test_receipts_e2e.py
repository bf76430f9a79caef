"""Delivery receipts through the whole daemon: the real Gateway (SQLite store in a temp dir), its
SMPP link and SMSC simulators on 127.0.0.1.

What is shown: every carrier id mode (hex, decimal, opaque strings, hex answers with decimal
receipts, leading zeros and case), receipts before their submit_sm_resp (held, bounded in count and
time, applied when the answer lands), duplicate and out-of-order receipts, multipart messages
with mixed outcomes, receipts for ids nobody sent, a restart between submit and receipt, and the
DLR timeout (unknown, or expired once the validity passed)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from dlr.aggregate import ReportMode
from dlr.ids import MessageIdFormat, canonical_message_id
from dlr.receipt import DeliveryReceipt
from dlr.status import MessageStatus, SegmentStatus, StatusSource
from gateway.app import Gateway
from gateway.config import SimulatorConfig, TandemConfig
from gateway.intake import MessageRequest
from gateway.keys import create_key
from gateway.links.base import SubmittedSegment
from gateway.links.smpp_client import receipt_report
from gateway.messages import Channel, Message
from gateway.simulator import SmscSimulator
from gateway.simulator_records import (
    DELIVERED,
    UNDELIVERABLE,
    IdText,
    OutcomePolicy,
    ReceiptOutcome,
    ReceivedSubmit,
)
from gateway.store.base import MessageRecord, StatusChange
from smpp.constants import ESM_CLASS_DELIVERY_RECEIPT
from tests.test_http_harness import LOCAL_RECEIVERS
from tests.waiting import WAIT, wait_for

DESTINATION = "+447911123456"  # a valid UK mobile number
LINK = "carrier"
# 400 GSM 7-bit characters: three UDH parts of at most 153.
THREE_PART_TEXT = ("Your parcel is on its way. " * 15)[:400]


@dataclass
class Daemon:
    gateway: Gateway
    simulator: SmscSimulator

    async def send(self, text: str = "hello", **fields: Any) -> str:
        request = MessageRequest(
            account="acme", channel=Channel.HTTP, to=DESTINATION, text=text, **fields
        )
        prepared = await self.gateway.intake.accept([request])
        return prepared[0].message.id

    async def record(self, message_id: str) -> MessageRecord:
        record = await self.gateway.message_store.get(message_id)
        assert record is not None
        return record

    async def wait_status(
        self, message_id: str, status: MessageStatus, timeout: float = WAIT
    ) -> MessageRecord:
        seen: list[MessageRecord] = []

        async def reached() -> bool:
            seen[:] = [await self.record(message_id)]
            return seen[0].message.status is status

        def last_seen() -> str:
            record = seen[0]
            parts = [(s.index, s.status) for s in record.segments]
            return f"{message_id} to be {status} (it is {record.message.status}: {parts})"

        await wait_for(reached, last_seen, timeout=timeout, interval=0.02)
        return seen[0]

    async def wait_receipts_answered(self, count: int) -> None:
        """The link answers a receipt only after the daemon applied it (or held it)."""
        await wait_for(
            lambda: self.simulator.stats.receipts_sent >= count, f"{count} receipts answered"
        )


def simulator_settings(**fields: Any) -> SimulatorConfig:
    base: dict[str, Any] = {"enabled": True, "host": "127.0.0.1", "port": 0, "dlr_delay": 0.0}
    return SimulatorConfig(**{**base, **fields})


def daemon_config(
    data_dir: Path, port: int, *, link: dict[str, Any] | None = None, **sections: Any
) -> TandemConfig:
    return TandemConfig.model_validate(
        {
            "data_dir": str(data_dir),
            "smpp_server": {"enabled": False},
            "http": {"enabled": False},
            "links": [
                {
                    "type": "smpp",
                    "name": LINK,
                    "host": "127.0.0.1",
                    "port": port,
                    "system_id": "tandem",
                    "window": 50,
                    "submit_id_format": "hex",
                    "dlr_id_format": "hex",
                    "reconnect_initial": 0.1,
                    "reconnect_max": 0.5,
                    **(link or {}),
                }
            ],
            "routes": [{"name": "all", "priority": 100, "targets": [LINK]}],
            **sections,
        }
    )


async def start_gateway(
    data_dir: Path, simulator: SmscSimulator, *, link: dict[str, Any] | None = None, **sections: Any
) -> Gateway:
    gateway = Gateway(daemon_config(data_dir, simulator.port, link=link, **sections))
    await gateway.start()
    await wait_for(lambda: "tandem" in simulator.bound_system_ids, "the link to bind")
    return gateway


@pytest.fixture
async def daemons(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """`await daemons(settings=..., outcome_policy=..., id_text=..., link=..., dlr=...)`: a
    simulator and a Gateway bound to it; both are stopped after the test."""
    created: list[Daemon] = []

    async def make(
        *,
        settings: SimulatorConfig | None = None,
        outcome_policy: OutcomePolicy | None = None,
        id_text: IdText | None = None,
        link: dict[str, Any] | None = None,
        **sections: Any,
    ) -> Daemon:
        simulator = SmscSimulator(
            settings or simulator_settings(), outcome_policy=outcome_policy, id_text=id_text
        )
        await simulator.start()
        try:
            gateway = await start_gateway(tmp_path / "data", simulator, link=link, **sections)
        except BaseException:
            await simulator.stop()
            raise
        daemon = Daemon(gateway, simulator)
        created.append(daemon)
        return daemon

    yield make
    for daemon in created:
        await daemon.gateway.stop()
        await daemon.simulator.stop()


def by_part(outcomes: dict[int, ReceiptOutcome]) -> OutcomePolicy:
    """Receipt outcome per UDH part number (1-based); single-part messages are delivered."""

    def policy(received: ReceivedSubmit) -> ReceiptOutcome:
        if received.concat is None:
            return DELIVERED
        return outcomes.get(received.concat.index, DELIVERED)

    return policy


ENROUTE = ReceiptOutcome(SegmentStatus.ENROUTE)
EXPIRED = ReceiptOutcome(SegmentStatus.EXPIRED, error=27)


# --- id modes -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class IdMode:
    submit_id_format: str
    dlr_id_format: str
    id_text: IdText

    def link(self) -> dict[str, Any]:
        return {"submit_id_format": self.submit_id_format, "dlr_id_format": self.dlr_id_format}


def _written(resp: Callable[[int], str], receipt: Callable[[int], str]) -> IdText:
    return lambda number, what: resp(number) if what == "submit_sm_resp" else receipt(number)


ID_MODES = {
    "hex": IdMode("hex", "hex", _written(lambda n: f"{n:X}", lambda n: f"{n:X}")),
    "decimal": IdMode("dec", "dec", _written(str, str)),
    "string": IdMode("str", "str", _written(lambda n: f"SMSC-{n}-aB", lambda n: f"SMSC-{n}-aB")),
    # The classic mismatch: the answer in hex, the receipt text in decimal.
    "hex answer, decimal receipt": IdMode("hex", "dec", _written(lambda n: f"{n:X}", str)),
    # Leading zeros and lower case on one side, upper case on the other.
    "zero-padded lower-case hex, zero-padded decimal": IdMode(
        "hex", "dec", _written(lambda n: f"{n:016x}", lambda n: f"{n:020d}")
    ),
    "upper-case hex answer, lower-case 0x receipt": IdMode(
        "hex", "hex", _written(lambda n: f"{n:X}", lambda n: f"0x{n:012x}")
    ),
}


@pytest.mark.parametrize("mode", ID_MODES.values(), ids=ID_MODES.keys())
async def test_receipts_correlate_in_every_carrier_id_mode(
    daemons: Callable[..., Any], mode: IdMode
) -> None:
    daemon: Daemon = await daemons(id_text=mode.id_text, link=mode.link())
    message_ids = [await daemon.send(f"message {n}") for n in range(5)]
    for message_id in message_ids:
        record = await daemon.wait_status(message_id, MessageStatus.DELIVERED)
        (segment,) = record.segments
        assert segment.status is SegmentStatus.DELIVERED
        assert segment.link == LINK
        assert any(
            entry.event.source is StatusSource.RECEIPT and entry.segment_index == 0
            for entry in record.history
        )
    written = {received.message_id for received in daemon.simulator.received}
    stored = {(await daemon.record(m)).segments[0].carrier_id for m in message_ids}
    fmt = MessageIdFormat(mode.submit_id_format)
    assert stored == {canonical_message_id(text, fmt) for text in written}
    assert daemon.gateway.stats.receipts == 5
    assert daemon.gateway.stats.receipts_unmatched == 0
    assert daemon.gateway.correlator.stats.held == 0


async def test_a_string_id_link_does_not_fold_case_or_zeros(daemons: Callable[..., Any]) -> None:
    """Under `str` the id is opaque: a receipt differing only in case matches nothing."""
    mode = _written(lambda n: f"ab{n}", lambda n: f"AB{n}")
    daemon: Daemon = await daemons(
        id_text=mode,
        link={"submit_id_format": "str", "dlr_id_format": "str"},
        dlr={"hold_seconds": 0.3},
    )
    message_id = await daemon.send()
    await daemon.wait_receipts_answered(1)
    await wait_for(
        lambda: daemon.gateway.stats.receipts_unmatched == 1, "the receipt to be dropped"
    )
    record = await daemon.record(message_id)
    assert record.message.status is MessageStatus.SUBMITTED


# --- receipts before the submit_sm_resp ----------------------------------------------------------


async def test_dlr_before_submit_resp_is_held_then_applied_when_the_resp_arrives(
    daemons: Callable[..., Any],
) -> None:
    daemon: Daemon = await daemons(
        settings=simulator_settings(
            receipt_mode="before-resp", message_id_format="hex", dlr_id_format="dec"
        ),
        link={"submit_id_format": "hex", "dlr_id_format": "dec"},
    )
    message_ids = [await daemon.send(f"early {n}") for n in range(10)]
    for message_id in message_ids:
        record = await daemon.wait_status(message_id, MessageStatus.DELIVERED)
        sources = [entry.event.source for entry in record.history if entry.segment_index == 0]
        # Applied after the submit result although it came first on the wire.
        assert sources.index(StatusSource.SUBMIT_RESP) < sources.index(StatusSource.RECEIPT)
    correlator = daemon.gateway.correlator.stats
    # A receipt read in the same TCP read as its response is recorded after it (receipts are
    # recorded once per turn of the loop); one that misses the store waits in the hold or meets
    # the submit result just recorded. Either way none is lost or left waiting.
    assert correlator.applied_after_hold == daemon.gateway.stats.receipts_held
    assert correlator.held == 0
    assert daemon.gateway.stats.receipts_unmatched == 0


@pytest.mark.parametrize("mode", ["same-write", "before-resp"])
async def test_receipts_written_with_their_submit_results_never_wait_in_the_hold(
    daemons: Callable[..., Any], mode: str
) -> None:
    """An SMSC that writes each receipt in the same write as its submit_sm_resp (behind it or
    before it), under a full window: every receipt is recorded behind its own submit result in
    one store op; none waits for a submit result in the early-receipt hold."""
    daemon: Daemon = await daemons(settings=simulator_settings(receipt_mode=mode))
    requests = [
        MessageRequest(account="acme", channel=Channel.HTTP, to=DESTINATION, text=f"m {n}")
        for n in range(400)
    ]
    prepared = await daemon.gateway.intake.accept(requests)
    for item in prepared:
        await daemon.wait_status(item.message.id, MessageStatus.DELIVERED)
    assert daemon.gateway.stats.receipts == 400
    assert daemon.gateway.stats.receipts_held == 0
    assert daemon.gateway.correlator.stats.held == 0


async def test_a_receipt_read_with_its_submit_result_finds_it_without_the_hold(
    daemons: Callable[..., Any],
) -> None:
    """A receipt read in the same TCP read as its submit_sm_resp is handed over first (the
    response's callback runs a moment later), yet the submit result reaches the store first:
    the receipt finds its carrier id and never waits in the early-receipt hold."""
    daemon: Daemon = await daemons(settings=simulator_settings(dlr_delay=60.0))
    gateway = daemon.gateway
    request = MessageRequest(account="acme", channel=Channel.HTTP, to=DESTINATION, text="x")
    message = gateway.intake.prepare(request).message
    await gateway.message_store.accept([message])  # stored, not queued: no link sends it
    body = (
        b"id:same-read sub:001 dlvrd:001 submit date:2611220900 done date:2611220901"
        b" stat:DELIVRD err:000 text:"
    )
    receipt = DeliveryReceipt.parse(body, {}, ESM_CLASS_DELIVERY_RECEIPT)

    # The order of one read: the receipt is handled, then the response's callback reports.
    recorded = gateway.on_receipt(LINK, receipt_report(receipt, "same-read"))
    submitted = gateway.on_submitted(
        LINK, message, [SubmittedSegment(0, 1, "same-read", "same-read")]
    )
    assert recorded is not None
    await asyncio.gather(recorded, submitted)

    assert gateway.stats.receipts_held == 0
    record = await daemon.record(message.id)
    assert record.message.status is MessageStatus.DELIVERED
    sources = [entry.event.source for entry in record.history if entry.segment_index == 0]
    assert sources.index(StatusSource.SUBMIT_RESP) < sources.index(StatusSource.RECEIPT)


async def test_a_receipt_held_before_its_submit_is_applied_when_the_submit_result_lands(
    daemons: Callable[..., Any],
) -> None:
    """The hold's other half, step by step: a receipt for a carrier id not yet known waits;
    the submit_sm_resp that brings the id (seconds later) applies it after the submit."""
    daemon: Daemon = await daemons(
        settings=simulator_settings(dlr_delay=60.0),  # the simulator's own receipt comes too late
        id_text=lambda number, kind: "early-id",
        link={"submit_id_format": "str", "dlr_id_format": "str"},
        dlr={"hold_seconds": 30.0},
    )
    body = (
        b"id:early-id sub:001 dlvrd:001 submit date:2611220900 done date:2611220901"
        b" stat:DELIVRD err:000 text:"
    )
    receipt = DeliveryReceipt.parse(body, {}, ESM_CLASS_DELIVERY_RECEIPT)
    recorded = daemon.gateway.on_receipt(LINK, receipt_report(receipt, "early-id"))
    assert recorded is not None
    await wait_for(lambda: daemon.gateway.stats.receipts_held == 1, "the receipt to be held")
    assert daemon.gateway.correlator.stats.held == 1
    # Only memory holds it: the carrier is not told we have it (it would offer it again).
    assert not asyncio.ensure_future(recorded).done()

    message_id = await daemon.send("late submit")
    await asyncio.wait_for(recorded, WAIT)  # answered once recorded behind its submit result
    record = await daemon.record(message_id)
    assert record.message.status is MessageStatus.DELIVERED
    sources = [entry.event.source for entry in record.history if entry.segment_index == 0]
    assert sources.index(StatusSource.SUBMIT_RESP) < sources.index(StatusSource.RECEIPT)
    assert daemon.gateway.correlator.stats.applied_after_hold == 1
    assert daemon.gateway.correlator.stats.held == 0


async def test_the_early_receipt_hold_is_bounded_in_count_and_in_time(
    daemons: Callable[..., Any],
) -> None:
    daemon: Daemon = await daemons(dlr={"hold_max": 2, "hold_seconds": 1.0})
    for n in range(5):
        daemon.simulator.inject_receipt(f"{0xABC000 + n:X}")
    stats = daemon.gateway.stats
    await wait_for(lambda: stats.receipts_held == 5, "five receipts held in turn")
    # The hold keeps two; the three oldest were pushed out, and only those are answered yet.
    await daemon.wait_receipts_answered(3)
    assert stats.receipts_unmatched == 3
    assert daemon.gateway.correlator.stats.held == 2
    await wait_for(lambda: stats.receipts_unmatched == 5, "the hold time to drop the rest")
    await daemon.wait_receipts_answered(5)
    assert daemon.gateway.correlator.stats.held == 0


# --- duplicates, out of order, unknown ---------------------------------------------------------


async def test_duplicate_and_out_of_order_receipts_never_undo_a_final_status(
    daemons: Callable[..., Any],
) -> None:
    daemon: Daemon = await daemons()
    message_id = await daemon.send()
    await daemon.wait_status(message_id, MessageStatus.DELIVERED)
    carrier_text = daemon.simulator.received[0].message_id
    daemon.simulator.inject_receipt(carrier_text, DELIVERED)  # duplicate
    daemon.simulator.inject_receipt(carrier_text, ENROUTE)  # an intermediate one, late
    daemon.simulator.inject_receipt(carrier_text, UNDELIVERABLE)  # contradicts the final one
    await daemon.wait_receipts_answered(4)
    record = await daemon.record(message_id)
    assert record.message.status is MessageStatus.DELIVERED
    assert record.segments[0].status is SegmentStatus.DELIVERED
    receipts = [e.event for e in record.history if e.event.source is StatusSource.RECEIPT]
    # All four are kept in the history; only the first changed anything.
    assert [event.changed for event in receipts] == [True, False, False, False]
    assert daemon.gateway.stats.receipts_unmatched == 0


async def test_an_intermediate_receipt_is_overtaken_by_the_final_one(
    daemons: Callable[..., Any],
) -> None:
    daemon: Daemon = await daemons(outcome_policy=lambda received: ENROUTE)
    message_id = await daemon.send()
    await daemon.wait_status(message_id, MessageStatus.ENROUTE)
    daemon.simulator.inject_receipt(daemon.simulator.received[0].message_id, UNDELIVERABLE)
    record = await daemon.wait_status(message_id, MessageStatus.UNDELIVERABLE)
    assert record.segments[0].status is SegmentStatus.UNDELIVERABLE


async def test_receipts_for_ids_nobody_sent_are_counted_dropped_and_harmless(
    daemons: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    daemon: Daemon = await daemons(dlr={"hold_seconds": 0.3})
    for unknown in ("DEADBEEF", "1", "FFFFFFFFFFFF"):
        daemon.simulator.inject_receipt(unknown, DELIVERED)
    await daemon.wait_receipts_answered(3)
    stats = daemon.gateway.stats
    await wait_for(lambda: stats.receipts_unmatched == 3, "the unknown receipts to be dropped")
    assert stats.receipts == 3
    logged = [r.getMessage() for r in caplog.records if "matched no message" in r.getMessage()]
    assert len(logged) == 3
    assert any("carrier id 3735928559 " in line for line in logged)  # DEADBEEF, canonical
    # The session survived them: the next message goes out and is delivered as usual.
    message_id = await daemon.send()
    await daemon.wait_status(message_id, MessageStatus.DELIVERED)
    assert daemon.simulator.stats.connections_total == 1
    assert stats.receipts_unmatched == 3


# --- multipart ----------------------------------------------------------------------------------


async def test_every_part_asks_for_a_receipt_and_a_failed_part_fails_the_message(
    daemons: Callable[..., Any],
) -> None:
    daemon: Daemon = await daemons(outcome_policy=by_part({2: UNDELIVERABLE}))
    message_id = await daemon.send(THREE_PART_TEXT)
    await daemon.wait_receipts_answered(3)
    record = await daemon.wait_status(message_id, MessageStatus.UNDELIVERABLE)
    assert [received.concat.index for received in daemon.simulator.received if received.concat] == [
        1,
        2,
        3,
    ]
    assert all(received.registered_delivery & 0x03 == 1 for received in daemon.simulator.received)
    assert [segment.status for segment in record.segments] == [
        SegmentStatus.DELIVERED,
        SegmentStatus.UNDELIVERABLE,
        SegmentStatus.DELIVERED,
    ]
    assert len({segment.carrier_id for segment in record.segments}) == 3


async def test_a_multipart_message_is_delivered_only_when_its_last_part_is(
    daemons: Callable[..., Any],
) -> None:
    daemon: Daemon = await daemons(outcome_policy=by_part({3: ENROUTE}))
    message_id = await daemon.send(THREE_PART_TEXT)
    await daemon.wait_receipts_answered(3)
    record = await daemon.record(message_id)
    assert [segment.status for segment in record.segments] == [
        SegmentStatus.DELIVERED,
        SegmentStatus.DELIVERED,
        SegmentStatus.ENROUTE,
    ]
    assert record.message.status is MessageStatus.ENROUTE
    third = next(r for r in daemon.simulator.received if r.concat and r.concat.index == 3)
    daemon.simulator.inject_receipt(third.message_id, DELIVERED)
    await daemon.wait_status(message_id, MessageStatus.DELIVERED)


async def test_the_first_failed_part_decides_the_status_of_a_multipart_message(
    daemons: Callable[..., Any],
) -> None:
    daemon: Daemon = await daemons(outcome_policy=by_part({1: ENROUTE, 3: UNDELIVERABLE}))
    message_id = await daemon.send(THREE_PART_TEXT)
    await daemon.wait_receipts_answered(3)
    await daemon.wait_status(message_id, MessageStatus.UNDELIVERABLE)
    first = next(r for r in daemon.simulator.received if r.concat and r.concat.index == 1)
    daemon.simulator.inject_receipt(first.message_id, EXPIRED)  # a later, different failure
    await daemon.wait_receipts_answered(4)
    record = await daemon.record(message_id)
    assert [segment.status for segment in record.segments] == [
        SegmentStatus.EXPIRED,
        SegmentStatus.DELIVERED,
        SegmentStatus.UNDELIVERABLE,
    ]
    assert record.message.status is MessageStatus.UNDELIVERABLE


# --- restart ------------------------------------------------------------------------------------


async def test_a_receipt_arriving_after_a_restart_is_applied_from_the_stored_carrier_ids(
    tmp_path: Path,
) -> None:
    """The first run binds as a transmitter, so the SMSC keeps the receipt for the system id
    until the second run binds to receive; correlation comes from the store alone."""
    data_dir = tmp_path / "data"
    async with SmscSimulator(
        simulator_settings(message_id_format="hex", dlr_id_format="dec")
    ) as simulator:
        formats = {"submit_id_format": "hex", "dlr_id_format": "dec"}
        first = await start_gateway(data_dir, simulator, link={**formats, "bind": "transmitter"})
        request = MessageRequest(
            account="acme", channel=Channel.HTTP, to=DESTINATION, text=THREE_PART_TEXT
        )
        message_id = (await first.intake.accept([request]))[0].message.id
        await wait_for(lambda: simulator.stats.receipts_queued == 3, "the three receipts queued")
        await wait_for(lambda: first.stats.submitted == 1, "the submit results recorded")
        await first.stop()
        assert simulator.stats.receipts_sent == 0
        assert simulator.pending_deliveries() == 3

        second = await start_gateway(data_dir, simulator, link=formats)
        try:
            await wait_for(lambda: simulator.stats.receipts_sent == 3, "the receipts delivered")
            record = await second.message_store.get(message_id)
            assert record is not None
            assert record.message.status is MessageStatus.DELIVERED
            assert all(s.status is SegmentStatus.DELIVERED for s in record.segments)
            assert second.stats.receipts_held == 0
            assert second.stats.receipts_unmatched == 0
            assert simulator.stats.accepted == 3  # nothing was sent twice
        finally:
            await second.stop()


# --- DLR timeout --------------------------------------------------------------------------------


async def test_no_final_receipt_within_the_link_dlr_timeout_makes_the_message_unknown(
    daemons: Callable[..., Any],
) -> None:
    daemon: Daemon = await daemons(
        settings=simulator_settings(dlr_delay=3600.0), link={"dlr_timeout": 0.5}
    )
    message_id = await daemon.send()
    record = await daemon.wait_status(message_id, MessageStatus.UNKNOWN)
    assert record.segments[0].status is SegmentStatus.UNKNOWN
    assert any(entry.event.source is StatusSource.TIMEOUT for entry in record.history)
    await wait_for(lambda: daemon.gateway.stats.dlr_timeouts == 1, "the timeout to be counted")
    # A definitive receipt still replaces UNKNOWN when it finally comes.
    daemon.simulator.inject_receipt(daemon.simulator.received[0].message_id, DELIVERED)
    await daemon.wait_status(message_id, MessageStatus.DELIVERED)


async def test_no_final_receipt_after_the_validity_passed_makes_the_message_expired(
    daemons: Callable[..., Any],
) -> None:
    daemon: Daemon = await daemons(
        settings=simulator_settings(dlr_delay=3600.0), link={"dlr_timeout": 2.0}
    )
    message_id = await daemon.send(validity_at=time.time() + 1.5)
    await daemon.wait_status(message_id, MessageStatus.SUBMITTED)
    record = await daemon.wait_status(message_id, MessageStatus.EXPIRED)
    assert record.segments[0].status is SegmentStatus.EXPIRED
    # The receipt sweep expired it (the validity sweep expires only messages not yet sent).
    assert any(
        entry.segment_index == 0
        and entry.event.status is SegmentStatus.EXPIRED
        and entry.event.source is StatusSource.TIMEOUT
        and "no final receipt" in entry.event.detail
        for entry in record.history
    )
    # The sweep counts the timeout once the store has the status: a reader may see EXPIRED
    # a moment before the count.
    await wait_for(lambda: daemon.gateway.stats.dlr_timeouts == 1, "the timeout to be counted")


# --- what customers are told about a multipart message ------------------------------------------


class StatusRecorder:
    """A status listener, as the SMPP server and the HTTP callbacks are: keeps what it is told."""

    def __init__(self) -> None:
        self.told: list[tuple[MessageStatus, int | None]] = []

    def message_status_changed(self, message: Message, change: StatusChange) -> None:
        index = change.segment.index if change.segment is not None else None
        self.told.append((message.status, index))


async def test_message_reporting_tells_a_multipart_outcome_once(
    daemons: Callable[..., Any],
) -> None:
    daemon: Daemon = await daemons(outcome_policy=by_part({1: UNDELIVERABLE}))
    recorder = StatusRecorder()
    daemon.gateway.status_listeners.append(recorder)
    message_id = await daemon.send(THREE_PART_TEXT)
    await daemon.wait_receipts_answered(3)
    record = await daemon.wait_status(message_id, MessageStatus.UNDELIVERABLE)
    assert [s.status for s in record.segments][1:] == [SegmentStatus.DELIVERED] * 2
    finals = [status for status, _ in recorder.told if status is not MessageStatus.SUBMITTED]
    # The two parts delivered after the failure change no status a customer sees.
    assert finals == [MessageStatus.UNDELIVERABLE]


async def test_segment_reporting_tells_each_part_outcome(daemons: Callable[..., Any]) -> None:
    daemon: Daemon = await daemons(
        outcome_policy=by_part({2: UNDELIVERABLE}), dlr={"report": "segment"}
    )
    assert daemon.gateway.config.dlr.report is ReportMode.SEGMENT
    recorder = StatusRecorder()
    daemon.gateway.status_listeners.append(recorder)
    message_id = await daemon.send(THREE_PART_TEXT)
    await daemon.wait_receipts_answered(3)
    await daemon.wait_status(message_id, MessageStatus.UNDELIVERABLE)
    await wait_for(lambda: len(recorder.told) >= 4, "four reports")
    per_part = sorted((index, status) for status, index in recorder.told if index is not None)
    assert [item for item in per_part if item[1] is not MessageStatus.SUBMITTED] == [
        (0, MessageStatus.DELIVERED),
        (1, MessageStatus.UNDELIVERABLE),
        (2, MessageStatus.DELIVERED),
    ]


async def test_segment_reporting_posts_a_callback_per_part(
    tmp_path: Path, unused_tcp_port: int
) -> None:
    """The real HTTP callback sender, to a real endpoint, with `[dlr] report = "segment"`."""
    bodies: list[dict[str, Any]] = []

    async def receive(request: web.Request) -> web.Response:
        bodies.append(json.loads(await request.read()))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/dlr", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", unused_tcp_port).start()
    simulator = SmscSimulator(simulator_settings(), outcome_policy=by_part({3: UNDELIVERABLE}))
    await simulator.start()
    gateway = await start_gateway(
        tmp_path / "data",
        simulator,
        http={"enabled": True, "host": "127.0.0.1", "port": 0},
        dlr={"report": "segment"},
        egress=LOCAL_RECEIVERS,
    )
    try:
        daemon = Daemon(gateway, simulator)
        await create_key(gateway.message_store, "acme")  # HTTP messages are a key's: it signs
        url = f"http://127.0.0.1:{unused_tcp_port}/dlr"
        message_id = await daemon.send(THREE_PART_TEXT, callback_url=url)
        await daemon.wait_status(message_id, MessageStatus.UNDELIVERABLE)
        await wait_for(lambda: len(bodies) == 3, "a callback per part")
        assert {body["message_id"] for body in bodies} == {message_id}
        assert sorted(body["status"] for body in bodies) == [
            "delivered",
            "delivered",
            "undeliverable",
        ]
    finally:
        await gateway.stop()
        await simulator.stop()
        await runner.cleanup()
