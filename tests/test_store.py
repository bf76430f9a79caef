"""The SQLite message store, on real database files: durability, group commit, restart,
receipt correlation and the status rules it applies."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dlr.aggregate import ReportMode, reports
from dlr.status import MessageStatus, SegmentStatus, StatusEvent, StatusSource
from gateway.messages import Channel, Message, MessageKind, Segment
from gateway.store import (
    DuplicateMessageId,
    MessageStore,
    SqliteMessageStore,
    StoreClosed,
)
from gateway.store.sqlstore import SqlMessageStore
from tests.daemon_processes import process_ends
from tests.store_backends import StoreFactory, make_store, store_factory

__all__ = ["make_store"]  # the fixture, over both backends

REPO = Path(__file__).resolve().parent.parent
T0 = 1_800_000_000.0


def make_message(**fields: object) -> Message:
    values: dict[str, object] = {
        "account": "acme",
        "channel": Channel.HTTP,
        "source_addr": "ACME",
        "destination": "447700900123",
        "body": b"Your code is 123456",
        "text": "Your code is 123456",
        "status": MessageStatus.QUEUED,
        "created_at": T0,
    }
    values.update(fields)
    return Message(**values)  # type: ignore[arg-type]


# Every behaviour holds on both backends, and wherever the writer runs: in a thread, in its own
# process, or on the event loop's thread.
STORES = [
    ("sqlite", "thread"),
    ("sqlite", "process"),
    ("sqlite", "inline"),
    ("postgresql", "thread"),
]


@pytest.fixture(params=STORES, ids=["-".join(p) for p in STORES])
async def store(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[SqlMessageStore]:
    backend, writer = request.param
    async for make in store_factory(backend, tmp_path / "data"):
        s = make("tandem.db", writer=writer)
        await s.open()
        yield s
        await s.close()


async def submit(
    store: SqlMessageStore, message: Message, carrier_ids: list[str], link: str = "smsc-a"
) -> None:
    total = len(carrier_ids)
    segments = [Segment(message.id, i, total, carrier_id=c) for i, c in enumerate(carrier_ids)]
    await store.mark_submitted(
        message.id, segments, link=link, at=T0 + 1, source=StatusSource.SUBMIT_RESP
    )


async def test_sqlite_store_satisfies_the_store_interface(store: SqlMessageStore) -> None:
    assert isinstance(store, MessageStore)


async def test_accepted_message_reads_back_field_for_field_with_its_history(
    store: SqlMessageStore,
) -> None:
    message = make_message(
        kind=MessageKind.OTP,
        body=bytes(range(256)),
        validity_at=T0 + 600,
        send_at=T0 + 5,
        route="uk-otp",
        targets=["smsc-a", "smsc-b"],
        strategy="failover",
        callback_url="https://example.com/cb",
        reference="order-17",
        source_ton=5,
        data_coding=8,
        esm_class=0x40,
    )
    await store.accept([message])

    record = await store.get(message.id)

    assert record is not None
    assert record.message == message
    assert record.message.priority == 0  # OTP priority came with the kind
    assert record.segments == []
    [entry] = record.history
    assert entry.event.status is MessageStatus.QUEUED
    assert entry.event.source is StatusSource.INTAKE
    assert entry.segment_index is None


async def test_get_of_an_unknown_id_is_none(store: SqlMessageStore) -> None:
    assert await store.get("00000000000000000000") is None


async def test_duplicate_id_keeps_nothing_of_that_call_and_spares_concurrent_callers(
    store: SqlMessageStore,
) -> None:
    first = make_message()
    await store.accept([first])
    fresh = make_message()
    again = make_message(id=first.id, destination="15551234567")
    neighbours = [make_message() for _ in range(20)]

    results = await asyncio.gather(
        store.accept([fresh, again]),
        *(store.accept([m]) for m in neighbours),
        return_exceptions=True,
    )

    assert isinstance(results[0], DuplicateMessageId)
    assert results[1:] == [None] * 20
    assert await store.get(fresh.id) is None
    stored_first = await store.get(first.id)
    assert stored_first is not None and stored_first.message.destination == "447700900123"
    for m in neighbours:
        assert await store.get(m.id) is not None
    assert store.stats().failed_operations == 1


async def test_concurrent_accepts_share_a_few_commits(store: SqlMessageStore) -> None:
    before = store.stats()
    messages = [make_message() for _ in range(500)]

    await asyncio.gather(*(store.accept([m]) for m in messages))

    after = store.stats()
    assert after.operations - before.operations == 500
    assert after.rows - before.rows == 500
    commits = after.commits - before.commits
    assert 1 <= commits <= 50, commits  # 500 callers, one commit each would be 500
    assert after.largest_batch >= 10
    assert len(await store.load_pending()) == 500


@pytest.mark.parametrize("writer", ["thread", "process", "inline"])
async def test_acknowledged_ids_survive_sigkill_of_the_process(tmp_path: Path, writer: str) -> None:
    db = tmp_path / "tandem.db"
    child = textwrap.dedent(
        f"""
        import asyncio, sys
        from gateway.messages import Channel, Message
        from gateway.store import SqliteMessageStore

        async def caller(store):
            while True:
                m = Message(account="a", channel=Channel.HTTP, source_addr="S",
                            destination="447700900123", body=b"x")
                await store.accept([m])
                print(m.id, flush=True)  # acknowledged: the commit carrying it is done

        async def main():
            store = SqliteMessageStore({str(db)!r}, writer={writer!r})
            await store.open()
            print(store.writer_pid, flush=True)
            await asyncio.gather(*(caller(store) for _ in range(16)))

        asyncio.run(main())
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", child],
        cwd=REPO,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert process.stdout is not None
    writer_pid = process.stdout.readline().decode().strip()
    acknowledged = [process.stdout.readline().decode().strip() for _ in range(500)]
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    # Whatever the child printed after we stopped counting was acknowledged too.
    acknowledged += process.stdout.read().decode().split()
    assert all(len(i) == 20 for i in acknowledged)

    reopened = SqliteMessageStore(db)
    await reopened.open()
    try:
        stored = {m.id for m in await reopened.load_pending()}
    finally:
        await reopened.close()
    missing = set(acknowledged) - stored
    assert not missing, f"{len(missing)} acknowledged ids lost"
    if writer == "process":  # its socket closed with the killed process: it ended too
        assert await process_ends(int(writer_pid), within=10.0), "the writer process outlived it"
    else:
        assert writer_pid == "None"


