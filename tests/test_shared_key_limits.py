"""A key's rate limit shared by the nodes of a cluster (`gateway.http.limits.SharedAllowances`):
each node takes its part of the key's window from PostgreSQL a twentieth of a window at a time,
so a busy key costs a round trip per chunk, not one per request, and together the nodes still
admit no more than the rate.

The first tests drive the allowances against a window counter of the test's own with a clock
it moves (the same fixed-window arithmetic as the database's statement), to show the exact
bounds; the last runs two nodes' allowances against real PostgreSQL."""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.http.limits import SharedAllowances
from gateway.store.postgres import PostgresMessageStore
from tests.store_backends import POSTGRES_DSN, store_factory


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Windows:
    """`key_windows` in memory: a fixed window per (key, kind) aligned to its length."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.rows: dict[tuple[str, str], tuple[float, float]] = {}
        self.calls = 0

    async def count_in_window(
        self, key_id: str, kind: str, amount: float, seconds: float
    ) -> tuple[float, float]:
        self.calls += 1
        start = math.floor(self.clock() / seconds) * seconds
        old_start, used = self.rows.get((key_id, kind), (start, 0.0))
        used = used + amount if old_start == start else amount
        self.rows[(key_id, kind)] = (start, used)
        return used, start + seconds - self.clock()


async def test_two_nodes_admit_the_rate_in_chunks_and_no_more() -> None:
    clock = Clock()
    windows = Windows(clock)
    nodes = [SharedAllowances(windows, clock), SharedAllowances(windows, clock)]
    admitted = 0
    for i in range(400):  # all in one window: the clock does not move
        if await nodes[i % 2].wait("key", "r", 200.0, 1) == 0.0:
            admitted += 1
    # At most the rate; at least the rate less what each node may hold unused (a chunk each).
    assert 200 - 2 * 10 <= admitted <= 200
    assert windows.calls <= 200 / 10 + 4  # a round trip a chunk (10), not a request (400)


async def test_a_spent_window_is_refused_locally_until_it_ends_then_admits_again() -> None:
    clock = Clock()
    windows = Windows(clock)
    node = SharedAllowances(windows, clock)
    clock.now = 1000.25
    assert [await node.wait("key", "m", 2.0, 1) for _ in range(2)] == [0.0, 0.0]
    calls = windows.calls
    wait = await node.wait("key", "m", 2.0, 1)
    assert wait == pytest.approx(0.75)  # until the window ends, as Retry-After
    assert await node.wait("key", "m", 2.0, 1) > 0 and windows.calls == calls + 1
    clock.now = 1001.0
    assert await node.wait("key", "m", 2.0, 1) == 0.0


async def test_a_batch_larger_than_the_window_goes_into_an_empty_one_only() -> None:
    clock = Clock()
    windows = Windows(clock)
    node = SharedAllowances(windows, clock)
    assert await node.wait("key", "m", 50.0, 120) == 0.0
    assert await node.wait("key", "m", 50.0, 1) > 0  # the window is over-spent
    clock.now += 1.0
    assert await node.wait("key", "m", 50.0, 1) == 0.0
    assert await node.wait("key", "m", 50.0, 120) > 0  # not into a window already in use


@pytest.fixture
async def two_nodes(tmp_path: Path) -> AsyncIterator[list[PostgresMessageStore]]:
    async for make in store_factory("postgresql", tmp_path):
        schema = make.schema("limits")
        stores = [
            PostgresMessageStore(
                POSTGRES_DSN, schema=schema, node=name, key_file=tmp_path / "store.key"
            )
            for name in ("a", "b")
        ]
        for store in stores:
            await store.open()
        try:
            yield stores
        finally:
            for store in stores:
                await store.close()


class Counted:
    def __init__(self, store: PostgresMessageStore) -> None:
        self.store = store
        self.calls = 0

    async def count_in_window(
        self, key_id: str, kind: str, amount: float, seconds: float
    ) -> tuple[float, float]:
        self.calls += 1
        return await self.store.count_in_window(key_id, kind, amount, seconds)


async def test_two_nodes_on_postgresql_share_a_keys_rate(
    two_nodes: list[PostgresMessageStore],
) -> None:
    counted = [Counted(store) for store in two_nodes]
    nodes = [SharedAllowances(windows) for windows in counted]
    rate = 400.0
    admitted = 0
    started = time.monotonic()
    for i in range(1200):
        if await nodes[i % 2].wait("key", "r", rate, 1) == 0.0:
            admitted += 1
    took = time.monotonic() - started
    # One-second windows by the database's clock: at most the rate in each window touched.
    assert 0 < admitted <= rate * (math.ceil(took) + 1), (admitted, took)
    round_trips = sum(c.calls for c in counted)
    # A chunk is 20 requests: far fewer round trips than requests (1,200 without chunks).
    assert round_trips <= admitted / 20 + 1200 / 20, (round_trips, admitted)
