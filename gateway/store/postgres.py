"""The PostgreSQL `MessageStore` (`[store] backend = "postgresql"`): several Tandem nodes on one
database, each with its own batching writer, all running the store's shared SQL and ops.

Owns the PostgreSQL connections (the writer's, the readers' pool), the schema's versions there,
and what only a shared database needs: the nodes table (who is alive, by a lease each node
renews) and the claim on each unsent message (which node's queue holds it). Never does: status
rules, batching policy or the statements of everyday traffic; those are shared with SQLite
(`gateway.store.sqlstore`, `gateway.store.batch`, the ops modules), read through
`gateway.store.dialect`.

Theory of operation
-------------------
Writes: the same group commit as SQLite (`SqlMessageStore`), one writer per node. The ops are
synchronous functions of the transaction; the writer (a thread, or a process of its own) drives
its asyncpg connection from a private event loop, one statement per round trip (executemany
pipelines its rows). The writer keeps no memory of messages between transactions (another node
may change them): each op reads the message it changes with `FOR UPDATE` on its state row, so
two nodes' ops on one message (a submit result here, a receipt there) take turns. A deadlock
between two nodes' batches is PostgreSQL's to detect; the batch is replayed op by op and an op
gets up to three transactions.

Claims and leases: a message accepted by a node is claimed by it (`message_state.claimed_by`
defaults to the writer session's `tandem.node` setting), and only that node's queue holds it.
Each node renews its lease in `nodes` every `lease_seconds / 3`, by the database's clock (the
nodes' clocks may disagree; the database has one). A node whose lease ran out is dead: any other
node takes its unsent messages (`take_over`) with `FOR UPDATE SKIP LOCKED`, so each goes to
exactly one survivor, which reads them into its queue. The take-over locks the dead nodes'
rows in `nodes` to its commit, so a node that was only stalled and renews meanwhile waits for
it, and then finds every message taken from it (`still_claimed`): the daemon drops those from
its queue before its links send again (they send only while its lease is surely its own).
Delivery is at least once: a message a node's link had taken but not yet recorded as submitted
when its lease ran out is sent again by the node that took it over; the bound is that node's
links' windows.

Hand-off: a node with no bind on a link releases its claim on what waits for it (`release`,
which notifies the other nodes), and a node that sends on that link takes the messages no node
holds (`take_over` with its links).

Secrets at rest: sealed on this side as with SQLite (`gateway.store.sealing`); every node of
one database needs the same `store.key`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import operator
import re
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import asyncpg

from gateway.messages import Message
from gateway.private_files import read_or_create_key
from gateway.store.base import (
    OptOutAction,
    OptOutNotice,
    OptOutScope,
    PendingRef,
    StoreClosed,
    StoreError,
)
from gateway.store.batch import _BatchRunner
from gateway.store.dialect import (
    SetBased,
    ddl,
    numbered,
    postgres,
    postgres_version,
    returns_rows,
    set_based,
    together,
)
from gateway.store.message_ops import (
    _PENDING_REFS,
    _SELECT_MESSAGE_WITH_SEGMENTS,
    _SELECT_SCHEDULED,
    _apply_segment_statuses,
    _fail,
    _finish_unsent,
    _insert_messages,
    _mark_submitted,
    _mark_submitted_many,
    _record_link_outcomes,
    _requeue,
    _set_segment_status,
)
from gateway.store.rows import _MESSAGE_COLUMNS, _MESSAGE_WIDTH, _message_from_row
from gateway.store.schema import _MIGRATIONS, _UNSENT_SQL
from gateway.store.sealing import KEY_BYTES, Sealer
from gateway.store.sqlstore import Query, SqlMessageStore
from gateway.store.transaction import ConstraintViolated, _CarrierMap, _LiveMap, _Tx
from gateway.store.writer import Op, Outcomes, ProcessWriter, ThreadWriter, WriterPlacement
from gateway.tasks import cancel_and_wait

# The channel of opt-out changes, then the schema's name (channels are the database's, and one
# database may hold several clusters' schemas).
_OPTOUT_CHANNEL = "tandem_optouts_"
# Migrations only a shared database needs, numbered apart from the shared `_MIGRATIONS` (each
# list has its own row in `schema_version`), so either list can grow without renumbering the
# other.
_CLUSTER_MIGRATIONS: tuple[str, ...] = (
    # 1: nodes and their leases; the claim on each message (set at intake by the writer
    # session's `tandem.node`).
    f"""
    CREATE TABLE nodes (
        name TEXT PRIMARY KEY,
        started_at DOUBLE PRECISION NOT NULL,
        seen_at DOUBLE PRECISION NOT NULL,
        lease_until DOUBLE PRECISION NOT NULL
    );
    ALTER TABLE message_state ADD COLUMN claimed_by TEXT
        DEFAULT current_setting('tandem.node', true);
    CREATE INDEX message_state_claims ON message_state (claimed_by, id)
        WHERE status IN {_UNSENT_SQL};
    """,
    # 2: carrier budgets shared by the nodes (`gateway.links.budget`): which node runs which
    # link, and the link's bind slots (a link's `sessions` of them), each held by one node at
    # a time; a slot whose node's lease ran out is free.
    """
    CREATE TABLE node_links (
        node TEXT NOT NULL,
        link TEXT NOT NULL,
        PRIMARY KEY (link, node)
    );
    CREATE TABLE link_slots (
        link TEXT NOT NULL,
        slot INTEGER NOT NULL,
        node TEXT NOT NULL,
        PRIMARY KEY (link, slot)
    );
    CREATE INDEX link_slots_by_node ON link_slots (node);
    """,
    # 3: the HTTP keys' rate limits shared by the nodes (`gateway.http.limits`): one row per
    # key and kind ("r" requests, "m" messages), the current fixed window and what it used.
    """
    CREATE TABLE key_windows (
        key_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        window_start DOUBLE PRECISION NOT NULL,
        used DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (key_id, kind)
    );
    """,
    # 4: which node delivers an owed receipt to its SMPP customer (`claim_receipts`): one
    # claim per receipt, so two nodes with binds of one account do not both deliver it.
    """
    CREATE TABLE receipt_claims (
        message_id TEXT NOT NULL,
        status TEXT NOT NULL,
        node TEXT NOT NULL,
        claimed_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (message_id, status)
    );
    """,
    # 5: the claims cover every customer delivery (`claim_deliveries`): a receipt is (message
    # id, status), an MO (its `mo_outbox` id, "mo").
    """
    ALTER TABLE receipt_claims RENAME TO delivery_claims;
    ALTER TABLE delivery_claims RENAME COLUMN message_id TO item;
    ALTER TABLE delivery_claims RENAME COLUMN status TO kind;
    """,
    # 6: every opt-out change any node (or tool) commits is announced to the listening nodes
    # at its commit (`watch_optouts`), so each node's list in memory follows within a few ms.
    f"""
    CREATE FUNCTION announce_optout_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify(left('{_OPTOUT_CHANNEL}' || TG_TABLE_SCHEMA, 63), json_build_object(
            'id', NEW.id, 'origin', NEW.origin, 'action', NEW.action, 'number', NEW.number,
            'scope', NEW.scope, 'target', NEW.target)::text);
        RETURN NULL;
    END $$;
    CREATE TRIGGER optout_audit_announce AFTER INSERT ON optout_audit
        FOR EACH ROW WHEN (NEW.changed <> 0) EXECUTE FUNCTION announce_optout_change();
    """,
)
# The database's clock (the nodes' clocks may disagree): the start of the statement's
# transaction, which for these single statements is the statement's own time.
_NOW = "extract(epoch from now())"
_HEARTBEAT = (
    f"INSERT INTO nodes (name, started_at, seen_at, lease_until) VALUES ($1, {_NOW}, {_NOW}, "
    f"{_NOW} + $2) ON CONFLICT (name) DO UPDATE SET seen_at = excluded.seen_at, "
    "lease_until = excluded.lease_until, started_at = CASE WHEN nodes.lease_until < "
    "excluded.seen_at THEN excluded.started_at ELSE nodes.started_at END "
    "RETURNING started_at = seen_at"
)
# The unsent messages of dead nodes, of unknown ones, and those no node holds (handed off by a
# node with no bind on their link, `_RELEASE`) for a link in $3 (the links this node sends on),
# for this node. The dead nodes' rows are locked first (in name order) and the lock is held to
# the commit: a dead node that renews its lease meanwhile waits for it, and so learns of every
# message taken from it before it may send again (`still_claimed`); a node that renewed first
# is alive by then and keeps its messages. SKIP LOCKED: two survivors taking over at once share
# them instead of waiting for each other or both taking one.
_TAKE_OVER = (
    f"WITH dead AS MATERIALIZED (SELECT name FROM nodes WHERE lease_until <= {_NOW} "
    "ORDER BY name FOR UPDATE) "
    "UPDATE message_state SET claimed_by = $1 WHERE id IN (SELECT s.id FROM message_state s "
    f"WHERE s.status IN {_UNSENT_SQL} AND s.claimed_by IS DISTINCT FROM $1 AND CASE WHEN "
    "s.claimed_by IS NULL THEN s.link IS NULL OR s.link = ANY($3::text[]) ELSE s.claimed_by IN "
    "(SELECT name FROM dead) OR NOT EXISTS (SELECT 1 FROM nodes n WHERE n.name = s.claimed_by) "
    "END LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING id"
)
# Of these messages ($1), the unsent ones this node ($2) still holds.
_STILL_CLAIMED = (
    f"SELECT id FROM message_state WHERE id = ANY($1::text[]) AND status IN {_UNSENT_SQL} "
    "AND claimed_by = $2"
)
# This node ($2) gives up its claim on messages ($1) waiting for link $3 (it has no bind on
# it): no node holds them now, and any node that sends on $3 takes them (`_TAKE_OVER`), woken
# by the notification (sent at the commit, once for the statement).
HANDOFF_CHANNEL = "tandem_handoff_"  # and the schema's name
_RELEASE = (
    "WITH released AS (UPDATE message_state SET claimed_by = NULL, link = $3 "
    f"WHERE id = ANY($1::text[]) AND claimed_by = $2 AND status IN {_UNSENT_SQL} RETURNING id) "
    "SELECT count(*), pg_notify($4, '') FROM released"
)
_MINE = " AND s.claimed_by = $3 ORDER BY s.id"
# A key's fixed window of $4 seconds (by the database's clock): $3 more used in it, or in a new
# one; the total and the seconds left. One statement, one round trip, one row per key and kind.
_WINDOW_START = "floor(extract(epoch from clock_timestamp()) / $4) * $4"
_COUNT_IN_WINDOW = (
    f"INSERT INTO key_windows (key_id, kind, window_start, used) VALUES ($1, $2, {_WINDOW_START}, "
    "$3) ON CONFLICT (key_id, kind) DO UPDATE SET used = CASE WHEN key_windows.window_start = "
    "excluded.window_start THEN key_windows.used + excluded.used ELSE excluded.used END, "
    "window_start = excluded.window_start "
    "RETURNING used, window_start + $4 - extract(epoch from clock_timestamp())"
)
# A node's links, named again each round; a link it no longer runs is forgotten.
_REGISTER_LINKS = (
    "WITH gone AS (DELETE FROM node_links WHERE node = $1 AND NOT link = ANY($2::text[])) "
    "INSERT INTO node_links (node, link) SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING"
)
# The live nodes that run each link.
_LINK_NODES = (
    "SELECT l.link, l.node FROM node_links l JOIN nodes n ON n.name = l.node "
    f"WHERE n.lease_until > {_NOW} ORDER BY l.link, l.node"
)
# Up to $4 of link $1's slots 0..$3-1 that no live node holds, for node $2. Two nodes claiming
# one free slot at once: the second's INSERT waits for the first's row, then its conflict
# update finds a live holder and changes nothing.
_LIVE_HOLDER = f"SELECT 1 FROM nodes n WHERE n.name = {{}} AND n.lease_until > {_NOW}"
_CLAIM_SLOTS = (
    "INSERT INTO link_slots (link, slot, node) SELECT $1, s, $2 FROM generate_series(0, $3 - 1) s "
    "WHERE NOT EXISTS (SELECT 1 FROM link_slots h WHERE h.link = $1 AND h.slot = s AND "
    f"(h.node = $2 OR EXISTS ({_LIVE_HOLDER.format('h.node')}))) ORDER BY s LIMIT $4 "
    "ON CONFLICT (link, slot) DO UPDATE SET node = excluded.node "
    f"WHERE NOT EXISTS ({_LIVE_HOLDER.format('link_slots.node')}) RETURNING slot"
)
# Owed customer deliveries for this node to deliver: new claims, this node's own, and those of
# a node that died or has not delivered them for $4 seconds (its customer's bind may have moved).
_CLAIM_DELIVERIES = (
    "INSERT INTO delivery_claims (item, kind, node, claimed_at) SELECT i, k, $3, "
    f"{_NOW} FROM unnest($1::text[], $2::text[]) AS c(i, k) ON CONFLICT (item, kind) "
    "DO UPDATE SET node = excluded.node, claimed_at = excluded.claimed_at "
    "WHERE delivery_claims.node = excluded.node OR delivery_claims.claimed_at < "
    f"excluded.claimed_at - $4 OR NOT EXISTS ({_LIVE_HOLDER.format('delivery_claims.node')}) "
    "RETURNING item, kind"
)
# What this node's queue reads back: those of the ids ($1) still unsent and held by it ($2).
_LOAD_MINE = (
    f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id = ANY($1::text[]) AND status IN "
    f"{_UNSENT_SQL} AND id IN (SELECT id FROM message_state WHERE id = ANY($1::text[]) "
    "AND claimed_by = $2)"
)
_IDS_PER_CHECK = 10_000
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
LISTEN_RETRY_SECONDS = 1.0  # between attempts to listen again after the connection was lost

log = logging.getLogger("tandem.store")


class _PgResult:
    """A statement's answer as the ops read a sqlite3 cursor's."""

    __slots__ = ("rowcount", "rows")

    def __init__(self, rows: list[tuple[Any, ...]], rowcount: int) -> None:
        self.rows, self.rowcount = rows, rowcount

    def fetchone(self) -> tuple[Any, ...] | None:
        return self.rows[0] if self.rows else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self.rows

    def __iter__(self) -> Any:
        return iter(self.rows)


def _changed(status: str) -> int:
    """The row count of a command tag ("UPDATE 3", "INSERT 0 1", "DELETE 0")."""
    count = status.rsplit(" ", 1)[-1]
    return int(count) if count.isdigit() else 0


class _PgConnection:
    """The writer's asyncpg connection with sqlite3's `execute`/`executemany`, driven from a
    private event loop on the writer's thread (nothing else runs on that loop).

    `executemany` of a plain INSERT or UPDATE runs its set-based form (`dialect.set_based`: one
    execution for all rows, not one per row), and `write_together` runs several such writes as
    one statement: a batch's writes cost one round trip and one execution each, not one per row.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, conn: Any, columns: dict[str, dict[str, str]]
    ) -> None:
        self._run = loop.run_until_complete
        self.conn = conn
        self.columns = columns  # each table's column types, for the set-based forms
        self._set_based: dict[str, SetBased | None] = {}
        self.statements = 0  # round trips, for the figures of bench/scaleout_store.py
        # A transaction expected to be one statement (`begin(alone=True)`): its BEGIN waits,
        # and is sent only if a statement comes that cannot go alone.
        self._begin_waits = False
        self._sent_alone = False

    def begin(self, *, alone: bool = False) -> None:
        """Start a transaction; with `alone`, one that is expected to be a single
        `write_together` statement, which then runs on its own (atomic by itself) without
        BEGIN and COMMIT round trips."""
        self._sent_alone = False
        self._begin_waits = alone
        if not alone:
            self.execute("BEGIN")

    def commit(self) -> None:
        if self._begin_waits or self._sent_alone:  # nothing sent, or the one statement
            self._begin_waits = self._sent_alone = False
            return
        self.execute("COMMIT")

    def rollback(self) -> None:
        """Roll back the open transaction, if one is open."""
        self._begin_waits = self._sent_alone = False
        if self.conn.is_in_transaction():
            self.execute("ROLLBACK")

    def _in_transaction(self) -> None:
        """Before a statement: the BEGIN that waited goes first."""
        if self._sent_alone:
            raise StoreError("a one-statement transaction went on after its statement")
        if self._begin_waits:
            self._begin_waits = False
            self.execute("BEGIN")

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> _PgResult:
        self._in_transaction()
        self.statements += 1
        statement = postgres(sql)
        try:
            if returns_rows(sql):
                rows = [tuple(r) for r in self._run(self.conn.fetch(statement, *parameters))]
                return _PgResult(rows, len(rows))
            return _PgResult([], _changed(self._run(self.conn.execute(statement, *parameters))))
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise ConstraintViolated(str(exc)) from exc

    def _form(self, sql: str) -> SetBased | None:
        try:
            return self._set_based[sql]
        except KeyError:
            form = self._set_based[sql] = set_based(postgres_version(sql), self.columns)
            return form

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> _PgResult:
        """All rows in one execution (the set-based form) where the statement has one, else
        one pipelined round trip whose `rowcount` is -1 (asyncpg does not count them), except
        for DELETE, run row by row so that a purge can say how many."""
        batch = rows if isinstance(rows, list) else list(rows)
        if not batch:
            return _PgResult([], 0)
        form = self._form(sql)
        if form is not None and form.takes(batch):
            return self._write_set_based([(form, batch)])
        if sql.lstrip()[:6].upper() == "DELETE":
            return _PgResult([], sum(self.execute(sql, row).rowcount for row in batch))
        self._in_transaction()
        self.statements += 1
        try:
            self._run(self.conn.executemany(postgres(sql), batch))
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise ConstraintViolated(str(exc)) from exc
        return _PgResult([], -1)

    def write_together(self, statements: Iterable[tuple[str, Iterable[Sequence[Any]]]]) -> None:
        """Run several executemany writes, in order, as one statement where each has a
        set-based form (else one after the other). The caller vouches that they change
        different rows (the parts of one statement do not see each other's changes)."""
        forms: list[tuple[SetBased, Sequence[Sequence[Any]]]] = []
        for sql, rows in statements:
            batch = rows if isinstance(rows, list) else list(rows)
            if not batch:
                continue
            form = self._form(sql)
            if form is None or not form.takes(batch):
                self._in_transaction()  # more than one statement: a transaction of its own
                if forms:
                    self._write_set_based(forms)
                    forms = []
                self.executemany(sql, batch)
            else:
                forms.append((form, batch))
        if forms:
            self._write_set_based(forms, alone=self._begin_waits)

    def _write_set_based(
        self, forms: Sequence[tuple[SetBased, Sequence[Sequence[Any]]]], *, alone: bool = False
    ) -> _PgResult:
        """One statement, one round trip: each form's rows as one array per column. `alone`:
        the transaction's only statement, sent without the BEGIN that waits."""
        if alone:
            self._begin_waits = False
            self._sent_alone = True
        else:
            self._in_transaction()
        arrays: list[Any] = []
        for _, rows in forms:
            arrays += map(list, zip(*rows, strict=True))
        statement = numbered(together([form.sql for form, _ in forms]))
        self.statements += 1
        try:
            status = self._run(self.conn.execute(statement, *arrays))
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise ConstraintViolated(str(exc)) from exc
        return _PgResult([], _changed(status))


