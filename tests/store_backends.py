"""The store's backends for the store tests: SQLite on a file in the test's directory, and
PostgreSQL (a schema of its own per test and store name in the database `test` at
127.0.0.1:5432, trust auth; `TANDEM_TEST_POSTGRES` names another DSN). Where PostgreSQL does
not answer, its tests skip and say why (`make test` starts it where it is installed).

`make_store(name)` builds a store (not opened); the same name in one test is the same database,
so a test can close a store and open it again."""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.store.postgres import PostgresMessageStore
from gateway.store.sqlite import SqliteMessageStore
from gateway.store.sqlstore import SqlMessageStore

POSTGRES_DSN = os.environ.get("TANDEM_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
BACKENDS = ("sqlite", "postgresql")
_unavailable: list[str] = []  # why PostgreSQL cannot be used, once found out


async def postgres_unavailable() -> str | None:
    """None if PostgreSQL answers at `POSTGRES_DSN`, else why not."""
    if _unavailable:
        return _unavailable[0] or None
    import asyncpg

    try:
        conn = await asyncpg.connect(POSTGRES_DSN, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        _unavailable.append(
            f"PostgreSQL at {POSTGRES_DSN} is not available ({exc}); `make test` starts it "
            "where it is installed"
        )
    else:
        await conn.close()
        _unavailable.append("")
    return _unavailable[0] or None


async def drop_schemas(schemas: list[str]) -> None:
    import asyncpg

    if not schemas:
        return
    conn = await asyncpg.connect(POSTGRES_DSN, timeout=5)
    try:
        for schema in schemas:
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await conn.close()


class StoreFactory:
    """Builds stores of one backend for one test."""

    def __init__(self, backend: str, directory: Path) -> None:
        self.backend, self.directory = backend, directory
        self.token = secrets.token_hex(4)
        self.schemas: list[str] = []

    def schema(self, name: str) -> str:
        schema = f"t_{self.token}_{re.sub(r'[^a-z0-9]', '_', name.lower())}"[:63]
        if schema not in self.schemas:
            self.schemas.append(schema)
        return schema

    def __call__(self, name: str = "tandem.db", **options: Any) -> SqlMessageStore:
        """A store named `name`; SQLite's own options (synchronous, live_messages) are
        ignored by PostgreSQL, which has no file to sync and keeps no messages in memory."""
        if self.backend == "sqlite":
            return SqliteMessageStore(self.directory / name, **options)
        self.directory.mkdir(parents=True, exist_ok=True)
        options.pop("synchronous", None)
        options.pop("live_messages", None)
        return PostgresMessageStore(
            POSTGRES_DSN,
            schema=self.schema(name),
            key_file=self.directory / "store.key",
            **options,
        )


async def store_factory(backend: str, directory: Path) -> AsyncIterator[StoreFactory]:
    if backend == "postgresql":
        reason = await postgres_unavailable()
        if reason is not None:
            pytest.skip(reason)
    factory = StoreFactory(backend, directory)
    try:
        yield factory
    finally:
        if backend == "postgresql":
            await drop_schemas(factory.schemas)


@pytest.fixture(params=BACKENDS)
async def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreFactory]:
    async for factory in store_factory(request.param, tmp_path):
        yield factory
