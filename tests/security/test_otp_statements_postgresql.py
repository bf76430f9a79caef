"""The store's OTP statements keep their promise on PostgreSQL too (a later backend starts from
the same SQL): hundreds of checks at once over many connections count at most `max_checks`,
approve at most once, and a cancel is final. Needs PostgreSQL at 127.0.0.1:5432, db `test`."""

from __future__ import annotations

import asyncio
import random
import re
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.store import keys as store_keys
from gateway.store import schema as store_schema

asyncpg = pytest.importorskip("asyncpg")
DSN = "postgresql://postgres@127.0.0.1:5432/test"


def postgres(sql: str) -> str:
    """`?` placeholders as `$1, $2, ...` (the one dialect difference in these statements)."""
    numbers = iter(range(1, 1000))
    return re.sub(r"\?", lambda _: f"${next(numbers)}", sql)


def otp_table_ddl() -> str:
    migration = next(m for m in store_schema._MIGRATIONS if "CREATE TABLE otp" in m)
    ddl = migration[migration.index("CREATE TABLE otp") :].split(";")[0]
    # Unix times need double precision there (REAL is 4 bytes in PostgreSQL).
    return ddl.replace("WITHOUT ROWID", "").replace(" REAL ", " DOUBLE PRECISION ")


@pytest.fixture
async def pool() -> AsyncIterator[Any]:
    try:
        pool = await asyncpg.create_pool(DSN, min_size=2, max_size=20, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 (db test) is not available: {exc}")
    schema = "otp_" + secrets.token_hex(4)  # other tests share the database
    await pool.execute(f"CREATE SCHEMA {schema}")
    await pool.close()
    pool = await asyncpg.create_pool(
        DSN, min_size=2, max_size=20, server_settings={"search_path": schema}
    )
    try:
        await pool.execute(otp_table_ddl())
        await pool.execute(
            postgres(store_keys._INSERT_OTP),
            "otp_1",
            "key_1",
            "+447911123456",
            "pending",
            "right",
            6,
            1.0,
            10_000.0,
            5,
            0,
            1,
            None,
            1.0,
        )
        yield pool
    finally:
        await pool.execute(f"DROP SCHEMA {schema} CASCADE")
        await pool.close()


async def check(pool: Any, code_hash: str) -> bool:
    """One check; True if it was counted."""
    rows = await pool.fetch(
        postgres(store_keys._CHECK_OTP), 10.0, code_hash, "otp_1", "key_1", 10.0
    )
    return bool(rows)


async def test_hundreds_of_concurrent_checks_count_at_most_max_checks(pool: Any) -> None:
    counted = await asyncio.gather(*(check(pool, f"wrong{n}") for n in range(300)))
    assert sum(counted) == 5
    row = await pool.fetchrow("SELECT status, checks FROM otp WHERE id = 'otp_1'")
    assert tuple(row) == ("max_attempts_reached", 5)


async def test_the_right_code_among_concurrent_wrong_ones_approves_once(pool: Any) -> None:
    hashes = ["right"] * 30 + [f"wrong{n}" for n in range(170)]
    random.Random(19).shuffle(hashes)
    counted = await asyncio.gather(*(check(pool, h) for h in hashes))
    row = await pool.fetchrow("SELECT status, checks FROM otp WHERE id = 'otp_1'")
    assert row["checks"] == sum(counted) <= 5
    assert row["status"] in ("approved", "max_attempts_reached")
    assert not any(await asyncio.gather(*(check(pool, "right") for _ in range(20))))


async def test_a_cancel_raced_by_checks_is_final(pool: Any) -> None:
    await pool.execute("UPDATE otp SET max_checks = 1000")
    cancel = pool.fetch(postgres(store_keys._CANCEL_OTP), 10.0, "otp_1", "key_1", 10.0)
    checks = [check(pool, f"wrong{n}") for n in range(60)]
    canceled, *_ = await asyncio.gather(cancel, *checks)
    assert canceled and canceled[0]["status"] == "canceled"
    assert not any(await asyncio.gather(*(check(pool, "right") for _ in range(20))))
    assert await pool.fetchval("SELECT status FROM otp WHERE id = 'otp_1'") == "canceled"
