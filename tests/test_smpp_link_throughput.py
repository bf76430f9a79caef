"""Throughput of one link against the simulator, unthrottled and with 5% ESME_RTHROTTLED.

A load measurement, so it is marked slow (`make test-slow`, or `pytest -m slow -s
tests/test_smpp_link_throughput.py` to see the figures). It asserts the issue's floor: throttling
a random 5% of submits keeps at least half the throughput, and loses nothing.
"""

from __future__ import annotations

import statistics
import time

import pytest

from gateway.simulator import SmscSimulator
from tests.test_smpp_link import Harness, message, sim_settings
from tests.waiting import wait_for

MESSAGES = 6000
ROUNDS = 3


async def measure(throttle_fraction: float) -> tuple[float, Harness]:
    # Receipts are pushed past the end of the run so both figures measure submits alone.
    settings = sim_settings(throttle_fraction=throttle_fraction, dlr_delay=600.0)
    async with SmscSimulator(settings, seed=17) as sim:
        setup = Harness(sim, sessions=1, window=10)
        await setup.link.start()
        try:
            await wait_for(lambda: setup.link.stats.sessions_up == 1, "the session up")
            started = time.perf_counter()
            sent = setup.send(*(message(f"bench {n}") for n in range(MESSAGES)))
            await setup.all_submitted(sent, timeout=120.0)
            elapsed = time.perf_counter() - started
        finally:
            await setup.link.stop()
    return MESSAGES / elapsed, setup


@pytest.mark.slow
async def test_five_percent_throttling_keeps_half_the_throughput_and_loses_nothing() -> None:
    clean: list[float] = []
    throttled: list[float] = []
    for _ in range(ROUNDS):  # interleaved, medians: the machine is shared and noisy
        clean.append((await measure(0.0))[0])
        rate, setup = await measure(0.05)
        throttled.append(rate)
        assert setup.sink.submit_reports == MESSAGES and not setup.sink.temporary
        assert setup.link.stats.throttles > 0
    ratio = statistics.median(throttled) / statistics.median(clean)
    print(
        f"\nlink throughput (sessions=1 window=10, {MESSAGES} messages, median of {ROUNDS}): "
        f"unthrottled {statistics.median(clean):.0f}/s, 5% throttled "
        f"{statistics.median(throttled):.0f}/s, ratio {ratio:.2f}"
    )
    assert ratio >= 0.5
