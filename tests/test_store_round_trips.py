"""The PostgreSQL writer's database work per batch: a plain INSERT or UPDATE for many rows goes
in one execution (its set-based form, `gateway.store.dialect.set_based`), a batch of intakes
is one statement, a batch of submit results and receipts a fixed number of round trips however
many messages it holds; and where the set-based form cannot say what row by row would (a key
repeated), the rows still go one by one. Skips, saying why, where PostgreSQL is absent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dlr.status import MessageStatus, SegmentStatus, StatusSource
from gateway.messages import Segment
from gateway.store.base import SegmentReceipt, SubmitResult
from gateway.store.dialect import set_based
from gateway.store.message_ops import _INSERT_CONTENT, _INSERT_STATE
from gateway.store.postgres import _HEARTBEAT, PostgresMessageStore
from gateway.store.transaction import (
    _INSERT_HISTORY,
    _UPDATE_SEGMENT,
    _UPDATE_STATE,
    _UPSERT_SEGMENT,
)
from tests.store_backends import store_factory
from tests.test_store import T0, make_message

COLUMNS = {
    "t": {"id": "text", "a": "bigint", "b": "double precision", "c": "text"},
}


def test_plain_inserts_and_updates_have_a_set_based_form() -> None:
    insert = set_based("INSERT INTO t (id, a) VALUES (?, ?)", COLUMNS)
    assert insert is not None
    assert insert.sql == "INSERT INTO t (id, a) SELECT * FROM unnest(?::text[], ?::bigint[])"
    assert insert.keys == ()
    update = set_based("UPDATE t SET a = ?, c = COALESCE(?, c) WHERE id = ? AND b < ?", COLUMNS)
    assert update is not None
    assert update.sql == (
        "UPDATE t SET a = tandem_rows.c1, c = COALESCE(tandem_rows.c2, c) "
        "FROM unnest(?::bigint[], ?::text[], ?::text[], ?::double precision[]) "
        "AS tandem_rows(c1, c2, c3, c4) WHERE id = tandem_rows.c3 AND b < tandem_rows.c4"
    )
    assert update.keys == (2,)
    upsert = set_based(
        "INSERT INTO t (id, a) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET a = excluded.a",
        COLUMNS,
    )
    assert upsert is not None and upsert.keys == (0,)


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO t (id, a) VALUES (?, ?) RETURNING id",
        "UPDATE t SET a = a + ? WHERE id = ?",
        "UPDATE t SET a = ? WHERE id IN (SELECT id FROM t WHERE c = ?)",
        "UPDATE t SET a = ? WHERE b < ?",  # no key: nothing says which rows are whose
        "INSERT INTO t (id, nope) VALUES (?, ?)",  # a column the catalog does not know
        "DELETE FROM t WHERE id = ?",
    ],
)
def test_other_statements_have_none(sql: str) -> None:
    assert set_based(sql, COLUMNS) is None


def test_a_repeated_key_keeps_the_rows_apart() -> None:
    update = set_based("UPDATE t SET a = ? WHERE id = ?", COLUMNS)
    assert update is not None
    assert update.takes([(1, "x"), (2, "y")])
    assert not update.takes([(1, "x"), (2, "x")])


class AnyColumn(dict[str, str]):
    """A table that has every column, all text."""

    def __contains__(self, name: object) -> bool:
        return True

    def __missing__(self, name: str) -> str:
        return "text"


class AnyTable(dict[str, dict[str, str]]):
    """A schema that has every table."""

    def get(self, name: str, default: object = None) -> dict[str, str]:  # type: ignore[override]
        return AnyColumn()


def test_the_stores_own_writes_have_set_based_forms() -> None:
    columns = AnyTable()
    for sql in (
        _INSERT_CONTENT,
        _INSERT_STATE,
        _INSERT_HISTORY,
        _UPSERT_SEGMENT,
        _UPDATE_STATE,
        _UPDATE_SEGMENT,
    ):
        assert set_based(sql, columns) is not None, sql


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[PostgresMessageStore]:
    async for make in store_factory("postgresql", tmp_path):
        opened = make("round-trips")
        assert isinstance(opened, PostgresMessageStore)
        await opened.open()
        try:
            yield opened
        finally:
            await opened.close()


def statements(store: PostgresMessageStore) -> int:
    return int(store._writer._core._pg.statements)  # type: ignore[union-attr]


async def test_a_batchs_round_trips_do_not_grow_with_its_messages(
    store: PostgresMessageStore,
) -> None:
    for count in (3, 60):
        messages = [make_message() for _ in range(count)]
        before = statements(store)
        await store.accept(messages)
        accepted = statements(store) - before
        before = statements(store)
        await store.mark_submitted_many(
            [
                SubmitResult(
                    m.id,
                    (Segment(m.id, 0, 1, carrier_id=f"c-{m.id}"),),
                    "smsc",
                    T0 + 1,
                    StatusSource.SUBMIT_RESP,
                )
                for m in messages
            ]
        )
        submitted = statements(store) - before
        before = statements(store)
        changes = await store.apply_segment_statuses(
            [
                SegmentReceipt(
                    "smsc", f"c-{m.id}", SegmentStatus.DELIVERED, T0 + 2, StatusSource.RECEIPT
                )
                for m in messages
            ]
        )
        received = statements(store) - before
        # One statement for the intakes; BEGIN, the read of the messages, the writes, COMMIT.
        assert (accepted, submitted, received) == (1, 4, 4), count
        assert all(c.changed for c in changes)
        for m in messages:
            record = await store.get(m.id)
            assert record is not None
            assert record.message.status is MessageStatus.DELIVERED
            assert [s.carrier_id for s in record.segments] == [f"c-{m.id}"]
            events = [entry.event.status for entry in record.history]
            assert events[0] is MessageStatus.QUEUED and events[-1] is MessageStatus.DELIVERED


async def test_rows_with_a_repeated_key_still_go_in_order(store: PostgresMessageStore) -> None:
    message = make_message()
    await store.accept([message])

    def update_twice(tx: object) -> int:
        sql = "UPDATE message_state SET last_error = ? WHERE id = ?"
        rows = [("first", message.id), ("second", message.id)]
        return int(tx.executemany(sql, rows).rowcount)  # type: ignore[attr-defined]

    await store._write(update_twice)
    record = await store.get(message.id)
    assert record is not None
    assert record.message.last_error == "second"  # the last row wins, as row by row


async def test_a_set_based_update_says_how_many_rows_it_changed(
    store: PostgresMessageStore,
) -> None:
    messages = [make_message() for _ in range(5)]
    await store.accept(messages)

    def update(tx: object) -> int:
        sql = "UPDATE message_state SET last_error = ? WHERE id = ?"
        rows = [("x", m.id) for m in messages[:3]] + [("x", "no-such-message")]
        return int(tx.executemany(sql, rows).rowcount)  # type: ignore[attr-defined]

    assert await store._write(update) == 3


async def test_a_readers_call_is_one_round_trip(store: PostgresMessageStore) -> None:
    sent: list[str] = []
    async with store._pool.acquire() as conn:  # type: ignore[union-attr]
        # The pool's one idle connection: the calls below run on it, one after the other.
        conn.add_query_logger(lambda record: sent.append(record.query))
    for _ in range(3):
        await store.heartbeat()
    # Only the leases' own statement: no reset of the session after each call.
    assert sent == [_HEARTBEAT] * 3
