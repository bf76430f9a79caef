"""The opt-out list at scale: loading a million entries, and what the check adds to intake.

Usage: .venv/bin/python bench/optout.py [--entries 1000000] [--messages 200000] [--block 5000]
(`--block`: distinct requests cycled through; `--messages`: timed calls, half in each mode)

1. Load: a SQLite store seeded with `entries` opt-outs (numbers in +447, a mix of sender,
   group and all scopes over a few senders), then `OptOutRegistry.load()` timed from a fresh
   daemon-like start (the store's read connection, the rows into memory), and the process's
   resident memory before and after.
2. Added cost per message: `MessageIntake.prepare` (the pure part of intake every MT runs:
   number, route, policies, encoding) timed per call with the opt-out policy on and off,
   alternating per message (each request timed both ways back to back, the order turning
   each time) so both see the same machine, over the same recipients (5% of them with an
   opt-out of another sender, so the check goes past the first lookup for those; none
   refused). Printed: p50/p99/p99.9 of each mode and the difference,
   plus the check alone (`OptOutPolicy.check`) per call.

Never a pass/fail: the figures go into bench/RESULTS.md with the command and the load.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, bench/ would come first on sys.path and its http.py would shadow the
# standard library's http, which aiohttp (imported by gateway.app) needs.
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

from gateway.app import tune_interpreter_for_daemon
from gateway.config import TandemConfig
from gateway.intake import MessageIntake, MessageRequest
from gateway.messages import Channel, Message
from gateway.optouts.from_config import sender_groups
from gateway.optouts.policy import OptOutPolicy
from gateway.optouts.registry import OptOutRegistry
from gateway.store.sqlite import SqliteMessageStore
from routing import InvalidNumber, LinkStatus, NumberResolver, RouteTable

SENDERS = ["12345", "67890", "shop", "bank", "news"]
GROUPS = [{"name": "brand", "senders": ["Shop", "12345"]}]


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def seed(path: Path, entries: int) -> None:
    """`entries` rows straight into the optouts table (the bench times the load, not this)."""
    rng = random.Random(17)
    rows = []
    for index in range(entries):
        number = f"4479{index:08d}"
        roll = rng.random()
        if roll < 0.8:
            scope, target = "sender", SENDERS[index % len(SENDERS)]
        elif roll < 0.95:
            scope, target = "group", "brand"
        else:
            scope, target = "all", ""
        rows.append((number, scope, target, 1.8e9, "import", None, "bench", ""))
    with sqlite3.connect(path) as conn:
        conn.executemany(
            "INSERT INTO optouts (number, scope, target, created_at, via, keyword, source, "
            "reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )


class NoDispatch:
    def enqueue(self, message: Message) -> None:
        pass


def percentile(sorted_values: list[float], fraction: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--block", type=int, default=5000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="optout-bench-") as tmp:
        path = Path(tmp) / "tandem.db"
        store = SqliteMessageStore(path)
        await store.open()  # creates the schema
        await store.close()
        started = time.perf_counter()
        seed(path, args.entries)
        print(f"seeded {args.entries:,} opt-outs in {time.perf_counter() - started:.1f} s")

        store = SqliteMessageStore(path)
        await store.open()
        config = TandemConfig.model_validate(
            {
                "sender_groups": GROUPS,
                "routes": [{"name": "all", "priority": 100, "targets": ["sim"]}],
                "links": [{"type": "smpp", "name": "sim", "host": "127.0.0.1", "system_id": "x"}],
            }
        )
        registry = OptOutRegistry(store, sender_groups(config.sender_groups))
        before = rss_mib()
        started, cpu_started = time.perf_counter(), time.process_time()
        await registry.load()
        load_seconds = time.perf_counter() - started
        load_cpu = time.process_time() - cpu_started  # every thread's, the reader's included
        after = rss_mib()
        print(
            f"load: {len(registry):,} opt-outs ({registry.stats.numbers:,} numbers) in "
            f"{load_seconds:.2f} s wall, {load_cpu:.2f} s CPU; resident memory "
            f"{before:.0f} -> {after:.0f} MiB (+{after - before:.0f} MiB)"
        )

        # The daemon tunes its collector once start-up (the opt-out load included) is done:
        # the million entries are frozen out of the collector's view. Do the same here, or
        # full collections walking them land in the timed calls of either mode at random.
        tune_interpreter_for_daemon()
        policy = OptOutPolicy(registry)
        intake = MessageIntake(
            numbers=NumberResolver(config.numbering),
            routes=RouteTable.from_config(config.routes),
            link_states={"sim": LinkStatus(up=True)},
            store=store,
            dispatch=NoDispatch(),
            policies=[policy],
        )
        # Recipients outside the seeded numbers, 5% of them holding an opt-out of a sender
        # other than the one the messages come from (so the check does the set test too).
        rng = random.Random(3)
        recipients: list[str] = []
        while len(recipients) < 10_000:
            candidate = f"+4479{rng.randrange(10**7, 10**8):08d}"
            try:
                intake.numbers.resolve(candidate)
            except InvalidNumber:
                continue
            recipients.append(candidate)
        for recipient in recipients[:500]:
            await registry.opt_out(recipient[1:], sender="bank")
        requests = [
            MessageRequest(
                account="bench",
                channel=Channel.HTTP,
                to=recipients[index % len(recipients)],
                sender="Shop",
                text="Your parcel arrives today between 10:00 and 12:00.",
            )
            for index in range(args.block)
        ]
        prepare = intake.prepare
        # Thread CPU time: what the call costs this thread, without the time the machine gave
        # other processes in between (the farm's load makes wall-clock tails mostly waiting);
        # wall-clock figures are printed too.
        clock = time.thread_time_ns
        wall = time.perf_counter_ns
        timings: dict[bool, list[float]] = {True: [], False: []}
        walls: dict[bool, list[float]] = {True: [], False: []}
        for request in requests[:2000]:  # warm caches and the allocator
            prepare(request)
        # Alternate per message, not per block: each request is timed with the check on and
        # off back to back, in turns on-off / off-on (the second call of a pair finds the
        # recipient warm in the caches; the turns share that out). Blocks of thousands of calls
        # per mode let whatever else the machine did in one block (another process's burst, a
        # frequency step) land in one mode's tail only: that is how earlier runs of this
        # bench saw +20 to +111 us at p99 that the check does not cost.
        rounds = max(1, args.messages // (2 * args.block))
        order = ((True, False), (False, True))
        for _round in range(rounds):
            for index, request in enumerate(requests):
                for enabled in order[index & 1]:
                    policy.enabled = enabled
                    begin_wall = wall()
                    begin = clock()
                    prepare(request)
                    end = clock()
                    walls[enabled].append((wall() - begin_wall) / 1000)
                    timings[enabled].append((end - begin) / 1000)
        policy.enabled = True
        for label, source in (("thread CPU time", timings), ("wall clock", walls)):
            on, off = sorted(source[True]), sorted(source[False])
            print(f"intake.prepare per message ({label}), {len(on):,} each, alternating:")
            for name, values in (("check on ", on), ("check off", off)):
                print(
                    f"  {name}: p50 {percentile(values, 0.5):7.2f} us  p99 "
                    f"{percentile(values, 0.99):7.2f} us  p99.9 "
                    f"{percentile(values, 0.999):7.2f} us  mean {statistics.fmean(values):7.2f} us"
                )
            print(
                f"  added by the check: p50 {percentile(on, 0.5) - percentile(off, 0.5):+.2f} us,"
                f" p99 {percentile(on, 0.99) - percentile(off, 0.99):+.2f} us, mean "
                f"{statistics.fmean(on) - statistics.fmean(off):+.2f} us"
            )
        number = intake.numbers.resolve(recipients[0])
        decision = intake.routes.resolve(_facts(number), time.time(), intake.link_states)
        check = policy.check
        alone: list[float] = []
        for index in range(args.messages):
            request = requests[index % len(requests)]
            begin = wall()
            check(request, number, decision)
            alone.append((wall() - begin) / 1000)
        alone.sort()
        print(
            f"  the check alone: p50 {percentile(alone, 0.5):.2f} us, p99 "
            f"{percentile(alone, 0.99):.2f} us (clock reads included)"
        )
        await store.close()


def _facts(number: object) -> object:
    from routing import RouteFacts

    return RouteFacts.from_resolved(number, sender="Shop", account="bench")  # type: ignore[arg-type]


if __name__ == "__main__":
    import faulthandler
    import signal

    faulthandler.register(signal.SIGUSR1, all_threads=True)  # where a slow run is: kill -USR1
    asyncio.run(main())
