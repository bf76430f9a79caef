"""Retention (`[retention]`, gateway.store.retention): the purge removes what is final and old
enough with its segments and history, gives up receipts and MOs owed too long, removes expired
OTPs and old idempotency answers, and keeps everything else (messages still in play, a final
message whose receipt is still owed, anything younger than its cutoff); the dry run counts the
same rows it would remove; `tandem store purge` does both from the command line."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import subprocess
from pathlib import Path

from dlr.status import MessageStatus, StatusSource
from gateway.config import parse_config
from gateway.messages import Channel, Message, MessageIdGenerator
from gateway.store.base import IdempotencyRecord, InboundRow, InboundState, OtpRecord
from gateway.store.retention import DAY, Cutoffs, SqliteRetention
from gateway.store.sqlite import SqliteMessageStore
from tests.daemon_processes import ROOT, TANDEM

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


async def seed(store: SqliteMessageStore) -> dict[str, list[str]]:
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


def mark_owed(path: Path, message_id: str, updated_at: float) -> None:
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA busy_timeout = 5000")
        connection.execute(
            "UPDATE message_state SET receipt_owed = 'failed', updated_at = ? WHERE id = ?",
            (updated_at, message_id),
        )


def table_count(path: Path, table: str) -> int:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
        return int(connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


async def seed_other_rows(store: SqliteMessageStore) -> None:
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


async def test_the_purge_removes_what_is_old_and_done_and_keeps_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "tandem.db"
    store = SqliteMessageStore(path)
    await store.open()
    try:
        kinds = await seed(store)
        await seed_other_rows(store)
        mark_owed(path, kinds["owing"][0], NOW - 2 * DAY)  # owed, but not for 7 days yet
        history_before = table_count(path, "history")
        retention = SqliteRetention(store)
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
        assert table_count(path, "history") == history_before - 2 * 7
        assert table_count(path, "otp") == 1
        assert table_count(path, "idempotency") == 1
        assert table_count(path, "mo_outbox") == 1
        assert table_count(path, "inbound") == 3
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


def test_tandem_store_purge_counts_then_removes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    config = tmp_path / "tandem.toml"
    # Everything in seed() is older than a day except the recent message; keep one day.
    config.write_text(
        f'data_dir = "{data}"\n[retention]\nfinal_messages_days = 0.5\n', encoding="utf-8"
    )

    async def prepare() -> None:
        store = SqliteMessageStore(data / "tandem.db", key_file=data / "store.key")
        await store.open()
        try:
            await seed(store)
        finally:
            await store.close()

    asyncio.run(prepare())

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

    dry = tandem("--dry-run")
    assert "would remove          8  final messages" in dry  # 7 old + 1 recent (a day old)
    assert table_count(data / "tandem.db", "message_state") == 10
    done = tandem()
    assert "removed          8  final messages" in done
    assert table_count(data / "tandem.db", "message_state") == 2


async def test_the_daemon_purges_on_its_own_every_interval(tmp_path: Path) -> None:
    from gateway.app import Gateway

    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    store = SqliteMessageStore(data / "tandem.db", key_file=data / "store.key")
    await store.open()
    try:
        kinds = await seed(store)
    finally:
        await store.close()
    config = parse_config(
        f'data_dir = "{data}"\n[store]\nwriter = "thread"\n[smpp_server]\nenabled = false\n'
        "[http]\nenabled = false\n[retention]\nfinal_messages_days = 30\ninterval_seconds = 1\n",
        "test",
    )
    gateway = Gateway(config)
    await gateway.start()
    try:
        for _ in range(100):
            if await gateway.message_store.get(kinds["goes"][0]) is None:
                break
            await asyncio.sleep(0.1)
        for message_id in kinds["goes"]:
            assert await gateway.message_store.get(message_id) is None
        assert await gateway.message_store.get(kinds["stays"][0]) is not None
        assert gateway.retention is not None
        # The seven, and the old final one that owes nothing here (no mark_owed).
        assert gateway.retention.retention.stats.removed["final_messages"] == 8
    finally:
        await gateway.stop()
