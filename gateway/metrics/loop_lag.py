"""The event loop's lag: how late a sleep wakes up, the first sign of a loop kept busy."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from gateway import stages
from gateway.tasks import cancel_and_wait


@dataclass(slots=True)
class LoopLag:
    """Sleeps `interval` again and again and records how late each wake-up came: a loop that
    runs something long (a big JSON, a blocking call) shows it here before customers do."""

    interval: float = 0.5
    histogram: stages.Histogram = field(default_factory=stages.Histogram)
    last: float = 0.0  # the lag of the last tick
    last_tick: float = field(default_factory=time.monotonic)
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.last_tick = time.monotonic()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="loop-lag")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None

    async def _run(self) -> None:
        clock = time.monotonic
        while True:
            before = clock()
            await asyncio.sleep(self.interval)
            now = clock()
            self.last = max(now - before - self.interval, 0.0)
            self.last_tick = now
            self.histogram.observe(self.last)

    def stalled_for(self, now: float) -> float:
        """Seconds since the last tick beyond what the interval explains (0: ticking)."""
        return max(now - self.last_tick - self.interval, 0.0)
