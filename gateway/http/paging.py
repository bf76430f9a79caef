"""Paging for the /v1 lists (`/v1/inbound`, `/v1/optouts` and an opt-out's history): the
`limit` query parameter, opaque `after` cursors, and row ids read from a path or a cursor.

One place, so every list refuses the same inputs with the same problem.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from gateway.http.problems import Problem

MAX_PAGE = 1000
DEFAULT_PAGE = 100

# Row ids are 64-bit signed integers in both stores; a larger number names no row.
MAX_ROW_ID = 2**63 - 1


def whole_number(raw: str) -> int | None:
    """ASCII digits within a row id's range, else None (str.isdigit alone admits '²', which
    int() refuses, and numbers too large for the database to bind)."""
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 19:
        return None
    value = int(raw)
    return value if value <= MAX_ROW_ID else None


def page_limit(query: Mapping[str, str]) -> int:
    """The `limit` query parameter: DEFAULT_PAGE when absent, else 1..MAX_PAGE or a 422."""
    raw = query.get("limit")
    if raw is None:
        return DEFAULT_PAGE
    limit = whole_number(raw)
    if limit is None or not 1 <= limit <= MAX_PAGE:
        raise Problem(
            422, "invalid_limit", f"limit is a whole number from 1 to {MAX_PAGE}.", field="limit"
        )
    return limit


def encode_cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def decode_cursor(text: str, length: int) -> list[Any]:
    try:
        values = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        values = None
    if not isinstance(values, list) or len(values) != length:
        raise Problem(422, "invalid_cursor", "after is not a cursor this API gave.", field="after")
    return values


def decode_row_id_cursor(text: str) -> int:
    """A cursor this API gave as `encode_cursor([row_id])`, or a 422 naming `after`."""
    (row_id,) = decode_cursor(text, 1)
    if not isinstance(row_id, int) or not 0 <= row_id <= MAX_ROW_ID:
        raise Problem(422, "invalid_cursor", "after is not a cursor this API gave.", field="after")
    return row_id