async def _keep_session(conn: Any) -> None:
    """A readers' connection going back to the pool keeps its session: asyncpg's default reset
    is one more round trip after every reader call (`RESET ALL`, `UNLISTEN *`, ...), and the
    readers leave nothing to reset (no SET, LISTEN or session lock; an open transaction is
    still rolled back by the pool)."""


def _server_settings(schema: str, node: str) -> dict[str, str]:
    return {"search_path": schema, "tandem.node": node, "application_name": f"tandem {node}"}


async def migrate(conn: Any, schema: str) -> None:
    """Bring a database (the schema `schema`) to the latest migrations of both lists, each in
    its own transaction under an advisory lock, so nodes starting at once migrate it once."""
    await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_version (part TEXT PRIMARY KEY, version INTEGER)"
    )
    for part, scripts in (("store", _MIGRATIONS), ("cluster", _CLUSTER_MIGRATIONS)):
        while True:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", schema)
                version = await conn.fetchval(
                    "SELECT version FROM schema_version WHERE part = $1", part
                )
                version = version or 0
                if version >= len(scripts):
                    break
                script = scripts[version]
                # "seal": SQLite files of older versions kept some values in clear; a
                # PostgreSQL store was never written by those versions: nothing to seal.
                if script != "seal":
                    await conn.execute(ddl(script))
                await conn.execute(
                    "INSERT INTO schema_version (part, version) VALUES ($1, $2) "
                    "ON CONFLICT (part) DO UPDATE SET version = excluded.version",
                    part,
                    version + 1,
                )


