"""Store throughput: accepts, submit results and receipts through the batching writer.

Usage: .venv/bin/python bench/store.py [--messages 100000] [--callers 200] [--synchronous NORMAL]
       [--live-messages 100000] [--gc-freeze] [--gc-threshold 50000]

Each caller is an independent task doing what one intake request or one link does: accept one
message, record one submit result, apply one receipt, each awaited until durable. Then the whole
MT path (accept, submit result, receipt) per message, for a quarter as many fresh messages.
The figures are rows per second of wall time and per CPU-second of the process; the commit
counts show how much group commit shared. `--live-messages` bounds the in-flight messages the
writer keeps in memory (smaller: more of them are read back from the file); `--gc-freeze` moves
the objects made before the run out of the garbage collector's full collections, as a daemon can
do once it has started (gc.freeze), to show what those collections cost; `--gc-threshold` sets
the youngest generation's threshold (gc.set_threshold(N, 20, 20)): fewer collections, so fewer
in-flight objects promoted to the old generation and fewer full collections.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dlr.status import MessageStatus, SegmentStatus, StatusSource
from gateway.messages import Channel, Message, Segment
from gateway.store import SqliteMessageStore
from gateway.store.base import SegmentReceipt

T = TypeVar("T")


async def run_callers(
    items: Sequence[T], callers: int, work: Callable[[T], Awaitable[object]]
) -> tuple[float, float]:
    """Run `work` over `items` from `callers` concurrent tasks: elapsed wall and CPU seconds."""
    cursor = iter(items)

    async def caller() -> None:
        for item in cursor:  # shared iterator: each item is taken by exactly one caller
            await work(item)

    started, cpu_started = time.perf_counter(), time.process_time()
    await asyncio.gather(*(caller() for _ in range(callers)))
    return time.perf_counter() - started, time.process_time() - cpu_started


def report(name: str, rows: int, wall: float, cpu: float, commits: int) -> None:
    """Wall-clock rate, and the rate per CPU-second of this process (both threads): the second
    still means something when other programs share the machine."""
    print(
        f"{name:<15} {rows:>7} rows in {wall:6.2f} s = {rows / wall:>7,.0f} rows/s"
        f" | {rows / cpu:>7,.0f} rows per CPU-s | {commits} commits"
    )


def make_messages(count: int, now: float) -> list[Message]:
    return [
        Message(
            account="bench",
            channel=Channel.HTTP,
            source_addr="BENCH",
            destination=f"4477009{i:05d}",
            body=b"Your verification code is 123456. It expires in 10 minutes.",
            text="Your verification code is 123456. It expires in 10 minutes.",
            status=MessageStatus.QUEUED,
            created_at=now,
        )
        for i in range(count)
    ]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--callers", type=int, default=200)
    parser.add_argument("--synchronous", choices=["NORMAL", "FULL"], default="NORMAL")
    parser.add_argument("--path", type=Path, help="database file (default: a temporary one)")
    parser.add_argument("--live-messages", type=int, default=100_000)
    parser.add_argument("--gc-freeze", action="store_true", help="gc.freeze() before the run")
    parser.add_argument("--gc-threshold", type=int, help="gc.set_threshold(N, 20, 20)")
    parser.add_argument(
        "--loop",
        choices=["uvloop", "asyncio"],
        default="uvloop",
        help="event loop (default uvloop, as `tandem run` uses when it is installed)",
    )
    return parser.parse_args()


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        path = args.path or Path(scratch) / "bench.db"
        store = SqliteMessageStore(
            path, synchronous=args.synchronous, live_messages=args.live_messages
        )
        await store.open()
        print(
            f"SQLite WAL, synchronous={args.synchronous}, {args.messages} messages, "
            f"{args.callers} concurrent callers, one row per call, {args.loop}, "
            f"live_messages={args.live_messages}, gc.freeze={args.gc_freeze}, "
            f"gc.threshold={args.gc_threshold or gc.get_threshold()[0]}, file {path}"
        )
        if args.gc_threshold:
            gc.set_threshold(args.gc_threshold, 20, 20)
        now = time.time()
        messages = make_messages(args.messages, now)
        carrier_ids = {m.id: str(10_000_000 + i) for i, m in enumerate(messages)}
        if args.gc_freeze:
            gc.collect()
            gc.freeze()

        async def phase(
            name: str, work: Callable[[Message], Awaitable[object]], batch: Sequence[Message]
        ) -> None:
            commits = store.stats().commits
            wall, cpu = await run_callers(batch, args.callers, work)
            report(name, len(batch), wall, cpu, store.stats().commits - commits)

        async def accept(m: Message) -> None:
            await store.accept([m])

        await phase("accept", accept, messages)

        async def submitted(m: Message) -> None:
            segment = Segment(m.id, 0, 1, carrier_id=carrier_ids[m.id])
            await store.mark_submitted(
                m.id, [segment], link="smsc-a", at=now + 1, source=StatusSource.SUBMIT_RESP
            )

        await phase("mark_submitted", submitted, messages)

        async def delivered(m: Message) -> None:
            change = await store.apply_segment_status(
                "smsc-a",
                carrier_ids[m.id],
                SegmentStatus.DELIVERED,
                at=now + 2,
                source=StatusSource.RECEIPT,
                detail="stat:DELIVRD err:000",
            )
            assert change.changed

        await phase("segment status", delivered, messages)

        # The whole MT path per message: accepted, submitted, delivered (one row each above).
        fresh = make_messages(args.messages // 4, now)
        carrier_ids.update((m.id, f"p{i}") for i, m in enumerate(fresh))

        async def whole_path(m: Message) -> None:
            await accept(m)
            await submitted(m)
            await delivered(m)

        await phase("MT path (msgs)", whole_path, fresh)

        # Receipts as a link's reader hands them over: a burst of 50 per call
        # (apply_segment_statuses), for another quarter of fresh, submitted messages.
        burst = make_messages(args.messages // 4, now)
        carrier_ids.update((m.id, f"q{i}") for i, m in enumerate(burst))
        await store.accept(burst)
        await run_callers(burst, args.callers, submitted)
        groups = [burst[i : i + 50] for i in range(0, len(burst), 50)]

        async def delivered_together(group: Sequence[Message]) -> None:
            changes = await store.apply_segment_statuses(
                [
                    SegmentReceipt(
                        "smsc-a",
                        carrier_ids[m.id],
                        SegmentStatus.DELIVERED,
                        now + 2,
                        StatusSource.RECEIPT,
                        "stat:DELIVRD err:000",
                    )
                    for m in group
                ]
            )
            assert all(c.changed for c in changes)

        commits = store.stats().commits
        wall, cpu = await run_callers(groups, args.callers, delivered_together)
        report("receipts x50", len(burst), wall, cpu, store.stats().commits - commits)

        for last in (messages[-1], fresh[-1], burst[-1]):
            record = await store.get(last.id)
            assert record is not None and record.message.status is MessageStatus.DELIVERED
        await store.close()
        print(f"database size {path.stat().st_size / 1e6:.1f} MB, load average {os.getloadavg()}")


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.loop == "uvloop":
        import uvloop

        uvloop.run(main(arguments))
    else:
        asyncio.run(main(arguments))
