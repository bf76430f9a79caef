"""The in-memory send queue: priority, schedule, backoff, expiry, failover moves."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.messages import Channel, Message, MessageKind
from gateway.queue import AsyncSendQueue, RetryPolicy, SendQueue
from tests.waiting import WAIT

T0 = 1_800_000_000.0


def make_message(**fields: object) -> Message:
    values: dict[str, object] = {
        "account": "acme",
        "channel": Channel.HTTP,
        "source_addr": "ACME",
        "destination": "447700900123",
        "body": b"hi",
        "created_at": T0,
    }
    values.update(fields)
    return Message(**values)  # type: ignore[arg-type]


def drain(queue: SendQueue, link: str, now: float) -> list[Message]:
    out = []
    while (message := queue.pop(link, now)) is not None:
        out.append(message)
    return out


def test_otp_goes_before_transactional_before_bulk_whatever_the_arrival_order() -> None:
    queue = SendQueue()
    bulk = make_message(kind=MessageKind.BULK)
    transactional = make_message(kind=MessageKind.TRANSACTIONAL)
    otp = make_message(kind=MessageKind.OTP)
    for message in (bulk, transactional, otp):
        queue.put(message, "smsc-a", T0)

    assert drain(queue, "smsc-a", T0) == [otp, transactional, bulk]


def test_same_priority_goes_oldest_first() -> None:
    queue = SendQueue()
    messages = [make_message(created_at=T0 + i % 3, reference=str(i)) for i in range(9)]
    for message in messages:
        queue.put(message, "smsc-a", T0 + 10)

    order = [m.reference for m in drain(queue, "smsc-a", T0 + 10)]

    assert order == ["0", "3", "6", "1", "4", "7", "2", "5", "8"]


def test_links_have_separate_queues() -> None:
    queue = SendQueue()
    a, b = make_message(), make_message()
    queue.put(a, "smsc-a", T0)
    queue.put(b, "smsc-b", T0)

    assert drain(queue, "smsc-b", T0) == [b]
    assert drain(queue, "smsc-a", T0) == [a]
    assert queue.pop("nowhere", T0) is None


def test_scheduled_message_is_held_until_its_send_time() -> None:
    queue = SendQueue()
    later = make_message(send_at=T0 + 60, kind=MessageKind.OTP)
    now = make_message(kind=MessageKind.BULK)
    queue.put(later, "smsc-a", T0)
    queue.put(now, "smsc-a", T0)

    assert queue.pop("smsc-a", T0) is now
    assert queue.pop("smsc-a", T0 + 59.9) is None
    assert queue.next_wake("smsc-a") == T0 + 60
    assert queue.pop("smsc-a", T0 + 60) is later
    assert queue.next_wake("smsc-a") is None


def test_expired_message_is_handed_back_not_sent() -> None:
    queue = SendQueue()
    stale = make_message(validity_at=T0 + 5, kind=MessageKind.OTP)
    fresh = make_message(validity_at=T0 + 500)
    queue.put(stale, "smsc-a", T0)
    queue.put(fresh, "smsc-a", T0)

    assert queue.pop("smsc-a", T0 + 5) is fresh
    assert queue.take_expired() == [stale]
    assert queue.take_expired() == []
    assert len(queue) == 0


def test_scheduled_message_whose_validity_ends_first_expires_at_validity_end() -> None:
    queue = SendQueue()
    doomed = make_message(send_at=T0 + 100, validity_at=T0 + 30)
    queue.put(doomed, "smsc-a", T0)

    assert queue.next_wake("smsc-a") == T0 + 30
    assert queue.pop("smsc-a", T0 + 30) is None
    assert queue.take_expired() == [doomed]
    assert queue.size("smsc-a") == 0


def test_requeued_message_waits_for_its_backoff_then_keeps_its_priority() -> None:
    policy = RetryPolicy(base=5.0, factor=2.0, cap=60.0)
    queue = SendQueue()
    otp = make_message(kind=MessageKind.OTP)
    queue.put(otp, "smsc-a", T0)
    assert queue.pop("smsc-a", T0) is otp

    otp.attempts = 2
    otp.next_attempt_at = policy.next_attempt_at(T0, otp.attempts)
    queue.put(otp, "smsc-a", T0)
    bulk = make_message(kind=MessageKind.BULK)
    queue.put(bulk, "smsc-a", T0)

    assert otp.next_attempt_at == T0 + 10
    assert queue.pop("smsc-a", T0 + 9) is bulk
    assert queue.pop("smsc-a", T0 + 10) is otp


def test_retry_policy_grows_exponentially_up_to_its_cap() -> None:
    policy = RetryPolicy(base=2.0, factor=3.0, cap=100.0, max_attempts=4)
    assert [policy.delay(n) for n in range(1, 7)] == [2.0, 6.0, 18.0, 54.0, 100.0, 100.0]
    assert policy.delay(10_000) == 100.0
    assert not policy.exhausted(3)
    assert policy.exhausted(4)


def test_removed_message_is_never_handed_out() -> None:
    queue = SendQueue()
    keep, cancel = make_message(), make_message()
    queue.put(keep, "smsc-a", T0)
    queue.put(cancel, "smsc-a", T0)

    assert queue.remove(cancel.id) is cancel
    assert queue.remove(cancel.id) is None
    assert cancel.id not in queue
    assert drain(queue, "smsc-a", T0) == [keep]
    assert queue.remove(keep.id) is None  # already handed out: the sender holds it


def test_putting_a_queued_message_again_replaces_its_place() -> None:
    queue = SendQueue()
    message = make_message()
    queue.put(message, "smsc-a", T0)
    queue.put(message, "smsc-b", T0)

    assert queue.pop("smsc-a", T0) is None
    assert queue.pop("smsc-b", T0) is message
    assert len(queue) == 0


def test_failover_move_keeps_order_and_schedule() -> None:
    queue = SendQueue()
    first, second = make_message(), make_message()
    scheduled = make_message(send_at=T0 + 30)
    pinned = make_message(targets=["smsc-a"])
    for message in (first, second, scheduled, pinned):
        queue.put(message, "smsc-a", T0)

    moved = queue.move(
        "smsc-a", "smsc-b", T0, only=lambda m: "smsc-b" in m.targets or not m.targets
    )

    assert moved == 3
    assert drain(queue, "smsc-b", T0) == [first, second]
    assert queue.pop("smsc-b", T0 + 30) is scheduled
    assert drain(queue, "smsc-a", T0) == [pinned]


def test_depth_counts_per_link_and_priority() -> None:
    queue = SendQueue()
    for kind, link in (
        (MessageKind.OTP, "smsc-a"),
        (MessageKind.BULK, "smsc-a"),
        (MessageKind.BULK, "smsc-a"),
        (MessageKind.BULK, "smsc-b"),
    ):
        queue.put(make_message(kind=kind, send_at=T0 + 5), link, T0)

    assert queue.depth() == {"smsc-a": {0: 1, 9: 2}, "smsc-b": {9: 1}}
    assert queue.size("smsc-a") == 3
    queue.pop("smsc-a", T0 + 5)
    assert queue.depth() == {"smsc-a": {9: 2}, "smsc-b": {9: 1}}


@given(
    st.lists(
        st.tuples(
            st.integers(0, 9),  # priority
            st.floats(0, 100, allow_nan=False),  # created offset
            st.one_of(st.none(), st.floats(0, 200, allow_nan=False)),  # send_at offset
        ),
        max_size=40,
    ),
    st.floats(0, 300, allow_nan=False),
)
def test_pop_returns_exactly_the_due_messages_in_priority_then_age_order(
    specs: list[tuple[int, float, float | None]], now_offset: float
) -> None:
    queue = SendQueue()
    messages = [
        make_message(
            priority=p, created_at=T0 + c, send_at=None if s is None else T0 + s, reference=str(i)
        )
        for i, (p, c, s) in enumerate(specs)
    ]
    for message in messages:
        queue.put(message, "l", T0)
    now = T0 + now_offset

    popped = drain(queue, "l", now)

    due = [m for m in messages if m.due_at <= now]
    expected = sorted(
        due, key=lambda m: (m.priority, max(m.due_at, m.created_at), int(m.reference or 0))
    )
    assert [m.id for m in popped] == [m.id for m in expected]
    assert len(queue) == len(messages) - len(due)


@given(
    st.lists(
        st.tuples(
            st.integers(0, 9),  # priority
            st.floats(0, 100, allow_nan=False),  # created offset
            st.sampled_from(["stay", "pop", "remove"]),
        ),
        max_size=40,
    ),
)
def test_the_oldest_ready_age_follows_pops_and_removals_across_priorities(
    specs: list[tuple[int, float, str]],
) -> None:
    queue = SendQueue()
    messages = [make_message(priority=p, created_at=T0 + c) for p, c, _ in specs]
    for message in messages:
        queue.put(message, "l", T0 + 100)
    assert queue.oldest_ready_at("l") == (min(m.created_at for m in messages) if messages else None)
    pops = sum(1 for *_, fate in specs if fate == "pop")
    popped = [queue.pop("l", T0 + 100) for _ in range(pops)]
    for message, (*_, fate) in zip(messages, specs, strict=True):
        if fate == "remove" and message not in popped:
            queue.remove(message.id)
    left = [m for m, (*_, fate) in zip(messages, specs, strict=True) if m.id in queue]
    assert len(left) == len(queue)
    assert queue.oldest_ready_at("l") == (min(m.created_at for m in left) if left else None)


async def test_get_waits_for_a_put() -> None:
    queue = AsyncSendQueue(on_expired=lambda expired: None)
    waiter = asyncio.create_task(queue.get("smsc-a"))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    message = make_message(created_at=0.0)
    queue.put(message, "smsc-a")
    assert await asyncio.wait_for(waiter, WAIT) is message


async def test_get_waits_until_a_scheduled_message_is_due() -> None:
    loop = asyncio.get_running_loop()
    queue = AsyncSendQueue(on_expired=lambda expired: None, clock=loop.time)
    message = make_message(created_at=0.0, send_at=loop.time() + 0.05)
    queue.put(message, "smsc-a")

    got = await asyncio.wait_for(queue.get("smsc-a"), WAIT)

    assert got is message
    assert loop.time() >= message.due_at


async def test_get_hands_expired_messages_to_the_callback() -> None:
    loop = asyncio.get_running_loop()
    expired: list[Message] = []
    queue = AsyncSendQueue(on_expired=expired.extend, clock=loop.time)
    stale = make_message(created_at=0.0, validity_at=loop.time() - 1, kind=MessageKind.OTP)
    fresh = make_message(created_at=0.0)
    queue.put(stale, "smsc-a")
    queue.put(fresh, "smsc-a")

    assert await queue.get("smsc-a") is fresh
    assert expired == [stale]


async def test_move_wakes_the_senders_of_the_new_link() -> None:
    queue = AsyncSendQueue(on_expired=lambda expired: None)
    waiter = asyncio.create_task(queue.get("smsc-b"))
    await asyncio.sleep(0.01)
    message = make_message(created_at=0.0)
    queue.put(message, "smsc-a")

    assert queue.move("smsc-a", "smsc-b") == 1
    assert await asyncio.wait_for(waiter, WAIT) is message


@pytest.mark.parametrize("attempts", [0, 1])
def test_first_retry_waits_the_base_delay(attempts: int) -> None:
    assert RetryPolicy(base=7.0).delay(attempts) == 7.0
