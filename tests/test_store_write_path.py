"""The store's write path: the writer's memory of in-flight messages and the rows it
gathers per batch must always agree with what a fresh process reads from the file."""

from __future__ import annotations

import asyncio

import pytest

from dlr.status import MessageStatus, SegmentStatus, StatusSource
from gateway.messages import Channel, Message, Segment
from gateway.store import DuplicateMessageId
from gateway.store.base import SegmentReceipt, SubmitResult
from gateway.store.sqlstore import SqlMessageStore
from tests.store_backends import StoreFactory, make_store

__all__ = ["make_store"]  # the fixture: every test runs on both backends

T0 = 1_800_000_000.0


def make_message() -> Message:
    return Message(
        account="acme",
        channel=Channel.HTTP,
        source_addr="ACME",
        destination="447700900123",
        body=b"Your code is 123456",
        text="Your code is 123456",
        status=MessageStatus.QUEUED,
        created_at=T0,
    )


def submitted(message: Message, carrier_id: str, index: int = 0, total: int = 1) -> Segment:
    return Segment(message.id, index, total, carrier_id=carrier_id)


async def reopened(make_store: StoreFactory, name: str) -> SqlMessageStore:
    store = make_store(name)
    await store.open()
    return store


async def test_a_batch_rolled_back_by_one_bad_request_leaves_no_stale_state_in_memory(
    make_store: StoreFactory,
) -> None:
    path = "t.db"
    store = await reopened(make_store, path)
    message, other = make_message(), make_message()
    await store.accept([message, other])

    # Queued before the writer runs, so they share one transaction; the duplicate sinks it and
    # the other two are replayed one by one from what the database really holds.
    submit, duplicate, receipt = await asyncio.gather(
        store.mark_submitted(
            message.id,
            [submitted(message, "c1")],
            link="smsc-a",
            at=T0 + 1,
            source=StatusSource.SUBMIT_RESP,
        ),
        store.accept([other]),
        store.apply_segment_status(
            "smsc-a", "c1", SegmentStatus.DELIVERED, at=T0 + 2, source=StatusSource.RECEIPT
        ),
        return_exceptions=True,
    )

    assert isinstance(duplicate, DuplicateMessageId)
    assert not isinstance(submit, BaseException) and submit.changed
    assert not isinstance(receipt, BaseException) and receipt.changed
    assert receipt.message is not None and receipt.message.status is MessageStatus.DELIVERED
    assert receipt.message.attempts == 1
    await store.close()

    fresh = await reopened(make_store, path)
    record = await fresh.get(message.id)
    assert record is not None
    assert record.message.status is MessageStatus.DELIVERED and record.message.attempts == 1
    assert [(s.status, s.carrier_id) for s in record.segments] == [(SegmentStatus.DELIVERED, "c1")]
    await fresh.close()


async def events_of_one_message(store: SqlMessageStore, *, together: bool) -> str:
    """A submit result and three receipts for one two-part message, queued together (one
    transaction) or one after the other; the message id."""
    message = make_message()
    await store.accept([message])
    calls = [
        lambda: store.mark_submitted(
            message.id,
            [submitted(message, "p1", 0, 2), submitted(message, "p2", 1, 2)],
            link="smsc-a",
            at=T0 + 1,
            source=StatusSource.SUBMIT_RESP,
        ),
        lambda: store.apply_segment_status(
            "smsc-a", "p1", SegmentStatus.ENROUTE, at=T0 + 2, source=StatusSource.RECEIPT
        ),
        lambda: store.apply_segment_status(
            "smsc-a", "p2", SegmentStatus.DELIVERED, at=T0 + 3, source=StatusSource.RECEIPT
        ),
        lambda: store.apply_segment_status(
            "smsc-a", "p1", SegmentStatus.DELIVERED, at=T0 + 4, source=StatusSource.RECEIPT
        ),
    ]
    if together:
        commits = store.stats().commits
        results = await asyncio.gather(*(call() for call in calls))
        assert store.stats().commits == commits + 1
    else:
        results = [await call() for call in calls]
    assert all(r.changed for r in results)
    return message.id