async def test_restart_loads_every_unsent_message_most_urgent_first(
    make_store: StoreFactory,
) -> None:
    db = "tandem.db"
    store = make_store(db)
    await store.open()
    bulk = make_message(kind=MessageKind.BULK)
    otp = make_message(kind=MessageKind.OTP)
    not_routed = make_message(status=MessageStatus.ACCEPTED)
    retried = make_message()
    sent = make_message()
    failed = make_message()
    await store.accept([bulk, otp, not_routed, retried, sent, failed])
    await store.requeue(
        retried.id,
        next_attempt_at=T0 + 30,
        error="0x00000058 ESME_RTHROTTLED",
        at=T0 + 2,
        source=StatusSource.SUBMIT_RESP,
    )
    await submit(store, sent, ["77"])
    await store.fail(
        failed.id, MessageStatus.FAILED, error="x", at=T0 + 2, source=StatusSource.SUBMIT_RESP
    )
    await store.close()

    store = make_store(db)
    await store.open()
    try:
        pending = await store.load_pending()
    finally:
        await store.close()

    assert [m.id for m in pending] == [otp.id, not_routed.id, retried.id, bulk.id]
    resumed = next(m for m in pending if m.id == retried.id)
    assert resumed.next_attempt_at == T0 + 30
    assert resumed.attempts == 1


async def test_submitted_message_is_correlated_by_link_and_carrier_id(
    store: SqlMessageStore,
) -> None:
    message = make_message()
    other = make_message()
    await store.accept([message, other])
    await submit(store, message, ["1001"], link="smsc-a")
    await submit(store, other, ["1001"], link="smsc-b")  # same carrier id, other link

    ref = await store.find_segment("smsc-a", "1001")
    assert ref is not None
    assert (ref.message_id, ref.segment_index) == (message.id, 0)
    ref_b = await store.find_segment("smsc-b", "1001")
    assert ref_b is not None and ref_b.message_id == other.id
    assert await store.find_segment("smsc-a", "1002") is None

    record = await store.get(message.id)
    assert record is not None
    assert record.message.status is MessageStatus.SUBMITTED
    assert record.message.link == "smsc-a"
    assert record.message.attempts == 1
    [segment] = record.segments
    assert (segment.status, segment.carrier_id, segment.submitted_at) == (
        SegmentStatus.SUBMITTED,
        "1001",
        T0 + 1,
    )


