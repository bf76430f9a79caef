"""What every `tandem` subcommand module shares: exit codes, the one-line failure and the loop.

Lives apart from `gateway.cli` so that subcommand modules (`gateway.http.cli`,
`gateway.route_cli`, ...) import it and `gateway.cli` imports them, with no circle between them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

PROG = "tandem"
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2  # bad arguments or a bad config file: the operator has something to fix

Subparsers = Any  # argparse's _SubParsersAction, which is not public API


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    """`--config/-c PATH`, the same on every subcommand that reads the config file."""
    parser.add_argument(
        "--config", "-c", type=Path, default=None, help="TOML config file (default: built-in)"
    )


def fail(message: str, code: int = EXIT_USAGE) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return code


def run_async(main: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine to completion on uvloop when it is installed, else on asyncio's loop."""
    import asyncio  # here: commands that run no loop (check-config, --help) do not load it

    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)