async def column_types(conn: Any, schema: str) -> dict[str, dict[str, str]]:
    """Each table's columns and their types in `schema` (after the migrations), which the
    set-based forms of the writes need to type their arrays."""
    rows = await conn.fetch(
        "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
        "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = $1 AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped",
        schema,
    )
    columns: dict[str, dict[str, str]] = {}
    for table, column, type_name in rows:
        columns.setdefault(table, {})[column] = type_name
    return columns


# What each op will read: message ids, and (link, carrier id) pairs of receipts.
_Touches = Callable[[tuple[Any, ...], set[str], set[tuple[str, str]]], None]


def _touches_nothing(args: tuple[Any, ...], ids: set[str], keys: set[tuple[str, str]]) -> None:
    return None


def _touches_first(args: tuple[Any, ...], ids: set[str], keys: set[tuple[str, str]]) -> None:
    ids.add(args[0])


def _touches_submits(args: tuple[Any, ...], ids: set[str], keys: set[tuple[str, str]]) -> None:
    ids.update(row[0] for row in args[0])


def _touches_receipts(args: tuple[Any, ...], ids: set[str], keys: set[tuple[str, str]]) -> None:
    keys.update((row[0], row[1]) for row in args[0])


def _touches_outcomes(args: tuple[Any, ...], ids: set[str], keys: set[tuple[str, str]]) -> None:
    for row in args[0]:
        if len(row) == 5:
            ids.add(row[0])
        else:
            keys.add((row[0], row[1]))