async def test_several_events_for_one_message_in_one_transaction_are_all_kept(
    make_store: StoreFactory,
) -> None:
    one_by_one = await reopened(make_store, "one.db")
    expected_id = await events_of_one_message(one_by_one, together=False)
    expected = await one_by_one.get(expected_id)
    await one_by_one.close()
    path = "together.db"
    store = await reopened(make_store, path)
    message_id = await events_of_one_message(store, together=True)
    await store.close()

    fresh = await reopened(make_store, path)
    record = await fresh.get(message_id)
    await fresh.close()

    assert record is not None and expected is not None
    assert record.message.status is MessageStatus.DELIVERED
    assert [(s.status, s.done_at) for s in record.segments] == [
        (SegmentStatus.DELIVERED, T0 + 4),
        (SegmentStatus.DELIVERED, T0 + 3),
    ]
    assert [(h.segment_index, h.event) for h in record.history] == [
        (h.segment_index, h.event) for h in expected.history
    ]
    assert (MessageStatus.DELIVERED, StatusSource.AGGREGATE) in [
        (h.event.status, h.event.source) for h in record.history
    ]


@pytest.mark.parametrize("live_messages", [0, 2, 100])
async def test_messages_the_writer_no_longer_holds_are_read_back_from_the_file(
    make_store: StoreFactory, live_messages: int
) -> None:
    store = make_store("t.db", live_messages=live_messages)
    await store.open()
    messages = [make_message() for _ in range(6)]
    await store.accept(messages)
    for i, message in enumerate(messages):
        await store.mark_submitted(
            message.id,
            [submitted(message, f"id{i}")],
            link="smsc-a",
            at=T0 + 1,
            source=StatusSource.SUBMIT_RESP,
        )
    changes = [
        await store.apply_segment_status(
            "smsc-a", f"id{i}", SegmentStatus.DELIVERED, at=T0 + 3, source=StatusSource.RECEIPT
        )
        for i in range(6)
    ]

    assert all(c.changed for c in changes)
    for message in messages:
        record = await store.get(message.id)
        assert record is not None
        assert record.message.status is MessageStatus.DELIVERED
        assert record.message.attempts == 1 and record.message.link == "smsc-a"
    await store.close()


async def test_a_resubmitted_segment_answers_only_to_its_new_carrier_id(
    make_store: StoreFactory,
) -> None:
    path = "t.db"
    store = await reopened(make_store, path)
    message = make_message()
    await store.accept([message])
    for carrier_id, at in (("old", T0 + 1), ("new", T0 + 2)):
        await store.mark_submitted(
            message.id,
            [submitted(message, carrier_id)],
            link="smsc-a",
            at=at,
            source=StatusSource.SUBMIT_RESP,
        )

    stale = await store.apply_segment_status(
        "smsc-a", "old", SegmentStatus.UNDELIVERABLE, at=T0 + 3, source=StatusSource.RECEIPT
    )
    assert not stale.changed and stale.message is None
    await store.close()

    fresh = await reopened(make_store, path)  # the same answer from the file alone
    stale = await fresh.apply_segment_status(
        "smsc-a", "old", SegmentStatus.UNDELIVERABLE, at=T0 + 3, source=StatusSource.RECEIPT
    )
    assert not stale.changed and stale.message is None
    verdict = await fresh.apply_segment_status(
        "smsc-a", "new", SegmentStatus.DELIVERED, at=T0 + 4, source=StatusSource.RECEIPT
    )
    assert verdict.message is not None and verdict.message.status is MessageStatus.DELIVERED
    await fresh.close()


