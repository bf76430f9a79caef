"""`tandem db upgrade`: brings the configured store to the latest migrations and says where it
is, on a SQLite file and on PostgreSQL (skipped, saying why, where PostgreSQL is absent);
running it twice changes nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.store.postgres import _CLUSTER_MIGRATIONS
from gateway.store.schema import _MIGRATIONS
from tests.store_backends import BACKENDS, POSTGRES_DSN, store_factory


@pytest.mark.parametrize("backend", BACKENDS)
async def test_db_upgrade_applies_every_migration_once(
    backend: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async for make in store_factory(backend, tmp_path):
        store = ""
        if backend == "postgresql":
            schema = make.schema("cli")
            store = (
                f'[store]\nbackend = "postgresql"\ndsn = "{POSTGRES_DSN}"\n'
                f'database_schema = "{schema}"\n'
            )
        config = tmp_path / "tandem.toml"
        config.write_text(f'data_dir = "{tmp_path / "data"}"\n{store}', encoding="utf-8")
        for _ in range(2):
            assert await run_cli(["db", "upgrade", "-c", str(config)]) == 0
            out = capsys.readouterr().out
            assert f"store at migration {len(_MIGRATIONS)}" in out
            if backend == "postgresql":
                assert f"cluster at migration {len(_CLUSTER_MIGRATIONS)}" in out


async def run_cli(argv: list[str]) -> int:
    # The command runs its own event loop: off this test's loop, on a thread.
    return await asyncio.to_thread(main, argv)
