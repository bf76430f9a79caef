"""Where each message waits: one latency histogram per stage of its way through the daemon.

Owns `StageTimes` (a histogram per stage: fixed buckets, 1-2-5 per decade from 10 µs to 100 s,
with count, sum and maximum, in the shape a Prometheus histogram takes), the stages' names, and
the module's switch: `enable()` starts recording, `recording()` is the recorder or None.

The stages, in the order a message meets them:
- accept_commit: the store's commit of a new message (intake waits for it before answering);
- queue_wait: from being queued for a link to a link's sender taking it;
- slot_wait: a link's sender waiting, before it takes a message, for its window and for the
  daemon to record earlier outcomes (at most `window` unrecorded per bind);
- submit_round_trip: submit_sm written to submit_sm_resp read;
- result_commit: submit_sm_resp read to its result committed (the bind's slot is then free);
- receipt_commit: deliver_sm read to the receipt committed (then deliver_sm_resp goes out);
- callback: a final status known to the HTTP callback answered 2xx by the customer.
And inside every commit above (the SQLite store): store_queue, a write request waiting for the
writer (behind the batches out); writer_batch, a batch sent to the writer until its answer is
read (one per batch, not per message).

Never does: cost anything when off. Call sites read `recording()` (one global) and skip
the rest when it is None; no clock is read, nothing is kept. Times are `time.perf_counter()`.
"""

from __future__ import annotations

import bisect
import time
from dataclasses import dataclass, field

STAGES = (
    "accept_commit",
    "queue_wait",
    "slot_wait",
    "submit_round_trip",
    "result_commit",
    "receipt_commit",
    "callback",
    "store_queue",
    "writer_batch",
)
# Stages measured between two places, by a mark kept per message (`StageTimes.marks`).
MARKED_STAGES = frozenset({"queue_wait", "callback"})
# Upper bounds in seconds: 10 µs .. 100 s, 1-2-5 per decade (Prometheus `le`; +Inf beyond).
BOUNDS: tuple[float, ...] = tuple(
    mantissa * 10.0**exponent for exponent in range(-5, 3) for mantissa in (1, 2, 5)
)[:-2]
# Marks (message id -> start) kept per stage at most; past it the oldest are dropped unmeasured.
MAX_MARKS = 1_000_000

now = time.perf_counter


@dataclass(slots=True)
class Histogram:
    """Counts per bucket (`counts[i]` for seconds <= BOUNDS[i], the last for beyond)."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(BOUNDS) + 1))
    count: int = 0
    total: float = 0.0
    largest: float = 0.0

    def observe(self, seconds: float, times: int = 1) -> None:
        self.counts[bisect.bisect_left(BOUNDS, seconds)] += times
        self.count += times
        self.total += seconds * times
        if seconds > self.largest:
            self.largest = seconds

    def quantile(self, q: float) -> float:
        """Estimated as Prometheus's histogram_quantile does: linear within the bucket."""
        if not self.count:
            return 0.0
        rank = q * self.count
        seen = 0
        for index, in_bucket in enumerate(self.counts):
            if seen + in_bucket >= rank and in_bucket:
                low = BOUNDS[index - 1] if index else 0.0
                high = BOUNDS[index] if index < len(BOUNDS) else self.largest
                return min(low + (high - low) * (rank - seen) / in_bucket, self.largest)
            seen += in_bucket
        return self.largest

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0


class StageTimes:
    """The recorder: histograms by stage, and the start marks of stages that span two places.

    `marks=False` (the latency the metrics exporter shows by default) keeps no marks: the
    stages measured in one place (commits, submit round trip, writer batches) are recorded,
    queue_wait and callback are not, so nothing is held per message."""

    def __init__(self, *, marks: bool = True) -> None:
        self.histograms: dict[str, Histogram] = {stage: Histogram() for stage in STAGES}
        self._marks: dict[str, dict[str, float]] = {stage: {} for stage in STAGES}
        self.marks = marks

    def observe(self, stage: str, seconds: float, times: int = 1) -> None:
        self.histograms[stage].observe(seconds, times)

    def start(self, stage: str, key: str) -> None:
        """`key` (a message id) enters `stage` now; `stop` measures it."""
        if not self.marks:
            return
        marks = self._marks[stage]
        if len(marks) >= MAX_MARKS:
            del marks[next(iter(marks))]
        marks[key] = now()

    def stop(self, stage: str, key: str) -> None:
        started = self._marks[stage].pop(key, None)
        if started is not None:
            self.histograms[stage].observe(now() - started)

    def snapshot(self) -> dict[str, dict[str, object]]:
        """Plain data (JSON): per stage its bucket bounds and cumulative counts, count, sum."""
        result: dict[str, dict[str, object]] = {}
        for stage, histogram in self.histograms.items():
            cumulative, running = [], 0
            for in_bucket in histogram.counts:
                running += in_bucket
                cumulative.append(running)
            result[stage] = {
                "le": [*BOUNDS, "+Inf"],
                "buckets": cumulative,
                "count": histogram.count,
                "sum": histogram.total,
                "max": histogram.largest,
            }
        return result


def table(snapshot: dict[str, dict[str, object]]) -> str:
    """A report of a `snapshot()` (this process's or a daemon's): one row per stage."""
    lines = [
        f"{'stage':<18} {'count':>9} {'mean ms':>9} {'p50 ms':>9} {'p90 ms':>9} "
        f"{'p99 ms':>9} {'max ms':>9}",
    ]
    for stage in STAGES:
        data = snapshot.get(stage)
        if data is None:
            continue
        histogram = from_snapshot(data)
        lines.append(
            f"{stage:<18} {histogram.count:>9,} {histogram.mean * 1e3:>9.2f} "
            f"{histogram.quantile(0.5) * 1e3:>9.2f} {histogram.quantile(0.9) * 1e3:>9.2f} "
            f"{histogram.quantile(0.99) * 1e3:>9.2f} {histogram.largest * 1e3:>9.2f}"
        )
    return "\n".join(lines)


def from_snapshot(data: dict[str, object]) -> Histogram:
    cumulative = data["buckets"]
    assert isinstance(cumulative, list)
    counts = [int(c) - int(p) for c, p in zip(cumulative, [0, *cumulative[:-1]], strict=True)]
    total, largest = data["sum"], data["max"]
    assert isinstance(total, int | float) and isinstance(largest, int | float)
    return Histogram(counts, sum(counts), float(total), float(largest))


_recorder: StageTimes | None = None


def enable(*, marks: bool = True) -> StageTimes:
    """Start recording (idempotent; `marks=True` turns marks on in a recorder without them);
    returns the recorder."""
    global _recorder
    if _recorder is None:
        _recorder = StageTimes(marks=marks)
    elif marks:
        _recorder.marks = True
    return _recorder


def disable() -> None:
    """Stop recording and forget what was recorded."""
    global _recorder
    _recorder = None


def recording() -> StageTimes | None:
    return _recorder