async def test_a_carrier_id_reused_on_a_link_belongs_to_the_latest_submission(
    make_store: StoreFactory,
) -> None:
    store = await reopened(make_store, "t.db")
    first, second = make_message(), make_message()
    await store.accept([first, second])
    for message, at in ((first, T0 + 1), (second, T0 + 2)):
        await store.mark_submitted(
            message.id,
            [submitted(message, "77")],
            link="smsc-a",
            at=at,
            source=StatusSource.SUBMIT_RESP,
        )

    change = await store.apply_segment_status(
        "smsc-a", "77", SegmentStatus.DELIVERED, at=T0 + 3, source=StatusSource.RECEIPT
    )

    assert change.message is not None and change.message.id == second.id
    untouched = await store.get(first.id)
    assert untouched is not None and untouched.message.status is MessageStatus.SUBMITTED
    await store.close()


async def test_what_a_caller_does_to_a_returned_message_does_not_reach_the_store(
    make_store: StoreFactory,
) -> None:
    store = await reopened(make_store, "t.db")
    message = make_message()
    await store.accept([message])
    message.status = MessageStatus.FAILED  # the caller's own object, after accept returned

    change = await store.mark_submitted(
        message.id,
        [submitted(message, "x1")],
        link="smsc-a",
        at=T0 + 1,
        source=StatusSource.SUBMIT_RESP,
    )
    assert change.message is not None and change.message.status is MessageStatus.SUBMITTED
    change.message.status = MessageStatus.REJECTED
    change.message.targets.append("elsewhere")

    receipt = await store.apply_segment_status(
        "smsc-a", "x1", SegmentStatus.DELIVERED, at=T0 + 2, source=StatusSource.RECEIPT
    )
    assert receipt.changed
    assert receipt.message is not None and receipt.message.status is MessageStatus.DELIVERED
    assert receipt.message.targets == []
    await store.close()


async def test_a_redacted_message_stays_redacted_while_still_in_flight(
    make_store: StoreFactory,
) -> None:
    store = await reopened(make_store, "t.db")
    message = make_message()
    await store.accept([message])
    await store.redact_message(message.id)

    change = await store.mark_submitted(
        message.id,
        [submitted(message, "r1")],
        link="smsc-a",
        at=T0 + 1,
        source=StatusSource.SUBMIT_RESP,
    )

    assert change.message is not None
    assert (change.message.text, change.message.body) == (None, b"")
    record = await store.get(message.id)
    assert record is not None and (record.message.text, record.message.body) == (None, b"")
    await store.close()


async def test_receipts_applied_in_bulk_answer_like_one_call_each(make_store: StoreFactory) -> None:
    bulk, single = await reopened(make_store, "bulk.db"), await reopened(make_store, "one.db")
    message = make_message()
    for store in (bulk, single):
        await store.accept([make_message_like(message)])
        await store.mark_submitted(
            message.id,
            [submitted(message, "b1", 0, 2), submitted(message, "b2", 1, 2)],
            link="smsc-a",
            at=T0 + 1,
            source=StatusSource.SUBMIT_RESP,
        )
    receipts = [
        SegmentReceipt("smsc-a", "b1", SegmentStatus.DELIVERED, T0 + 2, StatusSource.RECEIPT),
        SegmentReceipt("smsc-a", "nobody", SegmentStatus.DELIVERED, T0 + 2, StatusSource.RECEIPT),
        SegmentReceipt(
            "smsc-a", "b2", SegmentStatus.UNDELIVERABLE, T0 + 3, StatusSource.RECEIPT, "err:001"
        ),
        SegmentReceipt("smsc-a", "b2", SegmentStatus.DELIVERED, T0 + 4, StatusSource.RECEIPT),
    ]

    together = await bulk.apply_segment_statuses(receipts)
    one_by_one = [
        await single.apply_segment_status(
            r.link, r.carrier_id, r.status, at=r.at, source=r.source, detail=r.detail
        )
        for r in receipts
    ]

    assert [(c.changed, c.message and c.message.status) for c in together] == [
        (c.changed, c.message and c.message.status) for c in one_by_one
    ]
    assert [c.changed for c in together] == [True, False, True, False]
    records = [await s.get(message.id) for s in (bulk, single)]
    assert records[0] is not None and records[1] is not None
    assert records[0].message.status is MessageStatus.UNDELIVERABLE
    assert [h.event for h in records[0].history] == [h.event for h in records[1].history]
    await bulk.close()
    await single.close()