async def test_receipt_moves_segment_and_message_and_is_recorded(
    store: SqlMessageStore,
) -> None:
    message = make_message()
    await store.accept([message])
    await submit(store, message, ["abc"])

    change = await store.apply_segment_status(
        "smsc-a",
        "abc",
        SegmentStatus.DELIVERED,
        at=T0 + 9,
        source=StatusSource.RECEIPT,
        detail="stat:DELIVRD err:000",
        error="000",
    )

    assert change.changed
    assert change.message is not None and change.message.status is MessageStatus.DELIVERED
    assert change.segment is not None and change.segment.done_at == T0 + 9
    assert change.update is not None and change.update.message_status is MessageStatus.DELIVERED
    record = await store.get(message.id)
    assert record is not None
    assert record.message.status is MessageStatus.DELIVERED
    assert record.segments[0].status is SegmentStatus.DELIVERED
    assert record.segments[0].error == "000"
    assert [
        (h.segment_index, h.event.status, h.event.source, h.event.detail)
        for h in record.history[-2:]
    ] == [
        (0, SegmentStatus.DELIVERED, StatusSource.RECEIPT, "stat:DELIVRD err:000"),
        (None, MessageStatus.DELIVERED, StatusSource.AGGREGATE, "stat:DELIVRD err:000"),
    ]


async def test_receipt_result_tells_which_customer_reports_are_due(
    store: SqlMessageStore,
) -> None:
    message = make_message()
    await store.accept([message])
    await submit(store, message, ["r1"])

    enroute = await store.apply_segment_status(
        "smsc-a", "r1", SegmentStatus.ENROUTE, at=T0 + 2, source=StatusSource.RECEIPT
    )
    delivered = await store.apply_segment_status(
        "smsc-a", "r1", SegmentStatus.DELIVERED, at=T0 + 3, source=StatusSource.RECEIPT
    )
    duplicate = await store.apply_segment_status(
        "smsc-a", "r1", SegmentStatus.DELIVERED, at=T0 + 4, source=StatusSource.RECEIPT
    )

    assert enroute.update is not None and delivered.update is not None
    assert duplicate.update is not None and not duplicate.changed
    assert [r.status for r in reports(enroute.update, ReportMode.MESSAGE)] == [
        MessageStatus.ENROUTE
    ]
    assert [r.status for r in reports(delivered.update, ReportMode.MESSAGE)] == [
        MessageStatus.DELIVERED
    ]
    assert reports(duplicate.update, ReportMode.MESSAGE) == []


async def test_receipt_for_an_unknown_carrier_id_changes_nothing(
    store: SqlMessageStore,
) -> None:
    change = await store.apply_segment_status(
        "smsc-a", "nope", SegmentStatus.DELIVERED, at=T0, source=StatusSource.RECEIPT
    )
    assert not change.changed and change.message is None


async def test_late_receipt_after_a_final_status_is_recorded_but_changes_nothing(
    store: SqlMessageStore,
) -> None:
    message = make_message()
    await store.accept([message])
    await submit(store, message, ["42"])
    await store.apply_segment_status(
        "smsc-a", "42", SegmentStatus.DELIVERED, at=T0 + 5, source=StatusSource.RECEIPT
    )

    late = await store.apply_segment_status(
        "smsc-a",
        "42",
        SegmentStatus.UNDELIVERABLE,
        at=T0 + 50,
        source=StatusSource.RECEIPT,
        detail="late",
    )

    assert not late.changed
    record = await store.get(message.id)
    assert record is not None
    assert record.message.status is MessageStatus.DELIVERED
    assert record.segments[0].status is SegmentStatus.DELIVERED
    last = record.history[-1]
    assert (last.event.status, last.event.changed, last.event.detail) == (
        SegmentStatus.UNDELIVERABLE,
        False,
        "late",
    )


async def test_unknown_after_receipt_timeout_yields_to_a_later_definitive_receipt(
    store: SqlMessageStore,
) -> None:
    message = make_message()
    await store.accept([message])
    await submit(store, message, ["9"])
    timed_out = await store.set_segment_status(
        message.id, 0, SegmentStatus.UNKNOWN, at=T0 + 3600, source=StatusSource.TIMEOUT
    )
    assert timed_out.message is not None and timed_out.message.status is MessageStatus.UNKNOWN

    verdict = await store.apply_segment_status(
        "smsc-a", "9", SegmentStatus.DELIVERED, at=T0 + 4000, source=StatusSource.RECEIPT
    )

    assert verdict.changed
    assert verdict.message is not None and verdict.message.status is MessageStatus.DELIVERED


