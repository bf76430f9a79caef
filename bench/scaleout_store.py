"""The store's share of the MT path on one SQLite file, on PostgreSQL with one node, and on
PostgreSQL with two nodes: each message accepted, its submit result recorded, its receipt
applied (the three writes every MT message costs), through `MessageStore` with the writer in a
process of its own, as the daemon runs it.

Usage: .venv/bin/python bench/scaleout_store.py [--messages 20000] [--concurrency 32] [--batch 20]
           [--dsn postgresql://postgres@127.0.0.1:5432/test] [--runs sqlite,pg1,pg2]
           [--rounds 1]

Each node is a process of its own (its event loop, its store, its writer process); `concurrency`
tasks per node each take `batch` messages through accept -> mark_submitted_many ->
apply_segment_statuses, as a link's turn batches them. Figure: messages per second over all
nodes, first accept to last receipt. Then, on PostgreSQL, one node with its writer on a thread
counts the statements (each one round trip; an executemany is one) and commits per message.

What it is not: the whole daemon (no HTTP, no SMPP, no queue); bench/scaleout.py measures
that with real daemons, one or two nodes (and bench/mt_path.py, bench/smpp_in.py one node, on
either backend, `--count-db` counting the statements and round trips of every connection on
the wire).
On this 2-core machine the nodes, their writers and PostgreSQL share the two cores, so two
nodes cannot show more than the machine has; the statements per message are what decides how
far a bigger database takes it.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dlr.status import MessageStatus, SegmentStatus, StatusSource
from gateway.messages import Channel, Message, Segment
from gateway.store.base import SegmentReceipt, SubmitResult
from gateway.store.postgres import PostgresMessageStore
from gateway.store.sqlite import SqliteMessageStore
from gateway.store.sqlstore import SqlMessageStore


def message(n: int) -> Message:
    return Message(
        account="bench",
        channel=Channel.HTTP,
        source_addr="Bench",
        destination="447700900123",
        body=b"bench message %d" % n,
        text=f"bench message {n}",
        status=MessageStatus.QUEUED,
        created_at=time.time(),
        registered_delivery=1,
    )


async def traffic(store: SqlMessageStore, node: str, messages: int, concurrency: int, batch: int):
    counter = iter(range(messages))
    link = f"smsc-{node}"

    async def worker() -> None:
        while True:
            chunk = [message(n) for n, _ in zip(counter, range(batch), strict=False)]
            if not chunk:
                return
            await store.accept(chunk)
            now = time.time()
            await store.mark_submitted_many(
                [
                    SubmitResult(
                        m.id,
                        (Segment(m.id, 0, 1, carrier_id=f"{node}-{m.id}"),),
                        link,
                        now,
                        StatusSource.SUBMIT_RESP,
                    )
                    for m in chunk
                ]
            )
            await store.apply_segment_statuses(
                [
                    SegmentReceipt(
                        link, f"{node}-{m.id}", SegmentStatus.DELIVERED, now, StatusSource.RECEIPT
                    )
                    for m in chunk
                ]
            )

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def make_store(kind: str, node: str, workdir: Path, dsn: str, schema: str, writer: str):
    if kind == "sqlite":
        return SqliteMessageStore(workdir / "tandem.db", writer=writer)  # type: ignore[arg-type]
    return PostgresMessageStore(
        dsn,
        schema=schema,
        node=node,
        key_file=workdir / "store.key",
        writer=writer,  # type: ignore[arg-type]
    )


def node_main(kind: str, node: str, workdir: str, dsn: str, schema: str, args, start, done) -> None:
    async def main() -> None:
        store = make_store(kind, node, Path(workdir), dsn, schema, "process")
        await store.open()
        start.wait()
        began = time.time()
        await traffic(store, node, args[0], args[1], args[2])
        done.put((began, time.time()))
        await store.close()

    asyncio.run(main())


def run(kind: str, nodes: int, options: argparse.Namespace, workdir: Path) -> float:
    schema = "bench_" + secrets.token_hex(4)
    per_node = options.messages // nodes
    if kind == "pg":  # create the schema once, so the nodes do not race to migrate
        asyncio.run(_open_close(make_store(kind, "setup", workdir, options.dsn, schema, "thread")))
    context = multiprocessing.get_context("spawn")
    start, done = context.Event(), context.Queue()
    procs = [
        context.Process(
            target=node_main,
            args=(
                kind,
                f"n{i}",
                str(workdir),
                options.dsn,
                schema,
                (per_node, options.concurrency, options.batch),
                start,
                done,
            ),
        )
        for i in range(nodes)
    ]
    for p in procs:
        p.start()
    time.sleep(3)  # every node opened (writer processes started)
    start.set()
    spans = [done.get(timeout=1800) for _ in procs]
    for p in procs:
        p.join()
    if kind == "pg":
        asyncio.run(_drop(options.dsn, schema))
    return per_node * nodes / (max(e for _, e in spans) - min(b for b, _ in spans))


async def _open_close(store: SqlMessageStore) -> None:
    await store.open()
    await store.close()


async def _drop(dsn: str, schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    await conn.execute(f"DROP SCHEMA {schema} CASCADE")
    await conn.close()


async def count_statements(options: argparse.Namespace, workdir: Path) -> tuple[float, float]:
    """Statements and commits per message on PostgreSQL, one node, its writer on a thread."""
    schema = "bench_" + secrets.token_hex(4)
    store = make_store("pg", "count", workdir, options.dsn, schema, "thread")
    await store.open()
    messages = 2000
    await traffic(store, "count", messages, options.concurrency, options.batch)
    core = store._writer._core  # type: ignore[union-attr]
    statements = core._pg.statements
    commits = store.stats().commits
    await store.close()
    await _drop(options.dsn, schema)
    return statements / messages, commits / messages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--runs", default="sqlite,pg1,pg2")
    parser.add_argument("--rounds", type=int, default=1, help="take turns this many times")
    options = parser.parse_args()
    print(
        f"load before: {os.getloadavg()[0]:.2f}; {options.messages} messages, concurrency "
        f"{options.concurrency} x batch {options.batch} per node"
    )
    for name in options.runs.split(",") * options.rounds:
        kind, nodes = ("sqlite", 1) if name == "sqlite" else ("pg", int(name[2:]))
        workdir = Path(tempfile.mkdtemp(prefix="scaleout-"))
        try:
            rate = run(kind, nodes, options, workdir)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        print(
            f"{name:7s} {nodes} node(s): {rate:8.0f} messages/s "
            f"(accept + submit result + receipt each); load {os.getloadavg()[0]:.2f}"
        )
    workdir = Path(tempfile.mkdtemp(prefix="scaleout-"))
    try:
        statements, commits = asyncio.run(count_statements(options, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(
        f"PostgreSQL: {statements:.2f} statements (round trips) and {commits:.3f} commits "
        "per message (accept + submit result + receipt)"
    )


if __name__ == "__main__":
    main()