_TOUCHES: dict[Callable[..., Any], _Touches] = {
    _mark_submitted: _touches_first,
    _mark_submitted_many: _touches_submits,
    _apply_segment_statuses: _touches_receipts,
    _record_link_outcomes: _touches_outcomes,
    _requeue: _touches_first,
    _fail: _touches_first,
    _finish_unsent: _touches_first,
    _set_segment_status: _touches_first,
}
# `_SELECT_MESSAGE_WITH_SEGMENTS` (as PostgreSQL runs it) for many messages, locked in id
# order: those named by id, and those with a segment submitted under one of the (link, carrier
# id) pairs (the carrier ids of the receipts in the batch), in one round trip.
_PREFETCH_MESSAGES = postgres(_SELECT_MESSAGE_WITH_SEGMENTS).replace(
    "WHERE c.id = $1 FOR UPDATE OF st",
    "WHERE c.id IN (SELECT unnest(?::text[]) UNION ALL SELECT s.message_id FROM segments s "
    "JOIN unnest(?::text[], ?::text[]) AS k(link, carrier_id) "
    "ON s.link = k.link AND s.carrier_id = k.carrier_id) ORDER BY c.id, g.idx FOR UPDATE OF st",
)
# Where a segment row's link, carrier id and submission time are (`_SEGMENT_COLUMNS`).
_LINK, _CARRIER_ID, _SUBMITTED_AT = _MESSAGE_WIDTH + 4, _MESSAGE_WIDTH + 5, _MESSAGE_WIDTH + 6


