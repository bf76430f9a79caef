"""Carrier budgets shared by the nodes of a cluster: a link's `sessions` (binds) and `tps` are
the carrier account's limits, not one node's, so N nodes together never open more than
`sessions` binds nor send faster than `tps`.

Owns: the even split of a link's binds among the live nodes that run it (`fair_share`), the
link's tps share that rides with the binds a node holds (`tps_share`), and the round that moves a
node towards its share (`LinkBudgets.rebalance`). Never does: SQL (the `BudgetStore` side does
it), or opening and closing binds (the link does, through `set_budget`).

Theory of operation
-------------------
A link's binds are `sessions` numbered slots in the database, each held by at most one node at a
time; a slot whose node's lease ran out is free. A node binds only as many sessions as it holds
slots, and sends at `tps x held / sessions`, so the carrier sees at most `sessions` binds and
`tps` in total whatever the nodes think of each other: the database, not agreement, is what
bounds them. Each round (every `lease_seconds / 3`, after the node renewed its lease) a node
works out its share from the live nodes that run the link (sorted by name; the first
`sessions mod n` get one more), closes the binds above it and only then gives their slots back,
or claims free slots up to it and only then opens binds. A node that joins gets its share as
the others give theirs back (within two rounds); a node that dies frees its slots when its lease
runs out, and the survivors claim them on their next round. A node that cannot renew its lease
closes every bind before the lease can lapse (`shed_all`), since its slots are about to be free.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

log = logging.getLogger(__name__)


def fair_share(sessions: int, nodes: Sequence[str], node: str) -> int:
    """The binds `node` should hold of a link's `sessions` among the live `nodes` running it:
    an even split, the first `sessions mod n` nodes by name taking one more."""
    ranked = sorted(set(nodes) | {node})
    base, extra = divmod(sessions, len(ranked))
    return base + (1 if ranked.index(node) < extra else 0)


def tps_share(tps: float | None, held: int, sessions: int) -> float | None:
    """The rate a node may send at holding `held` of `sessions` slots (None: no limit)."""
    if tps is None:
        return None
    return tps * held / sessions


@runtime_checkable
class BudgetedLink(Protocol):
    """A link whose binds and rate a cluster shares (`gateway.links.smpp_client.SmppLink`)."""

    @property
    def name(self) -> str: ...

    @property
    def budget(self) -> int: ...

    async def set_budget(self, binds: int, tps: float | None) -> None:
        """Bind `binds` sessions (closing those above first) and send at `tps`; nothing
        to do when both are as they are."""


class BudgetStore(Protocol):
    """The database side (`gateway.store.postgres.PostgresMessageStore`)."""

    async def register_links(self, links: Sequence[str]) -> None: ...

    async def link_nodes(self) -> dict[str, list[str]]: ...

    async def held_slots(self) -> dict[str, list[int]]: ...

    async def claim_slots(self, link: str, sessions: int, count: int) -> list[int]: ...

    async def release_slots(self, link: str, slots: Sequence[int]) -> None: ...

    async def leave_links(self) -> None: ...


class LinkBudgets:
    """One node's side of the shared budgets: `rebalance()` each round after the lease was
    renewed, `shed_all()` when it could not be."""

    def __init__(self, store: BudgetStore, node: str) -> None:
        self.store, self.node = store, node

    async def rebalance(
        self, links: Mapping[str, BudgetedLink], limits: Mapping[str, tuple[int, float | None]]
    ) -> None:
        """Move each link towards this node's share. `limits`: each link's (sessions, tps)."""
        store = self.store
        await store.register_links(sorted(links))
        running = await store.link_nodes()
        held = await store.held_slots()
        for name in sorted(set(held) - set(links)):  # links this node no longer runs
            await store.release_slots(name, held[name])
        for name, link in sorted(links.items()):
            sessions, tps = limits[name]
            mine = held.get(name, [])
            # Slots beyond `sessions` (lowered by a reload) go back first.
            keep = [slot for slot in mine if slot < sessions]
            target = fair_share(sessions, running.get(name, []), self.node)
            if len(keep) > target:
                keep = keep[:target]
            gone = [slot for slot in mine if slot not in keep]
            if gone or len(keep) < link.budget:
                # Close the binds first: the slots may be someone else's the moment they go.
                await link.set_budget(len(keep), tps_share(tps, len(keep), sessions))
            if gone:
                await store.release_slots(name, gone)
                log.info("node %s: link %s gave back %d bind slots", self.node, name, len(gone))
            if len(keep) < target:
                claimed = await store.claim_slots(name, sessions, target - len(keep))
                if claimed:
                    log.info("node %s: link %s took %d bind slots", self.node, name, len(claimed))
                keep += claimed
            await link.set_budget(len(keep), tps_share(tps, len(keep), sessions))

    async def shed_all(self, links: Mapping[str, BudgetedLink]) -> None:
        """Close every bind: this node's lease may lapse, and its slots with it."""
        for link in links.values():
            if link.budget:
                await link.set_budget(0, 0.0)

    async def leave(self) -> None:
        """This node stops (its links are stopped): give back every slot it holds."""
        await self.store.leave_links()
