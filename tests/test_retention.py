"""Retention (`[retention]`, gateway.store.retention): the purge removes what is final and old
enough with its segments and history, gives up receipts and MOs owed too long, removes expired
OTPs and old idempotency answers, and keeps everything else (messages still in play, a final
message whose receipt is still owed, anything younger than its cutoff); the dry run counts the
same rows it would remove; `tandem store purge` does both from the command line. On SQLite and
on PostgreSQL (skipped, saying why, where PostgreSQL does not answer)."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import time
from pathlib import Path

import pytest

from dlr.status import MessageStatus, StatusSource
from gateway.config import parse_config
from gateway.messages import Channel, Message, MessageIdGenerator
from gateway.store.base import IdempotencyRecord, InboundRow, InboundState, OtpRecord
from gateway.store.retention import DAY, Cutoffs, StoreRetention
from gateway.store.sqlstore import SqlMessageStore
from gateway.store.transaction import _execute
from tests.daemon_processes import ROOT, TANDEM
from tests.store_backends import BACKENDS, POSTGRES_DSN, StoreFactory, make_store, store_factory
from tests.waiting import wait_for

__all__ = ["make_store"]  # the fixture, over both backends

NOW = 1_800_000_000.0
OLD = NOW - 100 * DAY  # past every default cutoff (90 days for final messages)
RECENT = NOW - 1 * DAY


def message(created_at: float, ids: MessageIdGenerator, text: str) -> Message:
    return Message(
        id=ids.next_id(int(created_at * 1000)),
        account="acme",
        channel=Channel.HTTP,
        source_addr="Shop",
        destination="447700900123",
        body=text.encode(),
        created_at=created_at,
    )


async def seed(store: SqlMessageStore) -> dict[str, list[str]]:
    """Messages of each kind the purge must tell apart, by what should happen to them."""
    ids = MessageIdGenerator()
    kinds: dict[str, list[str]] = {"goes": [], "stays": []}
    old_final = [message(OLD, ids, f"old final {n}") for n in range(7)]
    old_queued = message(OLD, ids, "old but still queued")
    old_owing = message(OLD, ids, "old final, receipt still owed")
    recent_final = message(RECENT, ids, "recent final")
    await store.accept([*old_final, old_queued, old_owing, recent_final])
    for item in [*old_final, old_owing]:
        await store.fail(
            item.id, MessageStatus.FAILED, error="refused", at=OLD, source=StatusSource.SUBMIT_RESP
        )
    await store.fail(
        recent_final.id,
        MessageStatus.FAILED,
        error="refused",
        at=RECENT,
        source=StatusSource.SUBMIT_RESP,
    )
    kinds["goes"] = [m.id for m in old_final]
    kinds["stays"] = [old_queued.id, old_owing.id, recent_final.id]
    kinds["owing"] = [old_owing.id]
    return kinds


async def mark_owed(store: SqlMessageStore, message_id: str, updated_at: float) -> None:
    await store._write(
        _execute,
        "UPDATE message_state SET receipt_owed = 'failed', updated_at = ? WHERE id = ?",
        (updated_at, message_id),
    )


async def table_count(store: SqlMessageStore, table: str) -> int:
    return int((await store._read(f"SELECT COUNT(*) FROM {table}", ()))[0][0])


async def seed_other_rows(store: SqlMessageStore) -> None:
    for n, expires_at in enumerate((OLD, OLD, NOW + 600)):
        await store.create_otp(
            OtpRecord(
                id=f"otp_{n:020d}",
                key_id="k1",
                to="+447700900123",
                status="expired" if expires_at < NOW else "pending",
                code_hash="h",
                code_length=6,
                created_at=expires_at - 600,
                expires_at=expires_at,
                max_checks=5,
                updated_at=expires_at - 600,
            )
        )
    for n, created_at in enumerate((OLD, NOW - 2 * DAY, NOW - 60)):
        await store.save_idempotency(
            IdempotencyRecord("k1", f"idem-{n}", "fp", 202, b"{}", created_at)
        )
    for received_at in (OLD, NOW - 60):
        await store.queue_mo("acme", b"pdu", received_at=received_at, expires_at=received_at + DAY)
    # Inbound MOs: an old one handed on (goes); an old one whose webhook is still owed, an old
    # part waiting for its message and a recent one (stay).
    for received_at, changes in (
        (OLD, {}),
        (OLD, {"webhook": "hooks", "webhook_next": NOW}),
        (OLD, {"state": InboundState.HELD, "part_of": "sim/1/2/3/2"}),
        (NOW - 60, {}),
    ):
        row = InboundRow(
            InboundState.ROUTED,
            "sim",
            "447700900123",
            "12345",
            0,
            "hi",
            b"hi",
            "[]",
            1,
            True,
            received_at,
        )
        await store.record_inbound(dataclasses.replace(row, **changes))


CONFIG = parse_config("[retention]\nbatch = 3\n", "test")  # small batches: several ops per step


async def test_the_purge_removes_what_is_old_and_done_and_keeps_the_rest(
    make_store: StoreFactory,
) -> None:
    store = make_store()
    await store.open()
    try:
        kinds = await seed(store)
        await seed_other_rows(store)
        await mark_owed(store, kinds["owing"][0], NOW - 2 * DAY)  # owed, but not for 7 days yet
        history_before = await table_count(store, "history")
        retention = StoreRetention(store)
        cutoffs = Cutoffs.from_config(CONFIG, NOW)
        counted = await retention.count(cutoffs)
        assert counted == {
            "owed_receipts": 0,
            "owed_mos": 1,
            "final_messages": 7,
            "otp": 2,
            "idempotency": 2,
            "inbound": 1,
        }
        removed = await retention.purge(cutoffs, batch=CONFIG.retention.batch)
        assert removed == counted
        assert retention.stats.ops >= 3 + 1 + 1 + 1  # 7 messages in batches of 3, and the rest
        for message_id in kinds["goes"]:
            assert await store.get(message_id) is None
        for message_id in kinds["stays"]:
            assert await store.get(message_id) is not None
        # Each removed message took its history along (accepted + failed: 2 rows each).
        assert await table_count(store, "history") == history_before - 2 * 7
        assert await table_count(store, "segments") == 0  # none was ever sent
        assert await table_count(store, "message_content") == 3
        assert await table_count(store, "otp") == 1
        assert await table_count(store, "idempotency") == 1
        assert await table_count(store, "mo_outbox") == 1
        assert await table_count(store, "inbound") == 3
        assert await retention.count(cutoffs) == dict.fromkeys(counted, 0)

        # A hundred days later the owed receipt is given up (7 days), and then its message
        # goes too, as does the one that was recent.
        later = Cutoffs.from_config(CONFIG, NOW + 100 * DAY)
        removed = await retention.purge(later, batch=CONFIG.retention.batch)
        assert removed["owed_receipts"] == 1
        assert removed["final_messages"] == 2
        assert await store.get(kinds["owing"][0]) is None
        assert await store.get(kinds["stays"][0]) is not None  # queued: never by age
    finally:
        await store.close()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_tandem_store_purge_counts_then_removes(backend: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    config = tmp_path / "tandem.toml"
    async for make in store_factory(backend, data):  # its stores' key: data/store.key
        store_section = ""
        if backend == "postgresql":
            store_section = (
                f'[store]\nbackend = "postgresql"\ndsn = "{POSTGRES_DSN}"\n'
                f'database_schema = "{make.schema("tandem.db")}"\n'
            )
        # Everything in seed() is older than a day except the recent message; keep half a day.
        config.write_text(
            f'data_dir = "{data}"\n{store_section}[retention]\nfinal_messages_days = 0.5\n',
            encoding="utf-8",
        )
        store = make()  # data/tandem.db, or the schema named in the config
        await store.open()
        try:
            await seed(store)
            now = time.time()  # the command's cutoffs are from the real clock
            for n, created_at in enumerate((now - 2 * DAY, now - 60)):
                await store.save_idempotency(
                    IdempotencyRecord("k1", f"idem-{n}", "fp", 202, b"{}", created_at)
                )
        finally:
            await store.close()

        def tandem(*argv: str) -> str:
            done = subprocess.run(
                [*TANDEM, "store", "purge", "-c", str(config), *argv],
                capture_output=True,
                text=True,
                cwd=ROOT,
                timeout=120,
            )
            assert done.returncode == 0, done.stderr
            return done.stdout

        dry = await asyncio.to_thread(tandem, "--dry-run")
        # The 7 old ones and the old one whose receipt is not owed here; the recent one and
        # the queued one stay. One idempotency answer is past [http] idempotency_seconds.
        assert "would remove          8  final messages" in dry
        assert "would remove          1  idempotency" in dry
        assert await counts(make, "message_state", "idempotency") == [10, 2]
        done = await asyncio.to_thread(tandem)
        assert "removed          8  final messages" in done
        assert "removed          1  idempotency" in done
        assert await counts(make, "message_state", "idempotency") == [2, 1]


async def counts(make: StoreFactory, *tables: str) -> list[int]:
    store = make()
    await store.open()
    try:
        return [await table_count(store, table) for table in tables]
    finally:
        await store.close()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_the_daemon_purges_on_its_own_every_interval(backend: str, tmp_path: Path) -> None:
    from gateway.app import Gateway

    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    async for make in store_factory(backend, data):
        store = make()  # data/tandem.db, or the schema named in the config
        await store.open()
        try:
            kinds = await seed(store)
        finally:
            await store.close()
        store_section = '[store]\nwriter = "thread"\n'
        if backend == "postgresql":
            store_section += (
                f'backend = "postgresql"\ndsn = "{POSTGRES_DSN}"\n'
                f'database_schema = "{make.schema("tandem.db")}"\n'
            )
        config = parse_config(
            f'data_dir = "{data}"\n{store_section}[smpp_server]\nenabled = false\n'
            "[http]\nenabled = false\n[retention]\nfinal_messages_days = 30\n"
            "interval_seconds = 1\n",
            "test",
        )
        gateway = Gateway(config)
        await gateway.start()
        try:
            assert gateway.retention is not None
            stats = gateway.retention.retention.stats
            # A run counts what it removed once the step is done: wait for the count, which
            # comes after every row went (a row seen gone may be the first of several ops).
            await wait_for(
                lambda: stats.removed.get("final_messages", 0) >= 8,  # noqa: B023 (awaited here)
                "a retention run to remove the final messages",
                interval=0.1,
            )
            for message_id in kinds["goes"]:
                assert await gateway.message_store.get(message_id) is None
            assert await gateway.message_store.get(kinds["stays"][0]) is not None
            # The seven, and the old final one that owes nothing here (no mark_owed).
            assert stats.removed["final_messages"] == 8
        finally:
            await gateway.stop()
