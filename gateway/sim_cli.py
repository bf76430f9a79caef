"""`tandem sim`: the simulators for testing and benchmarks, run from the command line.

Owns the `sim` kinds: `smsc` (the SMSC simulator, an SMPP server, standalone) and `inbox` (what
the daemon's built-in simulator received) here; `modem` (`gateway.modem_sim_cli`) and `mo`
(`gateway.inbound_cli`) add themselves. The simulators themselves live in `gateway.simulator`
and `modems.emulator`, imported only when a kind runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gateway.cli_support import EXIT_OK, add_config_argument, fail, run_async
from gateway.config import ConfigError, SimulatorConfig, load_config, validation_reason
from gateway.inbound_cli import add_sim_mo
from gateway.modem_sim_cli import add_sim_modem


def add_sim_arguments(parser: argparse.ArgumentParser) -> None:
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
    add_config_argument(inbox)
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
