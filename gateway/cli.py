"""The `tandem` command line: argument parsing and dispatch to the daemon's entry points.

Owns the subcommands (`run`, `check-config`, `sim smsc`, ...) and the promise that operator
mistakes end as one line on stderr with exit code 2, never a traceback. Each subcommand is one
setup function in `SUBCOMMANDS` that adds its parser and sets `handler`; adding a command (route
explain, accounts, send, ...) is adding a function to that tuple.

Must never hold daemon logic: handlers load the config and call into `gateway.app`,
`gateway.simulator` and friends, importing them lazily so `check-config` stays light.
"""

from __future__ import annotations

import argparse
import inspect
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from gateway.accounts import add_accounts_command
from gateway.cli_support import (
    EXIT_FAILURE,
    EXIT_OK,
    PROG,
    SubcommandSetup,
    Subparsers,
    fail,
    run_async,
)
from gateway.config import (
    BUILTIN_SOURCE,
    ConfigError,
    SimulatorConfig,
    TandemConfig,
    load_config,
    validation_reason,
)
from gateway.db_cli import add_db_command
from gateway.inbound_cli import add_inbound_command, add_sim_mo
from gateway.modem_sim_cli import add_sim_modem
from gateway.optout_cli import add_optouts_command
from gateway.reload_cli import add_reload_command
from gateway.retention_cli import add_store_command
from gateway.route_cli import add_route_command
from gateway.status_cli import add_status_command

Handler = Callable[[argparse.Namespace], int]


# --- tandem run ---------------------------------------------------------------------------------


def _add_run(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser("run", help="run the gateway daemon")
    parser.add_argument(
        "--config", "-c", type=Path, default=None, help="TOML config file (default: built-in)"
    )
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


# --- tandem check-config ------------------------------------------------------------------------


def _add_check_config(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "check-config", help="validate a config file without starting anything"
    )
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


# --- tandem sim smsc ----------------------------------------------------------------------------


def _add_sim(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser("sim", help="simulators for testing and benchmarks")
    kinds = parser.add_subparsers(dest="sim_kind", metavar="KIND", required=True)
    smsc = kinds.add_parser("smsc", help="run the SMSC simulator (an SMPP server) standalone")
    defaults = SimulatorConfig()
    smsc.add_argument("--host", default=defaults.host)
    smsc.add_argument("--port", type=int, default=defaults.port)
    smsc.add_argument("--system-id", default=None, help="accept only this system_id")
    smsc.add_argument("--password", default=None, help="accept only this password")
    smsc.add_argument("--id-format", choices=("hex", "dec"), default=defaults.message_id_format)
    smsc.add_argument("--dlr-id-format", choices=("hex", "dec"), default=defaults.dlr_id_format)
    smsc.add_argument(
        "--dlr-delay", type=float, default=defaults.dlr_delay, help="seconds to the receipt"
    )
    smsc.add_argument(
        "--receipt-mode",
        choices=("timer", "same-write", "delayed", "before-resp"),
        default=defaults.receipt_mode,
        help="when receipts go out (see [simulator] receipt_mode)",
    )
    smsc.add_argument(
        "--dlr-jitter",
        type=float,
        default=defaults.dlr_jitter,
        help="receipt-mode delayed: up to this many seconds more per receipt",
    )
    smsc.add_argument(
        "--dlr-before-resp",
        dest="receipt_mode",
        action="store_const",
        const="before-resp",
        help="the same as --receipt-mode before-resp",
    )
    smsc.add_argument(
        "--throttle-fraction",
        type=float,
        default=defaults.throttle_fraction,
        help="share of submits answered ESME_RTHROTTLED (0-1)",
    )
    smsc.add_argument(
        "--undeliverable-fraction",
        type=float,
        default=defaults.undeliverable_fraction,
        help="share of receipts with stat:UNDELIV (0-1)",
    )
    smsc.add_argument(
        "--mo-interval", type=float, default=None, help="send an MO message every N seconds"
    )
    smsc.add_argument(
        "--record", type=Path, default=None, help="append one line per received submit to FILE"
    )
    smsc.set_defaults(handler=_sim_smsc)
    inbox = kinds.add_parser(
        "inbox", help="list what the daemon's built-in simulator received (OTP codes too)"
    )
    inbox.add_argument(
        "--config", "-c", type=Path, default=None, help="TOML config file (default: built-in)"
    )
    inbox.add_argument("--to", default=None, help="only messages to this number")
    inbox.add_argument("--limit", type=int, default=20, help="the last N messages (default 20)")
    inbox.set_defaults(handler=_sim_inbox)
    add_sim_modem(kinds)
    add_sim_mo(kinds)


def _sim_smsc(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    try:
        settings = SimulatorConfig(
            enabled=True,
            host=args.host,
            port=args.port,
            system_id=args.system_id,
            password=args.password,
            message_id_format=args.id_format,
            dlr_id_format=args.dlr_id_format,
            dlr_delay=args.dlr_delay,
            receipt_mode=args.receipt_mode,
            dlr_jitter=args.dlr_jitter,
            throttle_fraction=args.throttle_fraction,
            undeliverable_fraction=args.undeliverable_fraction,
            mo_interval=args.mo_interval,
            record_file=args.record,
        )
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        option = "--" + str(first["loc"][0]).replace("_", "-") if first["loc"] else "options"
        return fail(f"sim smsc: {option}: {validation_reason(first)}")
    from gateway.simulator import run_simulator

    try:
        run_async(run_simulator(settings))
    except OSError as exc:
        return fail(f"sim smsc: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}")
    return EXIT_OK


def _sim_inbox(args: argparse.Namespace) -> int:
    import time

    from gateway.sim_journal import JOURNAL_NAME, read_inbox
    from gateway.state_paths import StateNotFound, daemon_state_path

    try:
        config = load_config(args.config)
        if not config.simulator.enabled:
            return fail("sim inbox: the simulator is off in this config ([simulator] enabled)")
        path = daemon_state_path(config.data_dir, "data directory") / JOURNAL_NAME
    except (ConfigError, StateNotFound) as exc:
        return fail(f"sim inbox: {exc}")
    print(f"inbox: {path}", file=sys.stderr)
    wanted = None if args.to is None else args.to.lstrip("+")
    entries = [e for e in read_inbox(path) if wanted is None or e.destination == wanted]
    for entry in entries[-args.limit :] if args.limit > 0 else entries:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry.at))
        route = f"{entry.source or '-'} -> {entry.destination}"
        print(f"{when}  {route}  {entry.message_id}  {entry.text}")
    if not entries:
        print("no messages", file=sys.stderr)
    return EXIT_OK


# --- dispatch -----------------------------------------------------------------------------------


def _add_http_commands(subparsers: Subparsers) -> None:
    """`keys`, `send` and `otp` (gateway.http.cli, which imports this module: hence lazy)."""
    from gateway.http.cli import add_keys, add_otp, add_send

    for setup in (add_keys, add_send, add_otp):
        setup(subparsers)


SUBCOMMANDS: tuple[SubcommandSetup, ...] = (
    _add_run,
    _add_check_config,
    _add_sim,
    add_accounts_command,
    _add_http_commands,
    add_route_command,
    add_status_command,
    add_store_command,
    add_reload_command,
    add_optouts_command,
    add_inbound_command,
    add_db_command,
)


def build_parser(subcommands: Sequence[SubcommandSetup] = SUBCOMMANDS) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Tandem SMS gateway")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for setup in subcommands:
        setup(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The `tandem` console script: parse `argv`, run the subcommand, return its exit code."""
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
