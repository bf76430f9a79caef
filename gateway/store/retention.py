"""Retention: what has been finished long enough leaves the store, in small transactions.

Owns the purge (`[retention]`): final messages with their segments and history, receipts and
MOs owed to customers who never took them, OTP verifications past their expiry, idempotency
answers past `[http] idempotency_seconds`, and (through `PURGE_STEPS`) any table a later module
adds, such as inbound messages. `StoreRetention` runs it on a store of either backend;
`RetentionPurger` runs it every `interval_seconds` in the daemon; `tandem store purge` runs it
once, or with `--dry-run` only counts.

How it keeps out of traffic's way: the candidates are found on the store's read connection
(not the writer), a page at a time along an index; each delete is one op of at most `batch`
rows given to the writer like any other op, re-checking its condition, so a transaction that
carries a purge op carries traffic's ops too and is longer by that op only. Between ops the
purge waits for the previous one to commit (it never holds more than one op in the queue) and
then pauses, so that it takes at most `WRITER_SHARE` of the writer's time.

Never does: delete a message that is not final, or one still owing its customer a receipt (its
owed mark is given up first, after `owed_receipts_days`); touch API keys or accounts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dlr.status import MessageStatus, is_final
from gateway.store import inbound
from gateway.store.message_ops import _IDS_PER_QUERY
from gateway.tasks import cancel_and_wait

if TYPE_CHECKING:
    from gateway.config import TandemConfig
    from gateway.store.sqlstore import SqlMessageStore

log = logging.getLogger("tandem.retention")

DAY = 86_400.0
# The most of the writer's time a purge takes: after an op that took t seconds it waits
# t * (1 - share) / share. bench/retention.py: traffic keeps most of its rate at 0.25.
WRITER_SHARE = 0.25
_FINAL_SQL = "(" + ", ".join(f"'{s.value}'" for s in MessageStatus if is_final(s)) + ")"


@dataclass(slots=True, frozen=True)
class Cutoffs:
    """Unix times: rows of each kind older than these go (see `RetentionConfig`)."""

    final_messages: float
    owed: float
    otp: float
    idempotency: float
    inbound: float

    @classmethod
    def from_config(cls, config: TandemConfig, now: float) -> Cutoffs:
        retention = config.retention
        return cls(
            final_messages=now - retention.final_messages_days * DAY,
            owed=now - retention.owed_receipts_days * DAY,
            otp=now - retention.otp_days * DAY,
            idempotency=now - config.http.idempotency_seconds,
            inbound=now - retention.inbound_days * DAY,
        )


def _first_id_after(unix_time: float) -> str:
    """The smallest message id minted at `unix_time` or later (`MessageIdGenerator`: 48 bits
    of milliseconds, then 32 bits): every id below it was made before."""
    return f"{int(unix_time * 1000) << 32:020x}"


@dataclass(slots=True, frozen=True)
class PurgeStep:
    """One kind of row the purge removes.

    `candidates`: SQL for the read connection, parameters (cutoff, *after key, limit) in the
    order its placeholders take them (see `_params`), returning key tuples in key order;
    `count`: SQL counting them (cutoff); `delete`: the writer op, (tx, keys, cutoff) -> rows
    removed, which checks the condition again (the row may have changed since it was read).
    `first_key`: the key to start after."""

    name: str
    cutoff: str  # the `Cutoffs` field
    candidates: str
    count: str
    delete: Callable[..., int]
    first_key: tuple[Any, ...]
    params: Callable[[float, tuple[Any, ...], int], tuple[Any, ...]]


def _chunks(keys: Sequence[Any], size: int = _IDS_PER_QUERY) -> Iterator[Sequence[Any]]:
    """Keys a statement's worth at a time (both engines bound a statement's parameters)."""
    for start in range(0, len(keys), size):
        yield keys[start : start + size]


def _marks(count: int) -> str:
    return ", ".join("?" * count)


def _delete_final_messages(tx: Any, keys: list[tuple[str]], cutoff: float) -> int:
    tx.flush()  # ops earlier in this transaction may have left rows of these to write
    removed = 0
    for chunk in _chunks([key[0] for key in keys]):
        still = [
            row[0]
            for row in tx.execute(
                f"SELECT id FROM message_state WHERE id IN ({_marks(len(chunk))}) "
                f"AND status IN {_FINAL_SQL} AND updated_at < ? AND receipt_owed IS NULL",
                (*chunk, cutoff),
            )
        ]
        if not still:
            continue
        # One statement per table, not one per message: on PostgreSQL each is a round trip.
        marks = _marks(len(still))
        tx.execute(f"DELETE FROM history WHERE message_id IN ({marks})", still)
        tx.execute(f"DELETE FROM segments WHERE message_id IN ({marks})", still)
        tx.execute(f"DELETE FROM message_content WHERE id IN ({marks})", still)
        tx.execute(f"DELETE FROM message_state WHERE id IN ({marks})", still)
        live = tx.live
        for message_id in still:
            live.pop(message_id, None)
        removed += len(still)
    return removed


def _by_ids(table_and_condition: str) -> Callable[[Any, list[tuple[Any]], float], int]:
    """An op that runs `UPDATE/DELETE ... WHERE id IN (the keys) AND <condition>` (the
    condition's one `?` is the cutoff), a statement per chunk; the rows it changed."""

    def op(tx: Any, keys: list[tuple[Any]], cutoff: float) -> int:
        changed = 0
        for chunk in _chunks([key[0] for key in keys]):
            statement = table_and_condition.replace("(KEYS)", f"({_marks(len(chunk))})")
            changed += int(tx.execute(statement, (*chunk, cutoff)).rowcount)
        return changed

    return op


def _give_up_owed_receipts(tx: Any, keys: list[tuple[str]], cutoff: float) -> int:
    tx.flush()
    return _GIVE_UP_OWED(tx, keys, cutoff)


_GIVE_UP_OWED = _by_ids(
    "UPDATE message_state SET receipt_owed = NULL "
    "WHERE id IN (KEYS) AND receipt_owed IS NOT NULL AND updated_at < ?"
)
_delete_owed_mos = _by_ids("DELETE FROM mo_outbox WHERE id IN (KEYS) AND received_at < ?")
_delete_otps = _by_ids("DELETE FROM otp WHERE id IN (KEYS) AND expires_at < ?")


def _delete_idempotency(tx: Any, keys: list[tuple[float, str, str]], cutoff: float) -> int:
    removed = 0
    for chunk in _chunks(keys):
        pairs = ", ".join(["(?, ?)"] * len(chunk))
        cursor = tx.execute(
            f"DELETE FROM idempotency WHERE (key_id, idempotency_key) IN (VALUES {pairs}) "
            "AND created_at < ?",
            (*(value for key in chunk for value in key[1:]), cutoff),
        )
        removed += int(cursor.rowcount)
    return removed


def _by_key(cutoff: float, after: tuple[Any, ...], limit: int) -> tuple[Any, ...]:
    return (*after, cutoff, limit)


def _final_params(cutoff: float, after: tuple[Any, ...], limit: int) -> tuple[Any, ...]:
    return (after[0], _first_id_after(cutoff), cutoff, limit)


# In purge order: owed marks are given up before the messages they keep are looked at.
PURGE_STEPS: list[PurgeStep] = [
    PurgeStep(
        "owed_receipts",
        "owed",
        # The partial index on owed rows holds only those: small, whatever the table's size.
        "SELECT id FROM message_state WHERE receipt_owed IS NOT NULL AND id > ? "
        "AND updated_at < ? ORDER BY id LIMIT ?",
        "SELECT COUNT(*) FROM message_state WHERE receipt_owed IS NOT NULL AND updated_at < ?",
        _give_up_owed_receipts,
        ("",),
        _by_key,
    ),
    PurgeStep(
        "owed_mos",
        "owed",
        "SELECT id FROM mo_outbox WHERE id > ? AND received_at < ? ORDER BY id LIMIT ?",
        "SELECT COUNT(*) FROM mo_outbox WHERE received_at < ?",
        _delete_owed_mos,
        (0,),
        _by_key,
    ),
    PurgeStep(
        "final_messages",
        "final_messages",
        # Along the primary key, up to the first id made after the cutoff (ids begin with
        # their creation time): the walk stops where younger messages begin.
        f"SELECT id FROM message_state WHERE id > ? AND id < ? AND status IN {_FINAL_SQL} "
        "AND updated_at < ? AND receipt_owed IS NULL ORDER BY id LIMIT ?",
        f"SELECT COUNT(*) FROM message_state WHERE status IN {_FINAL_SQL} "
        "AND updated_at < ? AND receipt_owed IS NULL",
        _delete_final_messages,
        ("",),
        _final_params,
    ),
    PurgeStep(
        "otp",
        "otp",
        "SELECT id FROM otp WHERE id > ? AND expires_at < ? ORDER BY id LIMIT ?",
        "SELECT COUNT(*) FROM otp WHERE expires_at < ?",
        _delete_otps,
        ("",),
        _by_key,
    ),
    PurgeStep(
        "idempotency",
        "idempotency",
        "SELECT created_at, key_id, idempotency_key FROM idempotency "
        "WHERE (created_at, key_id, idempotency_key) > (?, ?, ?) AND created_at < ? "
        "ORDER BY created_at, key_id, idempotency_key LIMIT ?",
        "SELECT COUNT(*) FROM idempotency WHERE created_at < ?",
        _delete_idempotency,
        (float("-inf"), "", ""),
        _by_key,
    ),
    PurgeStep(
        "inbound",
        "inbound",
        inbound.PURGE_CANDIDATES,
        inbound.PURGE_COUNT,
        inbound.purge_op,
        (0,),
        _by_key,
    ),
]


@dataclass(slots=True)
class RetentionStats:
    """What the purges removed, and how long their writer ops took (the stall they add to
    the transaction that carries them)."""

    runs: int = 0
    removed: dict[str, int] = field(default_factory=dict)
    ops: int = 0
    longest_op_seconds: float = 0.0
    last_run_at: float | None = None
    last_run_seconds: float = 0.0


class StoreRetention:
    """The purge on one open store, SQLite or PostgreSQL (its reads and its writer: the
    statements are the shared SQL both engines run, `gateway.store.dialect`)."""

    def __init__(self, store: SqlMessageStore, steps: Sequence[PurgeStep] | None = None):
        self.store = store
        self.steps = list(PURGE_STEPS if steps is None else steps)
        self.stats = RetentionStats()

    async def count(self, cutoffs: Cutoffs) -> dict[str, int]:
        """What a purge would remove now, per step (`tandem store purge --dry-run`)."""
        counts = {}
        for step in self.steps:
            rows = await self.store._read(step.count, (getattr(cutoffs, step.cutoff),))
            counts[step.name] = int(rows[0][0])
        return counts

    async def purge(
        self, cutoffs: Cutoffs, *, batch: int, share: float = WRITER_SHARE
    ) -> dict[str, int]:
        """Remove what is older than `cutoffs`, `batch` rows per writer op, pausing after each
        op so the purge takes at most `share` of the writer's time; per step, how many rows
        went."""
        pause_factor = (1 - share) / share if 0 < share < 1 else 0.0
        started = time.monotonic()
        removed: dict[str, int] = {}
        for step in self.steps:
            cutoff = getattr(cutoffs, step.cutoff)
            after = step.first_key
            total = 0
            while True:
                keys = [
                    tuple(row)
                    for row in await self.store._read(
                        step.candidates, step.params(cutoff, after, batch)
                    )
                ]
                if not keys:
                    break
                op_started = time.monotonic()
                total += await self.store._write(step.delete, keys, cutoff, rows=len(keys))
                took = time.monotonic() - op_started
                self.stats.ops += 1
                self.stats.longest_op_seconds = max(self.stats.longest_op_seconds, took)
                after = keys[-1]
                if len(keys) < batch:
                    break
                await asyncio.sleep(took * pause_factor)
            removed[step.name] = total
            self.stats.removed[step.name] = self.stats.removed.get(step.name, 0) + total
        self.stats.runs += 1
        self.stats.last_run_at = time.time()
        self.stats.last_run_seconds = time.monotonic() - started
        return removed


class RetentionPurger:
    """The daemon's periodic purge: every `[retention] interval_seconds` (the first a minute
    after start-up, when the start-up rush is over)."""

    FIRST_DELAY = 60.0

    def __init__(
        self,
        retention: StoreRetention,
        config: TandemConfig,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.retention = retention
        self.config = config
        self.clock = clock
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run_forever(), name="retention-purge")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None

    async def run_once(self) -> dict[str, int]:
        cutoffs = Cutoffs.from_config(self.config, self.clock())
        removed = await self.retention.purge(cutoffs, batch=self.config.retention.batch)
        if any(removed.values()):
            stats = self.retention.stats
            log.info(
                "retention: removed %s in %.1f s (longest writer op %.0f ms)",
                ", ".join(f"{count} {name.replace('_', ' ')}" for name, count in removed.items()),
                stats.last_run_seconds,
                stats.longest_op_seconds * 1000,
            )
        return removed

    async def _run_forever(self) -> None:
        await asyncio.sleep(min(self.FIRST_DELAY, self.config.retention.interval_seconds))
        while True:
            try:
                await self.run_once()
            except Exception as exc:  # a store closing under it, a full disk: next time
                log.warning("retention purge failed: %s", exc)
            await asyncio.sleep(self.config.retention.interval_seconds)
