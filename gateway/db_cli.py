"""`tandem db upgrade`: bring the configured store to the latest schema and say where it is.

The daemon migrates at start too; this lets an operator do it first, once, for a cluster of
nodes on one PostgreSQL database (or to check a SQLite file), and see the versions. Migrating
twice is harmless: each step runs once, under a lock, and records itself.
"""

from __future__ import annotations

import argparse

from gateway.cli_support import EXIT_FAILURE, EXIT_OK, add_config_argument, fail, run_async
from gateway.config import ConfigError, load_config


def add_db_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="db_action", metavar="ACTION", required=True)
    upgrade = actions.add_parser(
        "upgrade", help="apply the store's migrations now (the daemon also does at start)"
    )
    add_config_argument(upgrade)
    upgrade.set_defaults(handler=_upgrade)


def _upgrade(args: argparse.Namespace) -> int:
    from gateway.private_files import private_data_dir
    from gateway.store.base import StoreError
    from gateway.store.configured import store_from_config

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        return fail(str(exc))

    async def upgrade() -> dict[str, int]:
        store = store_from_config(config, writer="thread")
        await store.open()  # migrates
        try:
            return await store.schema_versions()
        finally:
            await store.close()

    try:
        private_data_dir(config.data_dir)  # the store key lives there
        versions = run_async(upgrade())
    except (StoreError, OSError) as exc:
        return fail(f"db upgrade: {exc}", EXIT_FAILURE)
    where = (
        f"postgresql schema {config.store.database_schema}"
        if config.store.backend == "postgresql"
        else str(config.store_path)
    )
    done = ", ".join(f"{part} at migration {number}" for part, number in versions.items())
    print(f"store {where}: {done}")
    return EXIT_OK
