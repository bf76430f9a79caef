"""Two nodes' stores on one PostgreSQL database: what one node writes binds the other. OTP
attempts are counted across nodes (5 wrong checks in total lock a verification, not 5 per
node), an idempotency answer saved on one node is found on the other, a receipt arriving at
one node is correlated with a message the other submitted, and the unsent messages of a node
whose lease ran out go to exactly one survivor. Skips, saying why, where PostgreSQL is absent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dlr.status import MessageStatus, SegmentStatus, StatusSource
from gateway.messages import Segment
from gateway.store.base import IdempotencyRecord
from gateway.store.postgres import PostgresMessageStore
from tests.store_backends import POSTGRES_DSN, store_factory
from tests.test_store import T0, make_message
from tests.test_store_http_state import verification
from tests.waiting import wait_for


@pytest.fixture
async def nodes(tmp_path: Path) -> AsyncIterator[list[PostgresMessageStore]]:
    """Three nodes' stores on one schema (a, b, c), writers on threads, leases of 3 s (long
    enough that a live node's lease does not run out between two steps of a test on a loaded
    machine, short enough to wait out)."""
    async for make in store_factory("postgresql", tmp_path):
        schema = make.schema("cluster")
        stores = [
            PostgresMessageStore(
                POSTGRES_DSN,
                schema=schema,
                node=name,
                key_file=tmp_path / "store.key",
                lease_seconds=3.0,
            )
            for name in ("a", "b", "c")
        ]
        for store in stores:
            await store.open()
        try:
            yield stores
        finally:
            for store in stores:
                await store.close()


async def lease_lapsed(dead: PostgresMessageStore, *alive: PostgresMessageStore) -> None:
    """Until the `dead` node's lease has run out, the `alive` ones renewing theirs meanwhile."""

    async def lapsed() -> bool:
        for node in alive:
            await node.heartbeat()
        return dead.node not in await alive[0].live_nodes()

    await wait_for(lapsed, f"node {dead.node}'s lease to run out", interval=0.25)


async def test_five_wrong_checks_across_nodes_lock_the_verification(
    nodes: list[PostgresMessageStore],
) -> None:
    a, b, c = nodes
    await a.create_otp(verification(max_checks=5))
    checks = [
        node.check_otp("otp_1", key_id="key_1", code_hash=f"wrong{n}", now=10.0)
        for n in range(10)
        for node in (a, b, c)
    ]
    changes = await asyncio.gather(*checks)
    assert sum(1 for change in changes if change is not None and change.changed) == 5
    record = await c.get_otp("otp_1")
    assert record is not None and (record.status, record.checks) == ("max_attempts_reached", 5)
    late = await b.check_otp("otp_1", key_id="key_1", code_hash="right", now=11.0)
    assert late is not None and not late.changed and late.record.status == "max_attempts_reached"


async def test_an_idempotency_answer_saved_on_one_node_is_found_on_another(
    nodes: list[PostgresMessageStore],
) -> None:
    a, b, _ = nodes
    record = IdempotencyRecord("key_1", "order-17", "fp", 202, b'{"id": "m1"}', 100.0)
    await a.save_idempotency(record)
    assert await b.find_idempotency("key_1", "order-17", newer_than=50.0) == record


async def test_a_receipt_on_one_node_is_correlated_with_the_others_submit(
    nodes: list[PostgresMessageStore],
) -> None:
    a, b, _ = nodes
    message = make_message()
    await a.accept([message])
    await a.mark_submitted(
        message.id,
        [Segment(message.id, 0, 1, carrier_id="c-77")],
        link="smsc-a",
        at=T0 + 1,
        source=StatusSource.SUBMIT_RESP,
    )
    change = await b.apply_segment_status(
        "smsc-a", "c-77", SegmentStatus.DELIVERED, at=T0 + 2, source=StatusSource.RECEIPT
    )
    assert change.changed and change.message is not None
    assert change.message.status is MessageStatus.DELIVERED
    record = await a.get(message.id)
    assert record is not None and record.message.status is MessageStatus.DELIVERED


async def test_a_dead_nodes_unsent_messages_go_to_exactly_one_survivor(
    nodes: list[PostgresMessageStore],
) -> None:
    a, b, c = nodes
    messages = [make_message() for _ in range(200)]
    await a.accept(messages)
    # b and c stay alive; a stops renewing its lease (as if killed). Renewed just now: a
    # loaded machine may take longer than the lease to accept them.
    await a.heartbeat()
    assert await b.take_over() == [] and await c.take_over() == []
    await a.close()
    await lease_lapsed(a, b, c)
    taken_b, taken_c = await asyncio.gather(b.take_over(limit=150), c.take_over(limit=150))
    taken_b += await b.take_over()
    assert not set(taken_b) & set(taken_c)
    assert set(taken_b) | set(taken_c) == {m.id for m in messages}
    # What a restarting node queues is its own claims only.
    mine = [ref[0] async for page in c.pending_refs(T0 + 10) for ref in page]
    assert sorted(mine) == sorted(taken_c)
    await a.open()  # for the fixture's close


async def test_a_dead_nodes_claimed_mo_goes_to_one_node_with_a_bind(
    nodes: list[PostgresMessageStore],
) -> None:
    """Node a claimed an MO for its customer's bind and died before the customer took it:
    once a's lease ran out, the next node that claims it gets it, and only one node does.
    A live node's claim is its own (the same key claimed again by it is still its)."""
    a, b, c = nodes
    mo_id = await a.queue_mo("shop", b"pdu", received_at=T0, expires_at=T0 + 3600)
    key = (str(mo_id), "mo")
    assert await a.claim_deliveries([key]) == {key}
    assert await b.claim_deliveries([key]) == set()  # a is alive and claimed it just now
    assert await a.claim_deliveries([key]) == {key}
    await a.close()
    await lease_lapsed(a, b, c)
    got_b, got_c = await asyncio.gather(b.claim_deliveries([key]), c.claim_deliveries([key]))
    assert [got_b, got_c].count({key}) == 1 and [got_b, got_c].count(set()) == 1
    await a.open()  # for the fixture's close
