"""`tandem store purge [--dry-run]`: run the retention purge (`[retention]`) once, now.

Works on the daemon's store, SQLite (found as `tandem keys` finds it, never a new one) or
PostgreSQL (`[store] backend`), beside a running daemon or without one: the purge goes in
transactions of `[retention] batch` rows, so a running daemon's writer keeps its turn.
`--dry-run` only counts what would go.
"""

from __future__ import annotations

import argparse
import sys
import time

from gateway.cli_support import EXIT_FAILURE, EXIT_OK, add_config_argument, fail, run_async
from gateway.config import ConfigError, TandemConfig, load_config
from gateway.state_paths import StateNotFound, daemon_state_path


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="store_action", metavar="ACTION", required=True)
    purge = actions.add_parser(
        "purge", help="remove what [retention] says is old enough (in small transactions)"
    )
    add_config_argument(purge)
    purge.add_argument("--dry-run", action="store_true", help="count, remove nothing")
    purge.set_defaults(handler=_purge)


def _purge(args: argparse.Namespace) -> int:
    from gateway.store.base import StoreError

    try:
        config = load_config(args.config)
        where = _where(config)
    except (ConfigError, StateNotFound) as exc:
        return fail(f"store purge: {exc}")
    print(f"store: {where}", file=sys.stderr)
    try:
        counts: dict[str, int] = run_async(_run(config, dry_run=args.dry_run))
    except (StoreError, OSError) as exc:
        return fail(f"store purge: {exc}", EXIT_FAILURE)
    verb = "would remove" if args.dry_run else "removed"
    for name, count in counts.items():
        print(f"{verb} {count:>10}  {name.replace('_', ' ')}")
    return EXIT_OK


def _where(config: TandemConfig) -> str:
    """What the purge works on; a SQLite file must exist already (never a new, empty one)."""
    if config.store.backend == "postgresql":
        return f"postgresql schema {config.store.database_schema}"
    return str(daemon_state_path(config.store_path, "store"))


async def _run(config: TandemConfig, *, dry_run: bool) -> dict[str, int]:
    from gateway.store.configured import store_from_config
    from gateway.store.retention import Cutoffs, StoreRetention

    store = store_from_config(config, writer="thread")
    await store.open()
    try:
        retention = StoreRetention(store)
        cutoffs = Cutoffs.from_config(config, time.time())
        if dry_run:
            return await retention.count(cutoffs)
        return await retention.purge(cutoffs, batch=config.retention.batch)
    finally:
        await store.close()
