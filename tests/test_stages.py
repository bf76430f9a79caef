"""Per-stage latency: the histograms' arithmetic, and a daemon that records every stage of a
message's way (accept to receipt) when `stage_times` is on, the exporter's latency without
marks when `[metrics] latency` is, and nothing when both are off."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from dlr.status import MessageStatus
from gateway import stages
from gateway.stages import BOUNDS, Histogram, StageTimes, from_snapshot, table
from tests.test_receipts_e2e import Daemon, daemons, simulator_settings
from tests.waiting import wait_for

__all__ = ["daemons"]  # the fixture, used below


def test_buckets_count_where_prometheus_would_and_quantiles_interpolate() -> None:
    histogram = Histogram()
    for _ in range(90):
        histogram.observe(0.0015)  # in (1 ms, 2 ms]
    histogram.observe(0.002)  # on a bound: counted in it, as `le` says
    histogram.observe(0.03, times=9)  # (20 ms, 50 ms], nine times at once
    assert histogram.count == 100
    assert histogram.counts[BOUNDS.index(0.002)] == 91
    assert histogram.counts[BOUNDS.index(0.05)] == 9
    assert 0.001 < histogram.quantile(0.5) <= 0.002
    assert 0.02 < histogram.quantile(0.99) <= 0.05
    assert histogram.largest == 0.03
    assert histogram.mean == pytest.approx((90 * 0.0015 + 0.002 + 9 * 0.03) / 100)
    histogram.observe(1_000.0)
    assert histogram.counts[-1] == 1  # beyond the last bound: +Inf


def test_a_snapshot_survives_json_and_reads_back_the_same() -> None:
    recorder = StageTimes()
    recorder.observe("queue_wait", 0.004, times=3)
    recorder.start("callback", "m1")
    recorder.stop("callback", "m1")
    recorder.stop("callback", "never-started")  # nothing to measure: ignored
    snapshot = json.loads(json.dumps(recorder.snapshot()))
    again = from_snapshot(snapshot["queue_wait"])
    assert again.counts == recorder.histograms["queue_wait"].counts
    assert again.count == 3 and again.total == pytest.approx(0.012)
    assert snapshot["callback"]["count"] == 1
    report = table(snapshot)
    assert report.splitlines()[0].split()[:2] == ["stage", "count"]
    assert [line.split()[0] for line in report.splitlines()[1:]] == list(stages.STAGES)


@pytest.fixture
def recorder() -> AsyncIterator[None]:
    yield
    stages.disable()


async def test_a_daemon_records_every_stage_from_accept_to_receipt(
    daemons: Callable[..., Any], recorder: None
) -> None:
    assert stages.recording() is None
    daemon: Daemon = await daemons(
        settings=simulator_settings(receipt_mode="same-write"), stage_times=True
    )
    recording = stages.recording()
    assert recording is not None
    ids = [await daemon.send(f"m {n}") for n in range(20)]
    for message_id in ids:
        await daemon.wait_status(message_id, MessageStatus.DELIVERED)
    # A commit's stage is observed when the link hears of the commit, which may be a moment
    # after a reader of the store sees the row.
    committed = ("result_commit", "receipt_commit")
    await wait_for(
        lambda: all(recording.histograms[stage].count >= 20 for stage in committed),
        "the last commits observed",
    )
    counts = {stage: h.count for stage, h in recording.histograms.items()}
    for stage in ("accept_commit", "queue_wait", "submit_round_trip", "result_commit"):
        assert counts[stage] == 20, stage
    assert counts["slot_wait"] >= 20
    assert counts["receipt_commit"] == 20
    assert counts["callback"] == 0  # no HTTP callbacks in this daemon


async def test_nothing_is_recorded_when_off(daemons: Callable[..., Any], tmp_path: Path) -> None:
    daemon: Daemon = await daemons(
        settings=simulator_settings(receipt_mode="same-write"), metrics={"latency": False}
    )
    await daemon.wait_status(await daemon.send(), MessageStatus.DELIVERED)
    assert stages.recording() is None


async def test_the_exporters_latency_keeps_no_mark_per_message(
    daemons: Callable[..., Any],
) -> None:
    """`[metrics] latency` (on by default) records the stages measured in one place, and
    neither the marks of queue_wait nor their histogram; the daemon's stop turns it off."""
    daemon: Daemon = await daemons(settings=simulator_settings(receipt_mode="same-write"))
    recording = stages.recording()
    assert recording is not None and not recording.marks
    ids = [await daemon.send(f"m {n}") for n in range(5)]
    for message_id in ids:
        await daemon.wait_status(message_id, MessageStatus.DELIVERED)
    assert recording.histograms["submit_round_trip"].count == 5
    assert recording.histograms["accept_commit"].count == 5
    assert recording.histograms["queue_wait"].count == 0
    assert not any(recording._marks.values())
    await daemon.gateway.stop()
    assert stages.recording() is None
