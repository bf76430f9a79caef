"""What the end-to-end benches share to run Tandem on PostgreSQL instead of SQLite.

`add_arguments` gives a bench `--store sqlite|postgresql`, `--dsn` and `--count-db` (route the
daemon's connections through bench/pgwire.py and report statements and round trips per
message). `StoreRun` makes a schema of the run's own, writes the `[store]` lines, counts, and
drops the schema at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench import pgwire

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        choices=("sqlite", "postgresql"),
        default="sqlite",
        help="the daemon's store backend (postgresql: a schema of the run's own at --dsn)",
    )
    parser.add_argument("--dsn", default=DEFAULT_DSN, help="PostgreSQL (with --store postgresql)")
    parser.add_argument(
        "--count-db",
        action="store_true",
        help="PostgreSQL: relay the daemon's connections through bench/pgwire.py and print "
        "statements and round trips per message (the relay costs CPU: not for rate figures)",
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class StoreRun:
    """One bench run's store: the `[store]` lines, and on PostgreSQL its schema and counts."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.backend: str = args.store
        self.dsn: str = args.dsn
        self.schema = "bench_" + secrets.token_hex(4)
        self.counts_file = workdir / "pgwire.json"
        self.relay: subprocess.Popen[bytes] | None = None
        self.daemon_dsn = self.dsn
        self._before: dict[str, int] = {}
        self._after: dict[str, int] = {}
        if self.backend == "postgresql" and args.count_db:
            port = _free_port()
            host_port = self.dsn.split("@", 1)[1].split("/", 1)[0]
            self.relay = subprocess.Popen(
                [
                    sys.executable,
                    str(Path(__file__).with_name("pgwire.py")),
                    "--port",
                    str(port),
                    "--counts",
                    str(self.counts_file),
                    "--upstream",
                    host_port,
                ]
            )
            self.daemon_dsn = self.dsn.replace(host_port, f"127.0.0.1:{port}", 1)
            self.daemon_dsn += ("&" if "?" in self.daemon_dsn else "?") + "sslmode=disable"
            deadline = time.monotonic() + 10
            while not self.counts_file.exists():
                if time.monotonic() > deadline:
                    raise SystemExit("pgstore: the counting relay did not start")
                time.sleep(0.05)

    @property
    def postgresql(self) -> bool:
        return self.backend == "postgresql"

    def toml(self) -> str:
        """The lines under `[store]` that choose the backend (nothing for SQLite)."""
        if not self.postgresql:
            return ""
        return (
            f'backend = "postgresql"\ndsn = "{self.daemon_dsn}"\n'
            f'database_schema = "{self.schema}"\n'
        )

    def describe(self) -> str:
        if not self.postgresql:
            return "SQLite (WAL, synchronous NORMAL)"
        return f"PostgreSQL at {self.dsn.split('@', 1)[-1]}, schema {self.schema}"

    # --- counts ---------------------------------------------------------------------------------
    def traffic_starts(self) -> None:
        self._before = pgwire.read_counts(self.counts_file)

    def traffic_ends(self) -> None:
        if self.relay is not None:
            time.sleep(0.5)  # the relay writes its counts every 0.2 s
        self._after = pgwire.read_counts(self.counts_file)

    def counted(self) -> tuple[int, int] | None:
        """Statements and round trips during the traffic (None without counts)."""
        if not self._after:
            return None
        statements = self._after["statements"] - self._before.get("statements", 0)
        return statements, self._after["round_trips"] - self._before.get("round_trips", 0)

    def by_statement(self) -> dict[str, int]:
        """Executions of each statement (its text, shortened) during the traffic."""
        before = self._before.get("by_statement", {})
        after = self._after.get("by_statement", {})
        runs = {text: n - before.get(text, 0) for text, n in after.items()}
        return {text: n for text, n in runs.items() if n > 0}

    def per_message(self, messages: int) -> str:
        """Statements and round trips per message during the traffic ('' without counts)."""
        counts = self.counted()
        if counts is None:
            return ""
        statements, trips = counts
        return (
            f"{statements / messages:.3f} statements and {trips / messages:.3f} round trips "
            f"per message ({statements} and {trips} for {messages} messages, every connection "
            "of the daemon, counted on the wire)"
        )

    # --- reads and clean-up ---------------------------------------------------------------------
    def query(self, sql: str) -> list[Any]:
        """Rows of one statement on the run's schema (from a thread of its own: own loop)."""
        return asyncio.run(self._query(sql))

    async def _query(self, sql: str) -> list[Any]:
        import asyncpg

        conn = await asyncpg.connect(self.dsn, server_settings={"search_path": self.schema})
        try:
            return [tuple(r) for r in await conn.fetch(sql)]
        finally:
            await conn.close()

    def close(self) -> None:
        """Stop the relay, drop the schema (from a thread of its own: callers may be inside
        an event loop)."""
        if self.relay is not None:
            self.relay.terminate()
            self.relay.wait(10)
        if self.postgresql:
            worker = threading.Thread(target=asyncio.run, args=(self._drop(),))
            worker.start()
            worker.join()

    async def _drop(self) -> None:
        import asyncpg

        conn = await asyncpg.connect(self.dsn)
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")
        finally:
            await conn.close()
