"""How a `tandem` subcommand reaches the daemon's store: which one it is (named on stderr) and
opening it for one piece of work. SQLite: the file the daemon uses, found as
`gateway.state_paths` says; PostgreSQL: the database and schema the config names.

Must never: create a store where the daemon does not look (`StateNotFound` instead), or keep the
store open past the work it was opened for.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from gateway.config import TandemConfig
from gateway.state_paths import daemon_state_path

T = TypeVar("T")


def daemon_store_path(config: TandemConfig) -> Path:
    """The daemon's store, absolute; says on stderr which one the command works on. Raises
    `StateNotFound` rather than create a store where the daemon does not look. (PostgreSQL:
    the database the config names; the path is not used.)"""
    if config.store.backend == "postgresql":
        print(f"store: postgresql schema {config.store.database_schema}", file=sys.stderr)
        return Path()
    path = daemon_state_path(config.store_path, "store")
    print(f"store: {path}", file=sys.stderr)
    return path


async def with_daemon_store(
    config: TandemConfig, path: Path, work: Callable[[Any], Awaitable[T]]
) -> T:
    """Open the store at `path` (from `daemon_store_path`), run `work(store)`, close it."""
    from gateway.store.configured import store_from_config
    from gateway.store.sqlite import SqliteMessageStore

    store = (
        SqliteMessageStore(
            path, synchronous=config.store.synchronous, key_file=config.store_key_path
        )
        if config.store.backend == "sqlite"
        else store_from_config(config, writer="thread")
    )
    await store.open()
    try:
        return await work(store)
    finally:
        await store.close()