async def test_multipart_message_submitted_one_segment_at_a_time(
    store: SqlMessageStore,
) -> None:
    message = make_message()
    await store.accept([message])
    first = await store.mark_submitted(
        message.id,
        [Segment(message.id, 0, 2, carrier_id="a1")],
        link="smsc-a",
        at=T0 + 1,
        source=StatusSource.SUBMIT_RESP,
    )
    assert first.message is not None
    assert first.message.status is MessageStatus.QUEUED  # part 2 not acknowledged yet
    assert first.message.attempts == 0

    second = await store.mark_submitted(
        message.id,
        [Segment(message.id, 1, 2, carrier_id="a2")],
        link="smsc-a",
        at=T0 + 2,
        source=StatusSource.SUBMIT_RESP,
    )
    assert second.message is not None
    assert second.message.status is MessageStatus.SUBMITTED
    assert second.message.attempts == 1

    await store.apply_segment_status(
        "smsc-a", "a2", SegmentStatus.DELIVERED, at=T0 + 3, source=StatusSource.RECEIPT
    )
    half = await store.get(message.id)
    assert half is not None and half.message.status is MessageStatus.SUBMITTED
    done = await store.apply_segment_status(
        "smsc-a", "a1", SegmentStatus.DELIVERED, at=T0 + 4, source=StatusSource.RECEIPT
    )
    assert done.message is not None and done.message.status is MessageStatus.DELIVERED


async def test_requeue_counts_the_attempt_and_keeps_error_and_backoff(
    store: SqlMessageStore,
) -> None:
    message = make_message()
    await store.accept([message])

    for attempt in (1, 2):
        change = await store.requeue(
            message.id,
            next_attempt_at=T0 + 10 * attempt,
            error="0x00000058 ESME_RTHROTTLED",
            at=T0 + attempt,
            source=StatusSource.SUBMIT_RESP,
        )
        assert change.changed
        assert change.message is not None and change.message.attempts == attempt

    record = await store.get(message.id)
    assert record is not None
    assert record.message.status is MessageStatus.QUEUED
    assert (record.message.attempts, record.message.next_attempt_at) == (2, T0 + 20)
    assert record.message.last_error == "0x00000058 ESME_RTHROTTLED"
    details = [h.event.detail for h in record.history[1:]]
    assert details == [
        f"retry 1 at {T0 + 10:.3f}: 0x00000058 ESME_RTHROTTLED",
        f"retry 2 at {T0 + 20:.3f}: 0x00000058 ESME_RTHROTTLED",
    ]

    submitted = make_message()
    await store.accept([submitted])
    await submit(store, submitted, ["5"])
    refused = await store.requeue(
        submitted.id,
        next_attempt_at=T0,
        error="late",
        at=T0 + 2,
        source=StatusSource.QUEUE,
    )
    assert not refused.changed
    assert refused.message is not None and refused.message.status is MessageStatus.SUBMITTED


async def test_permanent_error_fails_the_message_with_the_smpp_status(
    store: SqlMessageStore,
) -> None:
    message = make_message()
    await store.accept([message])

    change = await store.fail(
        message.id,
        MessageStatus.FAILED,
        error="0x0000000B ESME_RINVDSTADR",
        at=T0 + 1,
        source=StatusSource.SUBMIT_RESP,
    )

    assert change.changed
    record = await store.get(message.id)
    assert record is not None
    assert (record.message.status, record.message.attempts, record.message.last_error) == (
        MessageStatus.FAILED,
        1,
        "0x0000000B ESME_RINVDSTADR",
    )
    assert record.history[-1].event.detail == "0x0000000B ESME_RINVDSTADR"
    again = await store.fail(
        message.id, MessageStatus.REJECTED, error="y", at=T0 + 2, source=StatusSource.OPERATOR
    )
    assert not again.changed
    with pytest.raises(ValueError):
        await store.fail(
            message.id, MessageStatus.QUEUED, error=None, at=T0, source=StatusSource.QUEUE
        )


async def test_expire_due_marks_only_unsent_messages_whose_validity_ended(
    store: SqlMessageStore,
) -> None:
    ended = make_message(validity_at=T0 + 10)
    later = make_message(validity_at=T0 + 100)
    forever = make_message()
    sent = make_message(validity_at=T0 + 10)
    await store.accept([ended, later, forever, sent])
    await submit(store, sent, ["s"])

    expired = await store.expire_due(T0 + 10, source=StatusSource.QUEUE)

    assert expired == [ended.id]
    record = await store.get(ended.id)
    assert record is not None
    assert (record.message.status, record.message.attempts) == (MessageStatus.EXPIRED, 0)
    assert {m.id for m in await store.load_pending()} == {later.id, forever.id}


