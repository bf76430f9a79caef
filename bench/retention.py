"""Retention purge against live traffic: does removing half a million old messages stall the
store writer?

Usage: .venv/bin/python bench/retention.py [--old 500000] [--callers 64] [--batch 500]
       [--share 0.25] [--writer process] [--phase-seconds 15] [--window 3]

Seeds a store with `--old` delivered messages 100 days old (each with one segment and three
history rows, as a delivered one-part message has), written straight into the file. Then the
store is opened as the daemon opens it and `--callers` tasks keep accepting one message each,
awaiting each until durable (what an HTTP request or a customer's submit_sm waits for). Three
phases: traffic alone; traffic while `StoreRetention.purge` removes the old messages (`--batch`
per writer op, paced to take at most `--share` of the writer's time), in alternating windows of
`--window` seconds with the purge running and paused, so the machine's load falls on both
alike; traffic alone again. For each: accepts per second and the accept latency (p50, p99,
max); for the purge: rows removed, its duration and its longest writer op.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.config import parse_config
from gateway.messages import Channel, Message, MessageIdGenerator
from gateway.store.retention import DAY, Cutoffs, StoreRetention
from gateway.store.sqlite import SqliteMessageStore


def seed(path: Path, count: int) -> None:
    """`count` delivered messages created 100 days ago, straight into the tables."""
    ids = MessageIdGenerator()
    old = time.time() - 100 * DAY
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA synchronous = OFF")
    chunk = 20_000
    for start in range(0, count, chunk):
        content, state, segments, history = [], [], [], []
        for n in range(start, min(start + chunk, count)):
            at = old + n * 0.001
            message_id = ids.next_id(int(at * 1000))
            content.append(
                (message_id, "acme", "http", "Shop", 5, 0, "447700900123", "transactional", 1, 0,
                 b"hello there", "hello there", 0, 1, None, None, "everything", '["sim"]', None,
                 None, None, at)
            )  # fmt: skip
            state.append((message_id, "delivered", "sim", 1, None, None, at + 5, None))
            segments.append(
                (message_id, 0, 1, "delivered", "sim", f"c{n}", at + 1, at + 5, at + 5, None, None)
            )
            history += [
                (message_id, None, at, "accepted", "intake", "", 1, None),
                (message_id, 0, at + 1, "submitted", "submit_resp", "", 1, "submitted"),
                (message_id, 0, at + 5, "delivered", "receipt", "stat:DELIVRD", 1, "delivered"),
            ]
        connection.execute("BEGIN")
        connection.executemany(
            f"INSERT INTO message_content VALUES ({', '.join('?' * 22)})", content
        )
        connection.executemany(
            "INSERT INTO message_state (id, status, link, attempts, next_attempt_at, last_error, "
            "updated_at, validity_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            state,
        )
        connection.executemany(f"INSERT INTO segments VALUES ({', '.join('?' * 11)})", segments)
        connection.executemany(
            "INSERT INTO history (message_id, segment_index, at, status, source, detail, changed, "
            "message_status) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            history,
        )
        connection.execute("COMMIT")
    connection.close()


class _Gated:
    """The store as the purge sees it, with the purge held while `gate` is clear."""

    def __init__(self, store: SqliteMessageStore, gate: asyncio.Event) -> None:
        self.store, self.gate = store, gate

    async def _read(self, sql: str, parameters: Sequence[Any]) -> list[Any]:
        # Held before the read of the next candidates, not before the write: the purge times
        # its writer ops to pace itself, and a hold there would count as writer time.
        await self.gate.wait()
        return await self.store._read(sql, parameters)

    def _write(self, op: Any, *args: Any, rows: int = 1) -> Any:
        return self.store._write(op, *args, rows=rows)


class Traffic:
    """`callers` tasks accepting one fresh message each, in a loop; latencies per phase."""

    def __init__(self, store: SqliteMessageStore, callers: int) -> None:
        self.store = store
        self.callers = callers
        self.latencies: list[float] = []
        self.running = True

    async def caller(self) -> None:
        while self.running:
            message = Message(
                account="acme",
                channel=Channel.HTTP,
                source_addr="Shop",
                destination="447700900123",
                body=b"live traffic",
            )
            started = time.perf_counter()
            await self.store.accept([message])
            self.latencies.append(time.perf_counter() - started)

    def take(self) -> list[float]:
        taken, self.latencies = self.latencies, []
        return taken


def describe(name: str, latencies: list[float], seconds: float) -> str:
    if not latencies:
        return f"{name:<22} no accepts"
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return (
        f"{name:<22} {len(ordered) / seconds:>7,.0f} accepts/s  latency p50 "
        f"{statistics.median(ordered) * 1000:6.1f} ms  p99 {p99 * 1000:6.1f} ms  "
        f"max {ordered[-1] * 1000:6.1f} ms"
    )


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="tandem-retention-") as directory:
        path = Path(directory) / "tandem.db"
        store = SqliteMessageStore(path)
        await store.open()  # the schema
        await store.close()
        started = time.perf_counter()
        seed(path, args.old)
        print(f"seeded {args.old:,} delivered messages in {time.perf_counter() - started:.0f} s")
        store = SqliteMessageStore(path, writer=args.writer)
        await store.open()
        config = parse_config(f"[retention]\nbatch = {args.batch}\n", "bench")
        retention = StoreRetention(store)
        traffic = Traffic(store, args.callers)
        callers = [asyncio.create_task(traffic.caller()) for _ in range(args.callers)]
        try:
            await asyncio.sleep(2)  # warm-up
            traffic.take()
            await asyncio.sleep(args.phase_seconds)
            print(describe("traffic alone", traffic.take(), args.phase_seconds))
            gate = asyncio.Event()
            gate.set()
            retention.store = _Gated(store, gate)  # type: ignore[assignment]
            began = time.perf_counter()
            purge = asyncio.create_task(
                retention.purge(
                    Cutoffs.from_config(config, time.time()), batch=args.batch, share=args.share
                )
            )
            # Alternate windows with the purge running and paused, in the same period, so a
            # change in the machine's load shows in both.
            during: list[float] = []
            paused: list[float] = []
            during_seconds = paused_seconds = 0.0
            while not purge.done():
                window_began = time.perf_counter()
                await asyncio.wait({purge}, timeout=args.window)
                window = time.perf_counter() - window_began
                removed_so_far = retention.stats.ops * args.batch
                print(f"  ... {removed_so_far:,} removed after {time.perf_counter() - began:.0f} s")
                if gate.is_set():
                    during += traffic.take()
                    during_seconds += window
                    gate.clear()
                else:
                    paused += traffic.take()
                    paused_seconds += window
                    gate.set()
            removed = purge.result()
            took = time.perf_counter() - began
            print(describe("traffic, purge running", during, during_seconds))
            print(describe("traffic, purge paused", paused, paused_seconds))
            rows = removed["final_messages"]
            print(
                f"purge: {rows:,} messages (and their segments and history) in {took:.1f} s "
                f"({during_seconds:.1f} s running) = {rows / during_seconds:,.0f} messages/s "
                f"while running; {retention.stats.ops} writer ops of <= {args.batch}, the "
                f"longest {retention.stats.longest_op_seconds * 1000:.0f} ms (waiting behind "
                "traffic included)"
            )
            await asyncio.sleep(args.phase_seconds)
            print(describe("traffic after", traffic.take(), args.phase_seconds))
        finally:
            traffic.running = False
            await asyncio.gather(*callers)
            await store.close()
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", type=int, default=500_000)
    parser.add_argument("--callers", type=int, default=64)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--share", type=float, default=0.25, help="the purge's writer share")
    parser.add_argument("--writer", choices=("process", "thread"), default="process")
    parser.add_argument("--phase-seconds", type=float, default=15.0)
    parser.add_argument("--window", type=float, default=3.0, help="seconds purging / paused")
    arguments = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main(arguments))
