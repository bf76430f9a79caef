"""A link's carrier limits are the cluster's, not each node's: two Gateways (nodes "a" and "b")
on one PostgreSQL schema, one SMPP link to one SMSC simulator. Seen from the simulator, the
nodes together never hold more than the link's `sessions` binds and never send faster than its
`tps`; a node that joins gets its share as the other gives it back, and a node that dies (its
lease stops being renewed) leaves its share to the survivor within the lease. Pinning names
are checked by the config. Skips, saying why, where PostgreSQL is absent."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.config import TandemConfig
from gateway.intake import MessageRequest
from gateway.links.budget import LinkBudgets, fair_share, tps_share
from gateway.links.smpp_client import SmppLink
from gateway.messages import Channel
from tests.cluster_nodes import LEASE, LINK, Cluster, binds, cluster, node_config
from tests.waiting import wait_for

__all__ = ["cluster"]  # the fixture


def test_binds_split_evenly_by_node_name_and_tps_rides_with_them() -> None:
    assert [fair_share(5, ["b", "a"], n) for n in ("a", "b")] == [3, 2]
    assert [fair_share(1, ["a", "b", "c"], n) for n in ("a", "b", "c")] == [1, 0, 0]
    assert fair_share(4, [], "a") == 4  # alone (its own row not read yet)
    assert sum(fair_share(7, ["a", "b", "c"], n) for n in ("a", "b", "c")) == 7
    assert tps_share(100.0, 1, 4) == 25.0 and tps_share(None, 1, 4) is None


async def test_never_more_binds_than_sessions_and_a_dead_nodes_share_goes_to_the_survivor(
    cluster: Cluster,
) -> None:
    simulator = cluster.simulator
    a = await cluster.start("a", sessions=3)
    await wait_for(lambda: simulator.sessions_bound == 3, "node a alone to bind all 3 sessions")
    b = await cluster.start("b", sessions=3)
    # a (first by name) keeps 2, b gets 1, once a has given one back.
    await wait_for(
        lambda: (binds(a), binds(b), simulator.sessions_bound) == (2, 1, 3),
        "the binds to split 2/1",
    )
    assert simulator.stats.most_bound == 3

    # Node a dies: its lease stops being renewed and its connections drop, but its slots stay
    # its own in the database until the lease runs out.
    assert a._cluster is not None
    a._cluster.cancel()
    await asyncio.gather(a._cluster, return_exceptions=True)
    died = time.monotonic()
    link = a.links[LINK]
    assert isinstance(link, SmppLink)
    await link.stop(drain_seconds=0)
    await wait_for(lambda: binds(b) == 3, "the survivor to bind all 3 sessions")
    taken = time.monotonic() - died
    # Within the lease, one renewal period and slack for a loaded machine.
    assert taken <= LEASE + LEASE / 3 + 3.0, taken
    assert simulator.sessions_bound == 3
    assert simulator.stats.most_bound == 3


async def test_a_stopping_node_gives_its_binds_back_at_once(cluster: Cluster) -> None:
    simulator = cluster.simulator
    a = await cluster.start("a", sessions=2)
    b = await cluster.start("b", sessions=2)
    await wait_for(lambda: (binds(a), binds(b)) == (1, 1), "one bind each")
    await a.stop()
    stopped = time.monotonic()
    await wait_for(lambda: binds(b) == 2, "node b to bind both sessions")
    # Given back at stop, not at the end of the lease: b's next round takes them.
    assert time.monotonic() - stopped <= LEASE / 3 + 3.0
    assert simulator.stats.most_bound == 2


async def test_the_links_tps_holds_across_two_nodes(cluster: Cluster) -> None:
    simulator = cluster.simulator
    tps = 40.0
    a = await cluster.start("a", sessions=2, tps=tps)
    b = await cluster.start("b", sessions=2, tps=tps)
    await wait_for(lambda: (binds(a), binds(b)) == (1, 1), "one bind each")
    per_node = 120
    for gateway in (a, b):
        requests = [
            MessageRequest(
                account="acme", channel=Channel.HTTP, to="+447911123456", text=f"tps {n}"
            )
            for n in range(per_node)
        ]
        await gateway.intake.accept(requests)
    await wait_for(lambda: len(simulator.received) >= 2 * per_node, "every message at the SMSC")
    times = sorted(r.at for r in simulator.received)
    # Each node alone would send at the link's whole tps: twice the budget together.
    busiest = max(sum(1 for t in times[i:] if t < start + 1.0) for i, start in enumerate(times))
    assert busiest <= tps * 1.15 + 2, busiest  # a 50 ms burst allowance per node
    overall = (len(times) - 1) / (times[-1] - times[0])
    assert overall <= tps * 1.1, overall


def test_pinning_names_are_checked() -> None:
    base = node_config(Path("data"), "a", "s", 2775, nodes=["a", "b"])
    assert TandemConfig.model_validate(base).links[0].nodes == ["a", "b"]
    for nodes in (["a", "a"], ["bad name"], [""]):
        with pytest.raises(ValidationError):
            TandemConfig.model_validate(node_config(Path("data"), "a", "s", 2775, nodes=nodes))
    sqlite = {**base, "store": {"backend": "sqlite"}}
    with pytest.raises(ValidationError, match="postgresql"):
        TandemConfig.model_validate(sqlite)


async def test_a_link_pinned_to_another_node_does_not_bind_here(cluster: Cluster) -> None:
    simulator = cluster.simulator
    a = await cluster.start("a", sessions=2, nodes=["b"])
    b = await cluster.start("b", sessions=2, nodes=["b"])
    assert LINK not in a.links
    await wait_for(lambda: binds(b) == 2, "the pinned node to bind both sessions")
    assert simulator.stats.most_bound == 2


class FakeLink:
    """A link that records its budget changes into the shared event log."""

    def __init__(self, events: list[str]) -> None:
        self.name, self.budget, self.events = LINK, 0, events

    async def set_budget(self, binds: int, tps: float | None) -> None:
        if binds != self.budget:
            self.events.append(f"binds {self.budget}->{binds} at {tps}")
        self.budget = binds


class FakeSlots:
    """The database side in memory: slots of one link, and the live nodes running it."""

    def __init__(self, events: list[str], nodes: list[str], held: list[int], free: int) -> None:
        self.events, self.nodes, self.held, self.free = events, nodes, held, free

    async def register_links(self, links: Sequence[str]) -> None:
        return None

    async def link_nodes(self) -> dict[str, list[str]]:
        return {LINK: self.nodes}

    async def held_slots(self) -> dict[str, list[int]]:
        return {LINK: list(self.held)} if self.held else {}

    async def claim_slots(self, link: str, sessions: int, count: int) -> list[int]:
        taken = list(range(sessions))[len(self.held) :][: min(count, self.free)]
        self.held += taken
        self.events.append(f"claimed {taken}")
        return taken

    async def release_slots(self, link: str, slots: Sequence[int]) -> None:
        self.held = [slot for slot in self.held if slot not in slots]
        self.events.append(f"released {list(slots)}")

    async def leave_links(self) -> None:
        return None


async def test_a_node_closes_binds_before_giving_slots_back_and_claims_before_binding() -> None:
    events: list[str] = []
    link = FakeLink(events)
    slots = FakeSlots(events, nodes=["a"], held=[], free=4)
    budgets = LinkBudgets(slots, "a")
    await budgets.rebalance({LINK: link}, {LINK: (4, 100.0)})
    assert events == ["claimed [0, 1, 2, 3]", "binds 0->4 at 100.0"]
    events.clear()
    slots.nodes = ["a", "b", "c"]  # two nodes joined: a keeps 2 of 4 (first by name)
    await budgets.rebalance({LINK: link}, {LINK: (4, 100.0)})
    assert events == ["binds 4->2 at 50.0", "released [2, 3]"]
    events.clear()
    await budgets.shed_all({LINK: link})  # the lease could not be renewed
    assert events == ["binds 2->0 at 0.0"]
