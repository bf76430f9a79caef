"""`tandem run` and `tandem check-config`: the daemon, and the config check that starts nothing.

Owns the two commands' arguments and handlers. The daemon (`gateway.app`) is imported only
when `run` starts it, so `check-config` reads the config and nothing more.
"""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path

from gateway.cli_support import EXIT_FAILURE, EXIT_OK, PROG, add_config_argument, fail, run_async
from gateway.config import BUILTIN_SOURCE, ConfigError, TandemConfig, load_config


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        return fail(str(exc))
    if args.config is None:
        print(f"{PROG}: using the {BUILTIN_SOURCE} configuration", file=sys.stderr)
    # The daemon pulls in everything; only `run` needs it.
    from gateway.app import run as run_daemon  # type: ignore[import-not-found,unused-ignore]
    from gateway.startup import StartupError
    from gateway.store.base import StoreError

    try:
        outcome = run_daemon(config, args.config)  # the path: SIGHUP re-reads its routes
        if inspect.iscoroutine(outcome):
            outcome = run_async(outcome)
    except StoreError as exc:  # cannot open the store: say which file and why, no traceback
        return fail(str(exc))
    except StartupError as exc:  # a busy port, say: the section, address and reason
        return fail(str(exc), EXIT_FAILURE)
    return outcome if isinstance(outcome, int) else EXIT_OK


def add_check_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", type=Path, help="TOML config file")
    parser.set_defaults(handler=_check_config)


def _check_config(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.path)
    except ConfigError as exc:
        return fail(str(exc))
    print(f"{args.path}: OK ({_summary(config)})")
    return EXIT_OK


def _summary(config: TandemConfig) -> str:
    enabled_links = sum(1 for link in config.links if link.enabled)
    return (
        f"{len(config.links)} links ({enabled_links} enabled), {len(config.routes)} routes, "
        f"{len(config.accounts)} accounts"
    )
