"""What SMPP and HTTP customers are owed: receipts owed (`message_state.receipt_owed`) and the
MO outbox, the statements that read them and the ops that settle them (`CustomerDeliveryStore`).
"""

from __future__ import annotations

from typing import Any

from gateway.store.rows import _MESSAGE_COLUMNS
from gateway.store.transaction import _Tx

# Oldest change first; the segment count for the receipt's `sub:`/submitted count.
_SELECT_OWED_RECEIPTS = (
    "SELECT "
    + ", ".join(f"m.{c.strip()}" for c in _MESSAGE_COLUMNS.split(","))
    + ", s.receipt_owed, (SELECT COUNT(*) FROM segments g WHERE g.message_id = s.id)"
    + " FROM message_state s JOIN messages m ON m.id = s.id"
    + " WHERE s.receipt_owed IS NOT NULL AND s.updated_at >= ? AND (? IS NULL OR m.channel = ?)"
    + " AND (? IS NULL OR m.account = ?) AND (? IS NULL OR (s.updated_at, s.id) > (?, ?))"
    + " ORDER BY s.updated_at, s.id LIMIT ?"
)

_INSERT_MO = (
    "INSERT INTO mo_outbox (account, pdu, received_at, expires_at, part_of) "
    "VALUES (?, ?, ?, ?, ?) RETURNING id"
)
_FORGET_OWED_RECEIPTS = (
    "UPDATE message_state SET receipt_owed = NULL "
    "WHERE receipt_owed IS NOT NULL AND updated_at < ? AND id IN (SELECT id FROM "
    "message_content WHERE (? IS NULL OR channel = ?) AND (? IS NULL OR account = ?))"
)


def _settle_receipts(tx: _Tx, rows: list[tuple[str, str]]) -> None:
    tx.flush()  # a status update pending in this transaction sets the mark it may clear
    tx.executemany(
        "UPDATE message_state SET receipt_owed = NULL WHERE id = ? AND receipt_owed = ?", rows
    )


def _insert_mo(tx: _Tx, row: tuple[Any, ...], parts_of: str | None) -> int:
    """Keep one MO; with `parts_of`, it is the whole of the parts kept under it, which go."""
    if parts_of is not None:
        tx.execute("DELETE FROM mo_outbox WHERE part_of = ?", (parts_of,))
    return int(tx.execute(_INSERT_MO, row).fetchone()[0])


def _delete_mos(tx: _Tx, ids: list[tuple[int]]) -> None:
    tx.executemany("DELETE FROM mo_outbox WHERE id = ?", ids)