async def test_submit_results_recorded_in_bulk_answer_like_one_call_each(
    make_store: StoreFactory,
) -> None:
    bulk, single = await reopened(make_store, "bulk.db"), await reopened(make_store, "one.db")
    first, second = make_message(), make_message()
    for store in (bulk, single):
        await store.accept([make_message_like(first), make_message_like(second)])
    results = [
        SubmitResult(
            first.id, [submitted(first, "c1", 0, 2)], "smsc-a", T0 + 1, StatusSource.SUBMIT_RESP
        ),
        SubmitResult(
            second.id, [submitted(second, "c3")], "smsc-b", T0 + 1, StatusSource.SUBMIT_RESP
        ),
        SubmitResult(
            "no-such-id", [submitted(first, "c9")], "smsc-a", T0 + 1, StatusSource.SUBMIT_RESP
        ),
        SubmitResult(
            first.id, [submitted(first, "c2", 1, 2)], "smsc-a", T0 + 2, StatusSource.SUBMIT_RESP
        ),
    ]

    together = await bulk.mark_submitted_many(results)
    one_by_one = [
        await single.mark_submitted(r.message_id, r.segments, link=r.link, at=r.at, source=r.source)
        for r in results
    ]

    summary = [(c.changed, c.message and c.message.status) for c in together]
    assert summary == [(c.changed, c.message and c.message.status) for c in one_by_one]
    assert summary[2] == (False, None)
    for message in (first, second):
        records = [await s.get(message.id) for s in (bulk, single)]
        assert records[0] is not None and records[1] is not None
        assert records[0].message.status is MessageStatus.SUBMITTED
        assert [s.carrier_id for s in records[0].segments] == [
            s.carrier_id for s in records[1].segments
        ]
        assert [h.event for h in records[0].history] == [h.event for h in records[1].history]
    # The correlation entries are in place: receipts find both parts of the first message.
    receipt = await bulk.apply_segment_status(
        "smsc-a", "c2", SegmentStatus.DELIVERED, at=T0 + 3, source=StatusSource.RECEIPT
    )
    assert receipt.message is not None and receipt.message.id == first.id
    await bulk.close()
    await single.close()


def make_message_like(message: Message) -> Message:
    copy = make_message()
    copy.id = message.id
    return copy


async def test_link_outcomes_are_applied_in_the_order_given(make_store: StoreFactory) -> None:
    """A receipt finds the carrier id of a submit result given before it in the same call; one
    given before its submit result finds nothing (the caller holds it), and it all survives a
    reopen."""
    path = "t.db"
    store = await reopened(make_store, path)
    first, second = make_message(), make_message()
    await store.accept([first, second])
    submit_sm_resp = StatusSource.SUBMIT_RESP
    changes = await store.record_link_outcomes(
        [
            SubmitResult(first.id, [submitted(first, "c1")], "smsc-a", T0 + 1, submit_sm_resp),
            SegmentReceipt("smsc-a", "c1", SegmentStatus.DELIVERED, T0 + 1, StatusSource.RECEIPT),
            SegmentReceipt("smsc-a", "c2", SegmentStatus.DELIVERED, T0 + 1, StatusSource.RECEIPT),
            SubmitResult(second.id, [submitted(second, "c2")], "smsc-a", T0 + 1, submit_sm_resp),
        ]
    )
    assert [(c.changed, c.message and c.message.status) for c in changes] == [
        (True, MessageStatus.SUBMITTED),
        (True, MessageStatus.DELIVERED),
        (False, None),
        (True, MessageStatus.SUBMITTED),
    ]
    await store.close()
    store = await reopened(make_store, path)
    for message, status in ((first, MessageStatus.DELIVERED), (second, MessageStatus.SUBMITTED)):
        record = await store.get(message.id)
        assert record is not None and record.message.status is status
    await store.close()
