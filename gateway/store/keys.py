"""HTTP API state: API keys, idempotency answers and OTP verifications, their statements and
ops (`HttpStateStore`, `OtpStore`).

Every change of a verification is one conditional UPDATE decided from the row as it is when the
statement runs, so the promise holds with any number of writers on one database.
"""

from __future__ import annotations

from typing import Any

from gateway.store.base import (
    DuplicateKeyName,
    OtpChange,
    OtpRecord,
)
from gateway.store.transaction import INTEGRITY_ERRORS, _Tx


def _insert_api_key(tx: _Tx, row: tuple[Any, ...]) -> None:
    try:
        tx.execute(f"INSERT INTO api_keys ({_API_KEY_COLUMNS}) VALUES ({_13})", row)
    except INTEGRITY_ERRORS as exc:
        raise DuplicateKeyName(f"an API key named {row[1]!r} exists") from exc


def _revoke_api_key(tx: _Tx, name_or_id: str, at: float) -> bool:
    cursor = tx.execute(
        "UPDATE api_keys SET revoked_at = ? WHERE (name = ? OR id = ?) AND revoked_at IS NULL",
        (at, name_or_id, name_or_id),
    )
    return bool(cursor.rowcount)


# --- HTTP API state rows -----------------------------------------------------------------------
_API_KEY_COLUMNS = (
    "id, name, key_hash, prefix, scopes, senders, countries, requests_per_second, "
    "messages_per_second, callback_url, callback_secret, created_at, revoked_at"
)
_13 = ", ".join("?" * 13)
_OTP_COLUMNS = (
    "id, key_id, destination, status, code_hash, code_length, created_at, expires_at, "
    "max_checks, checks, sends, message_id, updated_at"
)
_UPSERT_IDEMPOTENCY = (
    "INSERT INTO idempotency (key_id, idempotency_key, fingerprint, status, body, created_at) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (key_id, idempotency_key) "
    "DO UPDATE SET fingerprint = excluded.fingerprint, status = excluded.status, "
    "body = excluded.body, created_at = excluded.created_at"
)
_INSERT_OTP = f"INSERT INTO otp ({_OTP_COLUMNS}) VALUES ({_13})"
_SELECT_OTP = f"SELECT {_OTP_COLUMNS} FROM otp WHERE id = ?"
# Every change of a verification is one conditional UPDATE, decided from the row as it is when
# the statement runs (OtpStore's contract): concurrent checks on any number of writers cannot
# count past max_checks, approve twice or undo a cancel. In SET, columns are the row's values
# before the update (SQLite and PostgreSQL alike). `?` order: see the ops below.
_STILL_PENDING = "id = ? AND key_id = ? AND status = 'pending' AND expires_at > ?"
_CHECK_OTP = (
    "UPDATE otp SET checks = checks + 1, updated_at = ?, status = CASE "
    "WHEN code_hash = ? THEN 'approved' "
    "WHEN checks + 1 >= max_checks THEN 'max_attempts_reached' ELSE 'pending' END "
    f"WHERE {_STILL_PENDING} AND checks < max_checks RETURNING {_OTP_COLUMNS}"
)
_CANCEL_OTP = (
    f"UPDATE otp SET status = 'canceled', updated_at = ? WHERE {_STILL_PENDING} "
    f"RETURNING {_OTP_COLUMNS}"
)
_RESEND_OTP = (
    "UPDATE otp SET sends = sends + 1, message_id = ?, code_hash = ?, code_length = ?, "
    f"updated_at = ? WHERE {_STILL_PENDING} RETURNING {_OTP_COLUMNS}"
)
# What a request that changed nothing reports: an expired verification is marked so first.
_EXPIRE_OTP = (
    "UPDATE otp SET status = 'expired', updated_at = ? "
    "WHERE id = ? AND key_id = ? AND status = 'pending' AND expires_at <= ?"
)
_SELECT_OWN_OTP = f"SELECT {_OTP_COLUMNS} FROM otp WHERE id = ? AND key_id = ?"


def _change_otp(
    tx: _Tx, sql: str, values: tuple[Any, ...], otp_id: str, key_id: str, now: float
) -> OtpChange | None:
    """The op of the OTP changes: `sql` (one conditional UPDATE ... RETURNING) with `values`
    then `otp_id, key_id, now`; if it changed nothing, the verification as it is."""
    rows = tx.execute(sql, (*values, otp_id, key_id, now)).fetchall()
    if rows:
        return OtpChange(OtpRecord(*rows[0]), True)
    tx.execute(_EXPIRE_OTP, (now, otp_id, key_id, now))
    rows = tx.execute(_SELECT_OWN_OTP, (otp_id, key_id)).fetchall()
    return OtpChange(OtpRecord(*rows[0]), False) if rows else None
