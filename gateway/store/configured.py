"""The store a configuration names (`[store] backend`): the one place that turns `[store]` and
`[node]` into a `SqliteMessageStore` or a `PostgresMessageStore`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.store.sqlstore import SqlMessageStore
from gateway.store.writer import WriterPlacement

if TYPE_CHECKING:
    from gateway.config import TandemConfig


def store_from_config(
    config: TandemConfig, *, writer: WriterPlacement | None = None
) -> SqlMessageStore:
    """The configured store, not opened. `writer`: where its writer runs, if not where
    `[store] writer` says (tools run it on a thread)."""
    settings = config.store
    placement = writer if writer is not None else settings.writer
    if settings.backend == "postgresql":
        from gateway.store.postgres import PostgresMessageStore

        assert settings.dsn is not None  # the config model requires it
        return PostgresMessageStore(
            settings.dsn,
            key_file=config.store_key_path,
            schema=settings.database_schema,
            node=config.node.name,
            lease_seconds=settings.lease_seconds,
            # Inline would drive the writer's connection from inside the running loop: the
            # PostgreSQL writer needs a thread (or a process) of its own.
            writer="thread" if placement == "inline" else placement,
            pool_size=settings.pool_size,
        )
    from gateway.store.sqlite import SqliteMessageStore

    return SqliteMessageStore(
        config.store_path,
        synchronous=settings.synchronous,
        writer=placement,
        key_file=config.store_key_path,
    )
