"""How soon an opt-out made on one node stops sends on another (PostgreSQL, two nodes).

Usage: .venv/bin/python bench/optout_cluster.py [--changes 500] [--dsn postgresql://...]

Two stores on one fresh schema (nodes "a" and "b", as two daemons have), each with its opt-out
list in memory (`OptOutRegistry`, node b listening for the changes the store announces). For
each change: node a makes it (STOP, then START, alternately, each on a fresh number) and, once
its call returns (the change is committed: what the API or the carrier is answered after),
the time until node b's list says so, read by spinning on the event loop. Printed: p50, p99
and the largest of that lag, and how many were already in b's list when a's call returned.

Beside it, for the choice it informs: one read of the opt-outs table per message (the other
way to make a check cluster-wide at once) timed as a round trip on the pool, p50 and p99.

Never a pass/fail: the figures go into bench/RESULTS.md with the command and the load.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, bench/ would come first on sys.path and its http.py would shadow the
# standard library's http, which aiohttp (imported by the gateway) needs.
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

import asyncpg

from bench.pgstore import DEFAULT_DSN
from gateway.optouts.registry import OptOutRegistry
from gateway.store.postgres import PostgresMessageStore

SENDER = "Shop"


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def lag_until(registry: OptOutRegistry, number: str, blocked: bool) -> float:
    """Seconds until `registry` says `number` is (or is not) blocked, spinning on the loop."""
    started = time.perf_counter()
    while registry.blocks(number, SENDER) is not blocked:
        await asyncio.sleep(0)
        if time.perf_counter() - started > 10.0:
            raise RuntimeError(f"node b never heard of {number}")
    return time.perf_counter() - started


async def bench(args: argparse.Namespace) -> None:
    schema = f"bench_optouts_{secrets.token_hex(4)}"
    with tempfile.TemporaryDirectory() as directory:
        key = Path(directory) / "store.key"
        stores = [
            PostgresMessageStore(args.dsn, key_file=key, schema=schema, node=node, pool_size=2)
            for node in ("a", "b")
        ]
        try:
            for store in stores:
                await store.open()
            node_a, node_b = (OptOutRegistry(store) for store in stores)
            for registry in (node_a, node_b):
                await registry.load()
                registry.start_sync(60.0)  # the safety net, out of the way of the figures
            await asyncio.sleep(0.5)  # node b's LISTEN in place
            lags: list[float] = []
            before_return = 0
            for n in range(args.changes):
                number = f"4479{n:08d}"
                for blocked in (True, False):
                    if blocked:
                        await node_a.opt_out(number, sender=SENDER)
                    else:
                        await node_a.opt_in(number, sender=SENDER)
                    already = node_b.blocks(number, SENDER) is blocked
                    lag = 0.0 if already else await lag_until(node_b, number, blocked)
                    before_return += already
                    lags.append(lag)
            reads: list[float] = []
            pool = stores[1]._readers()
            for n in range(args.changes):
                started = time.perf_counter()
                await pool.fetch(
                    "SELECT scope, target FROM optouts WHERE number = $1", f"4479{n:08d}"
                )
                reads.append(time.perf_counter() - started)
            for registry in (node_a, node_b):
                await registry.stop()
        finally:
            for store in stores:
                await store.close()
            conn = await asyncpg.connect(args.dsn)
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            await conn.close()
    ms = 1000.0
    print(f"changes: {len(lags)} (STOP and START on node a, each read back on node b)")
    print(
        f"lag after a's call returned: p50 {quantile(lags, 0.5) * ms:.3f} ms, "
        f"p99 {quantile(lags, 0.99) * ms:.3f} ms, max {max(lags) * ms:.3f} ms, "
        f"mean {statistics.fmean(lags) * ms:.3f} ms; in b's list already: "
        f"{before_return}/{len(lags)}"
    )
    print(
        f"one opt-out read per message instead: p50 {quantile(reads, 0.5) * ms:.3f} ms, "
        f"p99 {quantile(reads, 0.99) * ms:.3f} ms a round trip"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--changes", type=int, default=500, help="numbers (a STOP and a START)")
    parser.add_argument("--dsn", default=DEFAULT_DSN)
    asyncio.run(bench(parser.parse_args()))


if __name__ == "__main__":
    main()
