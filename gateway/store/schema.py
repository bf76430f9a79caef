"""The message store's schema: the tables, indexes and views, as numbered migrations, and how a
SQLite file is brought up to the latest one (`migrate`).

Owns the DDL and the migration list (append new migrations at the end; a number once landed is
never reused). Never does: the statements of everyday traffic (those sit with their ops).

The DDL sticks to what PostgreSQL also accepts apart from WITHOUT ROWID, `INTEGER PRIMARY KEY`
row ids, BLOB and REAL (a 4-byte float there): `gateway.store.dialect` says how a statement
is read by each engine.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

from dlr.status import (
    MessageStatus,
    SegmentStatus,
)
from gateway.store.inbound import INBOUND_REPLY_SCHEMA, INBOUND_SCHEMA
from gateway.store.optouts import OPTOUT_SCHEMA
from gateway.store.rows import _OTP_KIND, _api_key_context, _message_context
from gateway.store.sealing import (
    Sealer,
    is_sealed,
    is_sealed_text,
)

# Messages not yet handed to a carrier: what restart resumes, and what may expire, be cancelled
# or be requeued.
_UNSENT = (MessageStatus.ACCEPTED.value, MessageStatus.QUEUED.value)
# Segments still waiting for a receipt: what the receipt timeout sweeps.
_AWAITING_RECEIPT = (
    SegmentStatus.SUBMITTED.value,
    SegmentStatus.ENROUTE.value,
    SegmentStatus.SMSC_ACCEPTED.value,
)


def _sql_list(values: Sequence[str]) -> str:
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


# Literal lists (not parameters) so the planner can use the partial indexes below: they hold
# only the rows still in play, so the status updates of finished traffic cost no index work.
_UNSENT_SQL = _sql_list(_UNSENT)
_AWAITING_RECEIPT_SQL = _sql_list(_AWAITING_RECEIPT)


_MIGRATIONS: tuple[str, ...] = (
    # 1: messages, their segments (with the carrier-id correlation index) and history.
    # A message is two rows: `message_content` (what the customer sent and how it is routed,
    # written once) and `message_state` (what changes while it is in flight), so submit
    # results, retries and receipts rewrite a short row, never the one holding the body. The
    # `messages` view joins them back into one row per message for readers.
    # A history row is one event; when a segment's event also moved the message (the
    # aggregate), `message_status` says to what, instead of a second row (same time, detail).
    f"""
    CREATE TABLE message_content (
        id TEXT PRIMARY KEY,
        account TEXT NOT NULL,
        channel TEXT NOT NULL,
        source_addr TEXT NOT NULL,
        source_ton INTEGER NOT NULL,
        source_npi INTEGER NOT NULL,
        destination TEXT NOT NULL,
        kind TEXT NOT NULL,
        priority INTEGER NOT NULL,
        data_coding INTEGER NOT NULL,
        body BLOB NOT NULL,
        text TEXT,
        esm_class INTEGER NOT NULL,
        registered_delivery INTEGER NOT NULL,
        validity_at REAL,
        send_at REAL,
        route TEXT,
        targets TEXT NOT NULL,
        strategy TEXT,
        callback_url TEXT,
        reference TEXT,
        created_at REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE message_state (
        id TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        link TEXT,
        attempts INTEGER NOT NULL,
        next_attempt_at REAL,
        last_error TEXT,
        updated_at REAL NOT NULL,
        validity_at REAL
    ) WITHOUT ROWID;
    CREATE INDEX message_state_unsent ON message_state (validity_at)
        WHERE status IN {_UNSENT_SQL};
    CREATE VIEW messages AS SELECT
        c.id, c.account, c.channel, c.source_addr, c.source_ton, c.source_npi, c.destination,
        c.kind, c.priority, c.data_coding, c.body, c.text, c.esm_class, c.registered_delivery,
        c.validity_at, c.send_at, c.route, c.targets, c.strategy, s.link, s.status, s.attempts,
        s.next_attempt_at, s.last_error, c.callback_url, c.reference, c.created_at, s.updated_at
        FROM message_content c JOIN message_state s ON s.id = c.id;
    CREATE TABLE segments (
        message_id TEXT NOT NULL,
        idx INTEGER NOT NULL,
        total INTEGER NOT NULL,
        status TEXT NOT NULL,
        link TEXT,
        carrier_id TEXT,
        submitted_at REAL,
        changed_at REAL,
        done_at REAL,
        error TEXT,
        network_error TEXT,
        PRIMARY KEY (message_id, idx)
    ) WITHOUT ROWID;
    CREATE INDEX segments_by_carrier_id ON segments (link, carrier_id, submitted_at)
        WHERE carrier_id IS NOT NULL;
    CREATE INDEX segments_awaiting_receipt ON segments (submitted_at)
        WHERE status IN {_AWAITING_RECEIPT_SQL};
    CREATE TABLE history (
        id INTEGER PRIMARY KEY,
        message_id TEXT NOT NULL,
        segment_index INTEGER,
        at REAL NOT NULL,
        status TEXT NOT NULL,
        source TEXT NOT NULL,
        detail TEXT NOT NULL,
        changed INTEGER NOT NULL,
        message_status TEXT
    );
    CREATE INDEX history_by_message ON history (message_id, id);
    """,
    # 2: HTTP API state: API keys (hashes only), idempotency answers, OTP verifications.
    """
    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        key_hash TEXT NOT NULL UNIQUE,
        prefix TEXT NOT NULL,
        scopes TEXT NOT NULL,
        senders TEXT,
        countries TEXT,
        requests_per_second REAL,
        messages_per_second REAL,
        callback_url TEXT,
        callback_secret TEXT NOT NULL,
        created_at REAL NOT NULL,
        revoked_at REAL
    ) WITHOUT ROWID;
    CREATE TABLE idempotency (
        key_id TEXT NOT NULL,
        idempotency_key TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        status INTEGER NOT NULL,
        body BLOB NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (key_id, idempotency_key)
    ) WITHOUT ROWID;
    CREATE INDEX idempotency_by_age ON idempotency (created_at);
    CREATE TABLE otp (
        id TEXT PRIMARY KEY,
        key_id TEXT NOT NULL,
        destination TEXT NOT NULL,
        status TEXT NOT NULL,
        code_hash TEXT NOT NULL,
        code_length INTEGER NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        max_checks INTEGER NOT NULL,
        checks INTEGER NOT NULL,
        sends INTEGER NOT NULL,
        message_id TEXT,
        updated_at REAL NOT NULL
    ) WITHOUT ROWID;
    """,
    # 3: what SMPP customers are owed. `receipt_owed` is the status a receipt is owed for, set
    # by the status update that makes it owed (same transaction) and cleared when the customer
    # took it; `mo_outbox` keeps MOs (and parts held for reassembly) until a bind takes them.
    """
    ALTER TABLE message_state ADD COLUMN receipt_owed TEXT;
    CREATE INDEX message_state_receipt_owed ON message_state (updated_at)
        WHERE receipt_owed IS NOT NULL;
    CREATE TABLE mo_outbox (
        id INTEGER PRIMARY KEY,
        account TEXT NOT NULL,
        pdu BLOB NOT NULL,
        received_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        part_of TEXT
    );
    CREATE INDEX mo_outbox_parts ON mo_outbox (part_of) WHERE part_of IS NOT NULL;
    """,
    # 4: messages by reference within an account (a submit_multi's destinations; an HTTP
    # customer's own references).
    """
    CREATE INDEX message_content_reference ON message_content (account, reference)
        WHERE reference IS NOT NULL;
    """,
    # 5: a message belongs to a tenant, its channel and account together (an HTTP key and an
    # SMPP account may share a name): references are looked up within one tenant. Existing
    # rows already carry both; only the index changes.
    """
    DROP INDEX message_content_reference;
    CREATE INDEX message_content_reference ON message_content (channel, account, reference)
        WHERE reference IS NOT NULL;
    """,
    # 6: OTP message content and callback secrets sealed at rest (`_seal_clear_rows`).
    "seal",
    # 7: the opt-out list and its audit trail (`gateway.store.optouts`).
    OPTOUT_SCHEMA,
    # 8: inbound messages (MO), the webhook deliveries owed for them, the inbound block list
    # (`gateway.store.inbound`).
    INBOUND_SCHEMA,
    # 9: the keyword replies owed for MOs, kept in the MO's transaction (`gateway.store.inbound`).
    INBOUND_REPLY_SCHEMA,
)


def _seal_clear_rows(conn: sqlite3.Connection, sealer: Sealer) -> bool:
    """Migration 6: seal what older versions kept in clear, the callback secrets and the
    content of OTP messages not yet redacted. Returns whether any row held one."""
    clear_secrets = [
        (sealer.seal_text(secret, _api_key_context(key_id)), key_id)
        for key_id, secret in conn.execute("SELECT id, callback_secret FROM api_keys")
        if not is_sealed_text(secret)
    ]
    conn.executemany("UPDATE api_keys SET callback_secret = ? WHERE id = ?", clear_secrets)
    contents = [
        (sealer.seal(json.dumps([bytes(body).hex(), text]).encode(), _message_context(id_)), id_)
        for id_, body, text in conn.execute(
            "SELECT id, body, text FROM message_content "
            "WHERE kind = ? AND (length(body) > 0 OR text IS NOT NULL)",
            (_OTP_KIND,),
        )
        if not is_sealed(bytes(body))
    ]
    conn.executemany("UPDATE message_content SET body = ?, text = NULL WHERE id = ?", contents)
    # Rows that were redacted before secure_delete still have the code in their pages' free
    # space: VACUUM rewrites them whenever any OTP message was ever stored.
    ever = conn.execute("SELECT 1 FROM message_content WHERE kind = ? LIMIT 1", (_OTP_KIND,))
    return bool(clear_secrets or contents or ever.fetchone())


def migrate(conn: sqlite3.Connection, seal_key: bytes) -> None:
    """Bring a SQLite file to the latest migration, each one in its own transaction; the file's
    `user_version` says how far it is."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    wipe = False
    for number, script in enumerate(_MIGRATIONS[version:], start=version + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            if script == "seal":
                wipe = _seal_clear_rows(conn, Sealer(seal_key))
            else:
                for statement in script.split(";"):
                    if statement.strip():
                        conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    if wipe:
        # The clear values are still in free pages and in the WAL's older frames: rewrite
        # the file, and empty the WAL.
        conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
