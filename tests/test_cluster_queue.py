"""Which node sends a cluster's queued messages: two Gateways (nodes "a" and "b") on one
PostgreSQL schema, one SMPP link to one SMSC simulator that records which node's bind (its
system_id) submitted what. A node whose lease lapsed while it was alive (it stalled) sends
none of the messages another node took over meanwhile once it resumes; a node with no bind on
a link (the link pinned to the other node, or fewer sessions than nodes) hands the messages it
accepted for it to the node that has one: each is submitted once, by that node. Skips, saying
why, where PostgreSQL is absent."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from gateway.app import Gateway
from gateway.intake import MessageRequest
from gateway.links.base import SendFailure
from gateway.messages import Channel
from gateway.simulator import SmscSimulator
from gateway.store.postgres import PostgresMessageStore
from tests.cluster_nodes import LINK, Cluster, binds, cluster
from tests.waiting import wait_for

__all__ = ["cluster"]  # the fixture

WINDOW = 20  # the link's window in tests.cluster_nodes


async def accept(gateway: Gateway, count: int, tag: str) -> list[str]:
    requests = [
        MessageRequest(account="acme", channel=Channel.HTTP, to="+447911123456", text=f"{tag} {n}")
        for n in range(count)
    ]
    return [item.message.id for item in await gateway.intake.accept(requests)]


def submits(simulator: SmscSimulator, tag: str, *, node: str | None = None) -> Counter[str]:
    """Submits per text of this test (`tag`), from one node's binds or from all."""
    return Counter(
        r.payload.decode()
        for r in simulator.received
        if r.payload.startswith(tag.encode()) and (node is None or r.system_id == node)
    )


async def claimed_by(gateway: Gateway, ids: list[str]) -> dict[str, str | None]:
    store = gateway.store
    assert isinstance(store, PostgresMessageStore)
    rows = await store._readers().fetch(
        "SELECT id, claimed_by FROM message_state WHERE id = ANY($1::text[])", ids
    )
    return {r[0]: r[1] for r in rows}


async def test_a_node_whose_lease_lapsed_sends_none_of_what_another_node_took_over(
    cluster: Cluster,
) -> None:
    simulator = cluster.simulator
    # 20 messages a second per node (the link's 40 split over one bind each): a backlog.
    a = await cluster.start("a", sessions=2, tps=40.0, system_id="a")
    b = await cluster.start("b", sessions=2, tps=40.0, system_id="b")
    await wait_for(lambda: (binds(a), binds(b)) == (1, 1), "one bind each")
    count = 150
    ids = await accept(a, count, "lapse")
    texts = {f"lapse {n}": message_id for n, message_id in enumerate(ids)}
    await wait_for(lambda: sum(submits(simulator, "lapse", node="a").values()) >= 10, "a sending")

    # Node a stalls as far as its lease goes (the task renewing it stops; the rest of the node
    # runs): its links stop taking messages once its last renewal is a lease old, and node b
    # takes its queued messages over once the lease has run out in the database.
    assert a._cluster is not None and a.queue.size(LINK) > 0
    a._cluster.cancel()
    await asyncio.gather(a._cluster, return_exceptions=True)
    await wait_for(lambda: submits(simulator, "lapse", node="b"), "b to send what it took over")

    # Node a wakes: its next renewal finds the lease lapsed; it drops what b now holds.
    resumed = time.time()
    assert a.store is not None and isinstance(a.store, PostgresMessageStore)
    a._cluster = asyncio.create_task(a._hold_lease_forever(a.store))
    await wait_for(lambda: len(submits(simulator, "lapse")) == count, "every message submitted")
    await wait_for(lambda: not a.queue.size(LINK) and not b.queue.size(LINK), "both queues empty")
    await wait_for(lambda: not a.links[LINK].in_flight, "a's submits answered")

    claims = await claimed_by(a, ids)
    taken = {message_id for message_id, node in claims.items() if node == "b"}
    assert taken, "b took nothing over"
    after_resuming = [
        texts[r.payload.decode()]
        for r in simulator.received
        if r.system_id == "a" and r.at >= resumed and r.payload.startswith(b"lapse")
    ]
    assert not taken & set(after_resuming)
    # Before it stalled, a may have had submits in flight that b then sent again: at most
    # its window (one bind).
    twice = [text for text, n in submits(simulator, "lapse").items() if n > 1]
    assert len(twice) <= WINDOW, twice
    assert all(texts[text] in taken for text in twice)


async def test_messages_for_a_link_pinned_to_another_node_are_sent_by_that_node(
    cluster: Cluster,
) -> None:
    simulator = cluster.simulator
    a = await cluster.start("a", sessions=2, nodes=["b"], system_id="a")
    b = await cluster.start("b", sessions=2, nodes=["b"], system_id="b")
    await wait_for(lambda: binds(b) == 2, "node b to bind both sessions")
    assert LINK not in a.links
    count = 100
    await accept(a, count, "pinned")
    await wait_for(lambda: len(submits(simulator, "pinned")) == count, "every message submitted")
    await wait_for(lambda: not b.queue.size(LINK), "b's queue empty")
    sent = submits(simulator, "pinned")
    assert set(sent.values()) == {1}  # none lost (all 100 texts), none twice
    assert sent == submits(simulator, "pinned", node="b")
    assert not a.queue.size(LINK)


async def test_with_one_session_for_two_nodes_the_node_without_the_bind_hands_its_messages_on(
    cluster: Cluster,
) -> None:
    simulator = cluster.simulator
    a = await cluster.start("a", sessions=1, system_id="a")
    b = await cluster.start("b", sessions=1, system_id="b")
    await wait_for(lambda: (binds(a), binds(b)) == (1, 0), "a (first by name) to hold the bind")
    count = 100
    await accept(b, count, "one-bind")
    await wait_for(lambda: len(submits(simulator, "one-bind")) == count, "every message submitted")
    await wait_for(lambda: not a.queue.size(LINK), "a's queue empty")
    sent = submits(simulator, "one-bind")
    assert set(sent.values()) == {1}
    assert sent == submits(simulator, "one-bind", node="a")
    assert not b.queue.size(LINK)
    assert simulator.stats.most_bound == 1


async def test_a_message_handed_back_for_a_retry_is_queued_again_only_by_the_node_holding_it(
    cluster: Cluster,
) -> None:
    # Node a alone, its link pinned to node b (not running): nothing here sends, and with
    # its cluster tasks stopped nothing is handed off, so its queue shows what was put back.
    a = await cluster.start("a", sessions=1, nodes=["b"])
    assert a._cluster is not None and isinstance(a.store, PostgresMessageStore)
    a._cluster.cancel()
    await asyncio.gather(a._cluster, return_exceptions=True)
    kept, taken = await accept(a, 2, "retry")
    for message_id in (kept, taken):
        assert a.queue.remove(message_id)
    # `taken` was taken over by node b while a's lease had lapsed (as `take_over` does).
    await a.store._readers().execute(
        "UPDATE message_state SET claimed_by = 'b' WHERE id = $1", taken
    )
    for message_id in (kept, taken):
        record = await a.store.get(message_id)
        assert record is not None
        retry = a.on_temporary_failure(LINK, record.message, SendFailure("busy", status=0x58))
        assert retry is not None
        await retry
    assert kept in a.queue.core and taken not in a.queue.core
    assert (await claimed_by(a, [kept, taken])) == {kept: "a", taken: "b"}