async def test_cancel_works_only_while_the_message_is_unsent(store: SqlMessageStore) -> None:
    queued = make_message()
    sent = make_message()
    await store.accept([queued, sent])
    await submit(store, sent, ["c"])

    cancelled = await store.cancel(queued.id, at=T0 + 1, source=StatusSource.OPERATOR)
    refused = await store.cancel(sent.id, at=T0 + 1, source=StatusSource.OPERATOR)

    assert cancelled.changed and cancelled.message is not None
    assert cancelled.message.status is MessageStatus.DELETED
    assert not refused.changed and refused.message is not None
    assert refused.message.status is MessageStatus.SUBMITTED
    late_requeue = await store.requeue(
        queued.id, next_attempt_at=T0, error="e", at=T0 + 2, source=StatusSource.QUEUE
    )
    assert not late_requeue.changed


async def test_segments_awaiting_receipts_are_listed_by_submission_age(
    store: SqlMessageStore,
) -> None:
    old, recent, finished = make_message(), make_message(), make_message()
    await store.accept([old, recent, finished])
    for message, at, carrier_id in ((old, T0, "o"), (recent, T0 + 100, "r"), (finished, T0, "f")):
        await store.mark_submitted(
            message.id,
            [Segment(message.id, 0, 1, carrier_id=carrier_id)],
            link="smsc-a",
            at=at,
            source=StatusSource.SUBMIT_RESP,
        )
    await store.apply_segment_status(
        "smsc-a", "f", SegmentStatus.DELIVERED, at=T0 + 1, source=StatusSource.RECEIPT
    )

    due = await store.list_submitted_older_than(T0 + 50)

    assert [(s.message_id, s.index, s.carrier_id) for s in due] == [(old.id, 0, "o")]


async def test_record_history_adds_an_event_without_changing_status(
    store: SqlMessageStore,
) -> None:
    message = make_message()
    await store.accept([message])
    await store.record_history(
        message.id,
        status=MessageStatus.QUEUED,
        source=StatusSource.OPERATOR,
        at=T0 + 1,
        detail="moved to smsc-b (failover)",
    )
    record = await store.get(message.id)
    assert record is not None
    assert record.message.status is MessageStatus.QUEUED
    assert record.history[-1].event.detail == "moved to smsc-b (failover)"
    assert not record.history[-1].event.changed


async def test_record_history_many_adds_each_event_to_its_own_message(
    store: SqlMessageStore,
) -> None:
    first, second = make_message(), make_message()
    await store.accept([first, second])
    await store.record_history_many(
        [
            (
                first.id,
                StatusEvent(T0 + 1, MessageStatus.DELIVERED, StatusSource.CALLBACK, "first", False),
            ),
            (
                second.id,
                StatusEvent(T0 + 2, MessageStatus.FAILED, StatusSource.CALLBACK, "second", False),
            ),
        ]
    )
    for message, detail, status in (
        (first, "first", MessageStatus.DELIVERED),
        (second, "second", MessageStatus.FAILED),
    ):
        record = await store.get(message.id)
        assert record is not None
        assert record.message.status is MessageStatus.QUEUED
        last = record.history[-1].event
        assert (last.detail, last.status, last.changed) == (detail, status, False)


async def test_writes_after_close_are_refused(make_store: StoreFactory) -> None:
    store = make_store("t.db")
    await store.open()
    await store.close()
    with pytest.raises(StoreClosed):
        await store.accept([make_message()])


async def test_close_waits_for_writes_already_requested(make_store: StoreFactory) -> None:
    db = "t.db"
    store = make_store(db)
    await store.open()
    messages = [make_message() for _ in range(50)]
    pending = [asyncio.ensure_future(store.accept([m])) for m in messages]
    await asyncio.sleep(0)  # the accepts are queued, none committed yet
    await store.close()
    await asyncio.gather(*pending)

    reopened = make_store(db, synchronous="FULL")
    await reopened.open()
    try:
        assert len(await reopened.load_pending()) == 50
    finally:
        await reopened.close()


def test_synchronous_mode_is_normal_or_full() -> None:
    with pytest.raises(ValueError):
        SqliteMessageStore("x.db", synchronous="OFF")  # type: ignore[arg-type]