def _later(submitted_at: float | None, than: float | None) -> bool:
    """Whether a submission is later than another, as `_FIND_SEGMENT`'s `ORDER BY
    submitted_at DESC` ranks them in PostgreSQL (NULL first)."""
    if submitted_at is None:
        return than is not None
    return than is not None and submitted_at > than


class _PgWriterCore(_BatchRunner):
    """The writer's connection and batch runner; lives where the writer runs."""

    ATTEMPTS: ClassVar[int] = 3

    def __init__(self, dsn: str, schema: str, node: str) -> None:
        self.dsn, self.schema, self.node = dsn, schema, node
        self.path = Path(f"postgresql-{schema}")  # names the writer process
        # No memory of messages across transactions: other nodes change them.
        self.live_messages = 0
        self.live: _LiveMap = {}
        self.carriers: _CarrierMap = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pg: _PgConnection | None = None
        self._one_statement = False  # the batch in hand runs without BEGIN and COMMIT

    def open(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            conn = loop.run_until_complete(
                asyncpg.connect(
                    self.dsn, server_settings=_server_settings(self.schema, self.node), timeout=10
                )
            )
        except BaseException:
            loop.close()
            raise
        try:
            loop.run_until_complete(migrate(conn, self.schema))
            columns = loop.run_until_complete(column_types(conn, self.schema))
        except BaseException:
            loop.run_until_complete(conn.close())
            loop.close()
            raise
        self._loop, self._pg = loop, _PgConnection(loop, conn, columns)

    def close(self) -> None:
        if self._pg is not None and self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.run_until_complete(self._pg.conn.close(timeout=5))
            self._loop.close()
        self._pg = self._loop = None

    def _connection(self) -> _PgConnection:
        if self._pg is None:
            raise StoreClosed(f"store postgresql schema {self.schema} is not open")
        return self._pg

    def run_batch(self, batch: list[Op]) -> Outcomes:
        # A batch of intakes alone is one statement (`_insert_messages`), atomic by itself:
        # no BEGIN and COMMIT round trips around it.
        self._one_statement = all(op is _insert_messages for op, _ in batch)
        try:
            return super().run_batch(batch)
        finally:
            self._one_statement = False

    def _begin(self) -> None:
        self._connection().begin(alone=self._one_statement)

    def _commit(self) -> None:
        self._connection().commit()

    def _rollback(self) -> None:
        self._connection().rollback()

    def _prefetch(self, tx: _Tx, batch: list[Op]) -> None:
        """The messages the batch's ops will change, read and locked in one statement (in id
        order: one lock order for every node) instead of one round trip per op; the ops find
        them in `tx.live`, and the receipts' carrier ids in `tx.carriers` (the latest
        submission of each, as `_FIND_SEGMENT` answers)."""
        ids: set[str] = set()
        carrier_keys: set[tuple[str, str]] = set()
        for op, args in batch:
            _TOUCHES.get(op, _touches_nothing)(args, ids, carrier_keys)
        ids.difference_update(tx.live)
        if not ids and not carrier_keys:
            return
        links, carrier_ids = zip(*carrier_keys, strict=True) if carrier_keys else ((), ())
        rows = (
            self._connection()
            .execute(_PREFETCH_MESSAGES, (sorted(ids), list(links), list(carrier_ids)))
            .fetchall()
        )
        latest: dict[tuple[str, str], tuple[str, int, float | None]] = {}
        for message_id, group in itertools.groupby(rows, key=operator.itemgetter(0)):
            group_rows = list(group)
            segment_rows = [r for r in group_rows if r[_MESSAGE_WIDTH] is not None]
            if message_id not in tx.live:
                tx.live[message_id] = (
                    group_rows[0][:_MESSAGE_WIDTH],
                    tuple(r[_MESSAGE_WIDTH:] for r in segment_rows),
                )
            for r in segment_rows:
                key = (r[_LINK], r[_CARRIER_ID])
                if key in carrier_keys:
                    best = latest.get(key)
                    if best is None or _later(r[_SUBMITTED_AT], best[2]):
                        latest[key] = (message_id, r[_MESSAGE_WIDTH + 1], r[_SUBMITTED_AT])
        for key, (message_id, index, _) in latest.items():
            tx.carriers[key] = (message_id, index)

    def _retryable(self, exc: Exception) -> bool:
        return isinstance(
            exc, (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)
        ) or isinstance(exc.__cause__, asyncpg.DeadlockDetectedError)


class PostgresMessageStore(SqlMessageStore):
    """`MessageStore` on PostgreSQL; see the module docstring for claims and leases.

    `dsn`: an asyncpg DSN. `schema`: the schema the tables live in (created if missing; one
    database can hold several Tandem clusters, or tests, side by side). `node`: this node's
    name, unique among the nodes of one database. `lease_seconds`: how long a node that stops
    renewing keeps its messages before another node takes them over.
    """

    # NULL is "no limit" in PostgreSQL's LIMIT (-1 is an error there).
    _NO_LIMIT: ClassVar[int | None] = None

    def __init__(
        self,
        dsn: str,
        *,
        key_file: str | Path,
        schema: str = "tandem",
        node: str = "tandem",
        lease_seconds: float = 15.0,
        max_batch: int = 2000,
        writer: WriterPlacement = "thread",
        pool_size: int = 10,
    ) -> None:
        if not _NAME.match(schema):
            raise ValueError(f"schema must be a plain SQL name, not {schema!r}")
        if writer not in ("thread", "process"):
            raise ValueError(f"writer must be thread or process, not {writer!r}")
        if lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")
        super().__init__(max_batch=max_batch, live_messages=0)
        self.dsn, self.schema, self.node = dsn, schema, node
        self.key_file: Path = Path(key_file)
        self.lease_seconds = lease_seconds
        self.writer_placement: WriterPlacement = writer
        self.pool_size = pool_size
        self._pool: Any = None
        self._watching: asyncio.Task[None] | None = None  # `watch_optouts`
        self._handoffs: asyncio.Task[None] | None = None  # `watch_handoffs`

    @property
    def label(self) -> str:
        return f"postgresql schema {self.schema}"

    async def schema_versions(self) -> dict[str, int]:
        rows = await self._readers().fetch("SELECT part, version FROM schema_version ORDER BY part")
        return {part: version for part, version in rows}

    # --- lifecycle ----------------------------------------------------------------------------
    async def open(self) -> None:
        try:
            self._sealer = Sealer(read_or_create_key(self.key_file, KEY_BYTES))
        except (OSError, ValueError) as exc:
            raise StoreError(f"cannot use the store key {self.key_file}: {exc}") from exc
        core = _PgWriterCore(self.dsn, self.schema, self.node)
        writer = ProcessWriter(core) if self.writer_placement == "process" else ThreadWriter(core)
        try:
            await writer.start()  # migrates before the readers look
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StoreError(f"cannot open the store ({self.label}): {exc}") from exc
        try:
            self._pool = await asyncpg.create_pool(
                self.dsn,
                min_size=1,
                max_size=self.pool_size,
                server_settings=_server_settings(self.schema, self.node),
                timeout=10,
                reset=_keep_session,
            )
            await self._check_key()
            await self.heartbeat()
        except BaseException as exc:
            if self._pool is not None:
                await self._pool.close()
                self._pool = None
            await writer.stop()
            if isinstance(exc, (OSError, asyncpg.PostgresError)):
                raise StoreError(f"cannot open the store ({self.label}): {exc}") from exc
            raise
        self._start(writer)

    async def close(self) -> None:
        for task in (self._watching, self._handoffs):
            if task is not None:
                await cancel_and_wait(task)
        self._watching = self._handoffs = None
        if not await self._stop():
            return
        if self._pool is not None:
            await self._pool.close()
        self._pool = None

    # --- reads --------------------------------------------------------------------------------
    def _readers(self) -> Any:
        if self._pool is None:
            raise StoreClosed(f"store {self.label} is not open")
        return self._pool

    async def _read(self, sql: str, parameters: Sequence[Any]) -> list[Any]:
        return list(await self._readers().fetch(postgres(sql), *parameters))

    async def _read_together(self, queries: Sequence[Query]) -> list[list[Any]]:
        async with (
            self._readers().acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            return [list(await conn.fetch(postgres(sql), *args)) for sql, args in queries]

    async def _read_pages(
        self, sql: str, parameters: Sequence[Any], page: int
    ) -> AsyncIterator[list[Any]]:
        async with self._readers().acquire() as conn, conn.transaction(readonly=True):
            cursor = await conn.cursor(postgres(sql), *parameters)
            while rows := await cursor.fetch(page):
                yield list(rows)

    # --- the cluster: leases and claims -------------------------------------------------------
    async def heartbeat(self) -> bool:
        """Renew this node's lease. False if it had lapsed (another node may have taken this
        node's messages meanwhile: the caller should say so loudly)."""
        row = await self._readers().fetchrow(_HEARTBEAT, self.node, self.lease_seconds)
        return not bool(row[0])

    async def take_over(self, *, links: Sequence[str] = (), limit: int = 10_000) -> list[str]:
        """Claim unsent messages whose node's lease ran out, and those no node holds that wait
        for one of `links` (the links this node sends on; another node handed them off); their
        ids, for this node's queue to read. Each goes to one node only."""
        rows = await self._readers().fetch(_TAKE_OVER, self.node, limit, list(links))
        return [r[0] for r in rows]

    async def still_claimed(self, message_ids: Sequence[str]) -> set[str]:
        """Of these messages, the unsent ones this node still holds (the others were taken
        over while its lease had lapsed, or finished)."""
        mine: set[str] = set()
        for start in range(0, len(message_ids), _IDS_PER_CHECK):
            chunk = list(message_ids[start : start + _IDS_PER_CHECK])
            rows = await self._readers().fetch(_STILL_CLAIMED, chunk, self.node)
            mine.update(r[0] for r in rows)
        return mine

    async def release(self, message_ids: Sequence[str], link: str) -> int:
        """Give up this node's claim on messages waiting for `link` (this node has no bind on
        it), for a node that sends on it to take; how many were still this node's."""
        if not message_ids:
            return 0
        channel = (HANDOFF_CHANNEL + self.schema)[:63]
        row = await self._readers().fetchrow(_RELEASE, list(message_ids), self.node, link, channel)
        return int(row[0])

    def watch_handoffs(self, wake: Callable[[], None]) -> None:
        """Call `wake` whenever a node of this schema hands messages off (`release`), and
        each time the listening connection is (re)opened (what was handed off before that
        is found by the next take-over, not heard)."""
        if self._handoffs is None:
            channel = (HANDOFF_CHANNEL + self.schema)[:63]
            self._handoffs = asyncio.get_running_loop().create_task(
                self._listen_forever("hand-offs", channel, lambda *_: wake(), wake),
                name="handoff-listen",
            )

    async def load_waiting(self, message_ids: Sequence[str]) -> list[Message]:
        # Only this node's claims: a page of references read back after another node took
        # some over (this node's lease had lapsed) leaves those out.
        found: list[Message] = []
        for start in range(0, len(message_ids), _IDS_PER_CHECK):
            chunk = list(message_ids[start : start + _IDS_PER_CHECK])
            rows = await self._readers().fetch(_LOAD_MINE, chunk, self.node)
            found.extend(_message_from_row(r, self._sealer) for r in rows)
        return found

    async def live_nodes(self) -> list[str]:
        rows = await self._readers().fetch(
            f"SELECT name FROM nodes WHERE lease_until > {_NOW} ORDER BY name"
        )
        return [r[0] for r in rows]

    async def register_links(self, links: Sequence[str]) -> None:
        """Say which links this node runs (the others forget it for a link not named)."""
        await self._readers().execute(_REGISTER_LINKS, self.node, list(links))

    async def link_nodes(self) -> dict[str, list[str]]:
        """The live nodes that run each link, by name."""
        nodes: dict[str, list[str]] = {}
        for link, node in await self._readers().fetch(_LINK_NODES):
            nodes.setdefault(link, []).append(node)
        return nodes

    async def held_slots(self) -> dict[str, list[int]]:
        """The bind slots this node holds, by link."""
        rows = await self._readers().fetch(
            "SELECT link, slot FROM link_slots WHERE node = $1 ORDER BY link, slot", self.node
        )
        held: dict[str, list[int]] = {}
        for link, slot in rows:
            held.setdefault(link, []).append(slot)
        return held

    async def claim_slots(self, link: str, sessions: int, count: int) -> list[int]:
        """Take up to `count` of the link's slots `0..sessions-1` that no live node holds."""
        if count <= 0:
            return []
        rows = await self._readers().fetch(_CLAIM_SLOTS, link, self.node, sessions, count)
        return sorted(r[0] for r in rows)

    async def release_slots(self, link: str, slots: Sequence[int]) -> None:
        """Give slots back (this node closed their binds first)."""
        await self._readers().execute(
            "DELETE FROM link_slots WHERE link = $1 AND node = $2 AND slot = ANY($3::int[])",
            link,
            self.node,
            list(slots),
        )

    async def count_in_window(
        self, key_id: str, kind: str, amount: float, seconds: float
    ) -> tuple[float, float]:
        """Add `amount` to a key's shared fixed window (`gateway.http.limits.SharedWindows`)."""
        row = await self._readers().fetchrow(
            _COUNT_IN_WINDOW, key_id, kind, float(amount), float(seconds)
        )
        return float(row[0]), float(row[1])

    async def claim_deliveries(
        self, keys: Sequence[tuple[str, str]], *, stale_after: float = 30.0
    ) -> set[tuple[str, str]]:
        """Of these owed customer deliveries (`gateway.smpp_server.outbox.delivery_key`: a
        receipt's (message id, status), an MO's (id, "mo")), the ones this node is to deliver
        (the rest are another live node's, claimed less than `stale_after` seconds ago)."""
        if not keys:
            return set()
        items = [item for item, _ in keys]
        kinds = [str(kind) for _, kind in keys]
        rows = await self._readers().fetch(_CLAIM_DELIVERIES, items, kinds, self.node, stale_after)
        mine = {(r[0], r[1]) for r in rows}
        return {key for key in keys if (key[0], str(key[1])) in mine}

    async def forget_delivery_claims(self, *, older_than: float = 600.0) -> int:
        """Forget claims made more than `older_than` seconds ago: their deliveries were settled
        long since, or their claims went stale anyway. (A claim is not forgotten when its
        delivery is settled: another node's refill that read it as owed a moment before would
        claim it again.)"""
        status = await self._readers().execute(
            f"DELETE FROM delivery_claims WHERE claimed_at < {_NOW} - $1", older_than
        )
        return _changed(status)

    # --- opt-out changes as they commit (`OptOutFeed`) ----------------------------------------
    def watch_optouts(
        self, on_change: Callable[[OptOutNotice], None], on_gap: Callable[[], None]
    ) -> None:
        """LISTEN on a connection of its own to what `optout_audit_announce` notifies (see
        `OptOutFeed`); PostgreSQL delivers a transaction's notifications at its commit, in
        commit order. A lost connection is opened again every `LISTEN_RETRY_SECONDS`."""
        if self._watching is None:
            channel = (_OPTOUT_CHANNEL + self.schema)[:63]

            def heard(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
                try:
                    notice = _optout_notice(payload)
                except (ValueError, KeyError, TypeError):
                    log.warning("opt-outs: an announcement not understood: %.200s", payload)
                    on_gap()  # read the change from the store instead
                    return
                on_change(notice)

            self._watching = asyncio.get_running_loop().create_task(
                self._listen_forever("opt-outs", channel, heard, on_gap), name="optout-listen"
            )

    async def _listen_forever(
        self, what: str, channel: str, heard: Callable[..., None], on_gap: Callable[[], None]
    ) -> None:
        """LISTEN on `channel`, opening a lost connection again every `LISTEN_RETRY_SECONDS`."""
        while True:
            try:
                await self._listen(channel, heard, on_gap)
                log.warning("%s: the connection listening for changes was lost", what)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("%s: cannot listen for changes: %s", what, exc)
            await asyncio.sleep(LISTEN_RETRY_SECONDS)

    async def _listen(
        self, channel: str, heard: Callable[..., None], on_gap: Callable[[], None]
    ) -> None:
        """Listen on one connection until it is lost."""
        lost = asyncio.Event()
        conn = await asyncpg.connect(
            self.dsn, server_settings=_server_settings(self.schema, self.node), timeout=10
        )
        try:
            conn.add_termination_listener(lambda _conn: lost.set())
            await conn.add_listener(channel, heard)
            on_gap()  # what committed before the LISTEN took effect is read, not heard
            await lost.wait()
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(conn.close(timeout=2))

    async def leave_links(self) -> None:
        """This node runs no link any more (it stops): its slots are free at once."""
        async with self._readers().acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM link_slots WHERE node = $1", self.node)
            await conn.execute("DELETE FROM node_links WHERE node = $1", self.node)

    async def pending_refs(
        self, due_by: float, *, page: int = 10_000
    ) -> AsyncIterator[list[PendingRef]]:
        # What this node's queue holds at start: its own claims, after taking those of dead
        # nodes (and of none); other live nodes' messages stay theirs.
        await self.take_over(limit=1 << 30)
        sql = postgres(_PENDING_REFS).replace(" ORDER BY s.id", _MINE)
        async with self._readers().acquire() as conn, conn.transaction(readonly=True):
            cursor = await conn.cursor(sql, due_by, due_by, self.node)
            while rows := await cursor.fetch(page):
                yield list(rows)

    async def load_scheduled(self, after: float) -> list[Message]:
        # This node's own (see `pending_refs`).
        await self.take_over(limit=1 << 30)
        sql = postgres(_SELECT_SCHEDULED).replace(
            " ORDER BY priority, id",
            " AND id IN (SELECT id FROM message_state WHERE claimed_by = $3) ORDER BY priority, id",
        )
        rows = await self._readers().fetch(sql, after, after, self.node)
        return [_message_from_row(r, self._sealer) for r in rows]


def _optout_notice(payload: str) -> OptOutNotice:
    """An announcement of `optout_audit_announce` (JSON) as the registry applies it."""
    fields = json.loads(payload)
    return OptOutNotice(
        number=str(fields["number"]),
        action=OptOutAction(fields["action"]),
        scope=OptOutScope(fields["scope"]),
        target=str(fields["target"]),
        origin=str(fields["origin"]),
    )
