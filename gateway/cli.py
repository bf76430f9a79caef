"""The `tandem` command line: argument parsing and dispatch to the subcommands.

Owns the list of subcommands (`SUBCOMMANDS`: name, one-line help, and where the command's
arguments and handler live) and the promise that operator mistakes end as one line on stderr
with exit code 2, never a traceback. Adding a command is adding an entry here and an
`add_<name>_arguments(parser)` function in its module that adds the arguments and sets `handler`.

Only the module of the command being run is imported: `tandem --help` imports none of them and
`tandem check-config` only the config, so each call starts in a fraction of the time that
importing every command (and the config with pydantic behind it) would take. This module
imports nothing of the gateway but `gateway.cli_support`.

Must never hold daemon logic.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gateway.cli_support import PROG

Handler = Callable[[argparse.Namespace], int]


@dataclass(frozen=True, slots=True)
class Subcommand:
    """A subcommand as `tandem --help` lists it, and where the rest of it lives:
    `"module:function"`, a function that takes the command's own parser."""

    help: str
    arguments: str

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        module, function = self.arguments.split(":")
        getattr(importlib.import_module(module), function)(parser)


# In the order `tandem --help` lists them.
SUBCOMMANDS: dict[str, Subcommand] = {
    "run": Subcommand("run the gateway daemon", "gateway.run_cli:add_run_arguments"),
    "check-config": Subcommand(
        "validate a config file without starting anything",
        "gateway.run_cli:add_check_config_arguments",
    ),
    "sim": Subcommand("simulators for testing and benchmarks", "gateway.sim_cli:add_sim_arguments"),
    "accounts": Subcommand(
        "manage SMPP customer accounts", "gateway.accounts:add_accounts_arguments"
    ),
    "keys": Subcommand(
        "create, list and revoke HTTP API keys", "gateway.http.cli:add_keys_arguments"
    ),
    "send": Subcommand(
        "send an SMS through the local daemon", "gateway.http.cli:add_send_arguments"
    ),
    "otp": Subcommand("send or check a one-time code", "gateway.http.cli:add_otp_arguments"),
    "route": Subcommand("inspect routing decisions", "gateway.route_cli:add_route_arguments"),
    "status": Subcommand(
        "links, binds, queues, rates and recent errors of the running daemon",
        "gateway.status_cli:add_status_arguments",
    ),
    "store": Subcommand(
        "maintenance of the daemon's store", "gateway.retention_cli:add_store_arguments"
    ),
    "reload": Subcommand(
        "reload the running daemon's config (routes, links, accounts, ...) without a restart",
        "gateway.reload_cli:add_reload_arguments",
    ),
    "optouts": Subcommand(
        "list, add, remove, import, export opt-outs", "gateway.optout_cli:add_optouts_arguments"
    ),
    "inbound": Subcommand(
        "the inbound (MO) block list", "gateway.inbound_cli:add_inbound_arguments"
    ),
    "db": Subcommand("the store's schema (upgrade)", "gateway.db_cli:add_db_arguments"),
}


def build_parser(chosen: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The `tandem` parser with every subcommand listed; the arguments of those named in
    `chosen` (default: all) are added, which imports their modules."""
    parser = argparse.ArgumentParser(prog=PROG, description="Tandem SMS gateway")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, subcommand in SUBCOMMANDS.items():
        command_parser = subparsers.add_parser(name, help=subcommand.help)
        if chosen is None or name in chosen:
            subcommand.add_arguments(command_parser)
    return parser


def _command_named_in(argv: Sequence[str]) -> list[str]:
    """The subcommand `argv` runs: the first word that is not an option (`tandem` itself has
    no option that takes a value), as a list of none or one."""
    return next(([word] for word in argv if not word.startswith("-")), [])


def main(argv: Sequence[str] | None = None) -> int:
    """The `tandem` console script: parse `argv`, run the subcommand, return its exit code."""
    words = sys.argv[1:] if argv is None else argv
    args = build_parser(_command_named_in(words)).parse_args(words)
    handler: Handler = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
