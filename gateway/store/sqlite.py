"""The default `MessageStore`: one SQLite file in WAL mode, written by one batching writer.

Owns the SQLite connection (the writer's and the reader's), the write path (group commit) and
the read queries. Never does: status rules (those are `dlr.status` and `dlr.aggregate`, applied
by the ops), routing, or anything a caller could see through the interface that another backend
could not do too.

The store is split by concern; this module is the SQLite part:
- `sqlstore`: `SqlMessageStore`, the interface's methods and the batching write queue, shared
  by the backends (this one adds the file, its connections and the writer core);
- `schema`: the DDL as numbered migrations, and `migrate` for a SQLite file;
- `rows`: the row codecs (objects to the tuples the SQL binds, and back);
- `transaction`: `_Tx`, the writer's view of the open transaction, and what it writes at flush;
- `message_ops`: the ops on messages (intake, submit results, retries, receipts) and their SQL;
- `deliveries`: receipts owed to customers and the MO outbox;
- `keys`: API keys, idempotency answers and OTP verifications.
New concerns get a module of their own beside these, not a section here.

Theory of operation
-------------------
Writes: every write method turns into an "op" (a module-level function of the open
transaction, with plain arguments) and a future, appended to one queue. A single writer task
takes everything queued (up to `max_batch`), has the writer run all of it in ONE transaction,
commits, and resolves each caller's future. While one batch commits the next one fills up, so
under load many callers share a commit (group commit) and the hop to the writer costs
microseconds per row. If an op raises, the batch is rolled back and replayed one op per
transaction, so one bad request cannot sink its neighbours (ops are functions of the database
and their arguments, so replaying is safe). Reads go through aiosqlite on a second connection
(WAL lets readers run beside the writer and shows them committed data only).

Where the writer runs (`writer=`): in a process of its own (the daemon's default), batches and
their results crossing a socket pair as pickles, so the writer's Python work runs on a second
CPU instead of competing with the event loop for the GIL; or on one dedicated thread of this
process, which costs nothing to start (tools, tests); or inline, on the event loop's own
thread, so a commit waits for no other thread or process to be scheduled. The same ops run
every way.

In-flight messages: the writer keeps the messages it has seen (accepted, submitted, awaiting
receipts) in memory with their segments, and an index of carrier ids, so a submit result or a
receipt is decided without reading the message back; rows the ops change (message state,
segments, history) are gathered per transaction and written with one executemany per statement
before COMMIT (the last state of each row wins). That memory mirrors the file plus the open
transaction: after any rollback it is dropped whole and rebuilt from the file on demand; messages
are forgotten once final, and beyond `live_messages` the oldest are. It holds plain row tuples
(which the garbage collector stops tracking); each op builds fresh `Message`/`Segment` objects
from them, and those are what its caller receives.

Secrets at rest: `accept` seals an OTP message's body and text into `body` (text NULL) before
the row leaves for the writer, `save_api_key` seals the callback secret; only the reads on this
side (which hold the `Sealer`) open them, so the writer, its memory and the files never see them
in clear. `secure_delete` (FAST) zeroes what a write replaces in a page, and migration 6 sealed
an older store's clear rows and rewrote the file. Files are 0600 in a 0700 directory
(`gateway.private_files`).

Durability: a caller's `await` returns after COMMIT. With `synchronous="NORMAL"` (the default) a
WAL commit is in the operating system's hands: it survives the process being killed (kill -9),
but the last transactions can be lost if the machine loses power. `synchronous="FULL"` fsyncs the
WAL on every commit and survives power loss too, at the price of one fsync per group commit.

Dialect: the SQL sticks to what PostgreSQL also accepts (ON CONFLICT upserts, partial indexes,
RETURNING), apart from `?` placeholders, WITHOUT ROWID and the PRAGMAs, so the statements and the
ops in the modules above can serve a PostgreSQL backend too.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import aiosqlite

from gateway.private_files import private_dir, private_file, read_or_create_key
from gateway.store.base import (
    StoreClosed,
    StoreError,
)
from gateway.store.batch import _BatchRunner
from gateway.store.schema import migrate
from gateway.store.sealing import (
    KEY_BYTES,
    Sealer,
)
from gateway.store.sqlstore import Query, SqlMessageStore
from gateway.store.transaction import _CarrierMap, _LiveMap
from gateway.store.writer import InlineWriter, ProcessWriter, ThreadWriter, WriterPlacement

Synchronous = Literal["NORMAL", "FULL"]
T = TypeVar("T")


class _WriterCore(_BatchRunner):
    """The writer connection and its memory of in-flight messages; runs batches of ops.

    Lives wherever the writer runs (the writer thread or the writer process) and is touched
    there only."""

    def __init__(
        self, path: Path, synchronous: Synchronous, live_messages: int, seal_key: bytes
    ) -> None:
        self.path, self.synchronous, self.live_messages = path, synchronous, live_messages
        self.seal_key = seal_key  # for migrations that seal what older versions kept in clear
        self.live: _LiveMap = {}
        self.carriers: _CarrierMap = {}
        self.conn: sqlite3.Connection | None = None

    def open(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        conn.execute("PRAGMA busy_timeout = 5000")
        # 256 MiB of page cache plus a memory map of the file: the tables and indexes that
        # in-flight traffic touches stay resident well past 100,000 messages.
        conn.execute("PRAGMA cache_size = -262144")
        conn.execute("PRAGMA mmap_size = 1073741824")
        conn.execute("PRAGMA temp_store = MEMORY")
        # What a write removes or replaces in a page is zeroed, not left in its free space
        # (FAST: only where the page is written anyway, so it costs no I/O).
        conn.execute("PRAGMA secure_delete = FAST")
        migrate(conn, self.seal_key)
        self.conn = conn

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    # --- the transaction, for `_BatchRunner.run_batch` ------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        if self.conn is None:
            raise StoreClosed(f"store {self.path} is not open")
        return self.conn

    def _begin(self) -> None:
        self._connection().execute("BEGIN IMMEDIATE")

    def _commit(self) -> None:
        self._connection().execute("COMMIT")

    def _rollback(self) -> None:
        conn = self._connection()
        if conn.in_transaction:  # some errors (disk full) end the transaction themselves
            conn.execute("ROLLBACK")


class SqliteMessageStore(SqlMessageStore):
    """`MessageStore` on one SQLite file; see the module docstring for how writes are batched.

    `writer`: where the writer runs. "process" (the daemon's default) gives it a CPU of its
    own; "thread" keeps it in this process (cheaper to start: tools and tests); "inline" runs
    each batch on the event loop's thread, in the turn that sends it (no hop, no pickles).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: Synchronous = "NORMAL",
        max_batch: int = 2000,
        live_messages: int = 100_000,
        writer: WriterPlacement = "thread",
        key_file: str | Path | None = None,
    ) -> None:
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be NORMAL or FULL, not {synchronous!r}")
        if writer not in ("thread", "process", "inline"):
            raise ValueError(f"writer must be thread, process or inline, not {writer!r}")
        super().__init__(max_batch=max_batch, live_messages=live_messages)
        self.path = Path(path)
        # The key that seals OTP message content and callback secrets (gateway.store.sealing);
        # the daemon's is `<data_dir>/store.key` (`TandemConfig.store_key_path`).
        self.key_file: Path = (
            Path(key_file) if key_file is not None else self.path.parent / "store.key"
        )
        self.synchronous = synchronous
        self.writer_placement: WriterPlacement = writer
        self._reader: aiosqlite.Connection | None = None
        self._read_lock = asyncio.Lock()  # _read_together runs its queries in one transaction

    @property
    def label(self) -> str:
        return str(self.path)

    async def schema_versions(self) -> dict[str, int]:
        rows = await self._read("PRAGMA user_version", ())
        return {"store": int(rows[0][0])}

    # --- lifecycle ----------------------------------------------------------------------------
    async def open(self) -> None:
        # 0700 and 0600 whatever the umask (the file holds messages, sealed secrets, OTP
        # state). SQLite gives the -wal and -shm files it creates the database file's mode.
        try:
            private_dir(self.path.parent)
            private_file(self.path, create=True)
            for suffix in ("-wal", "-shm", "-journal"):
                private_file(self.path.with_name(self.path.name + suffix))
        except OSError as exc:
            raise StoreError(f"cannot open the store {self.path}: {exc}") from exc
        try:
            key = read_or_create_key(self.key_file, KEY_BYTES)
            self._sealer = Sealer(key)
        except (OSError, ValueError) as exc:
            raise StoreError(f"cannot use the store key {self.key_file}: {exc}") from exc
        core = _WriterCore(self.path, self.synchronous, self.live_messages, key)
        writer: ThreadWriter | ProcessWriter | InlineWriter
        if self.writer_placement == "process":
            writer = ProcessWriter(core)
        elif self.writer_placement == "inline":
            writer = InlineWriter(core)
        else:
            writer = ThreadWriter(core)
        try:
            await writer.start()  # creates or migrates the schema before the reader looks
        except (sqlite3.Error, OSError) as exc:  # a damaged file, a full or read-only disk
            raise StoreError(f"cannot open the store {self.path}: {exc}") from exc
        self._writer = writer
        try:
            self._reader = await aiosqlite.connect(self.path, isolation_level=None)
            await self._reader.execute("PRAGMA busy_timeout = 5000")
            await self._reader.execute("PRAGMA query_only = 1")
            await self._check_key()
        except BaseException:
            if self._reader is not None:
                await self._reader.close()
                self._reader = None
            await writer.stop()
            self._writer = None
            raise
        self._start(writer)

    async def close(self) -> None:
        if not await self._stop():
            return
        if self._reader is not None:
            await self._reader.close()
        self._reader = None

    async def _read(self, sql: str, parameters: Sequence[Any]) -> list[Any]:
        if self._reader is None:
            raise StoreClosed(f"store {self.path} is not open")
        return list(await self._reader.execute_fetchall(sql, parameters))

    async def _read_together(self, queries: Sequence[Query]) -> list[list[Any]]:
        reader = self._reader
        if reader is None:
            raise StoreClosed(f"store {self.path} is not open")
        async with self._read_lock:
            await reader.execute("BEGIN")  # one snapshot for all of them
            try:
                return [list(await reader.execute_fetchall(sql, args)) for sql, args in queries]
            finally:
                await reader.execute("COMMIT")

    async def _read_pages(
        self, sql: str, parameters: Sequence[Any], page: int
    ) -> AsyncIterator[list[Any]]:
        reader = self._reader
        if reader is None:
            raise StoreClosed(f"store {self.path} is not open")
        async with reader.execute(sql, parameters) as cursor:
            while rows := await cursor.fetchmany(page):
                yield list(rows)
