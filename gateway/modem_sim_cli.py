"""`tandem sim modem`: run the GSM modem emulator (`modems.emulator`) on a pty, standalone.

Owns the subcommand's options and printing the device path a modem link can open. The
emulator itself (AT commands, PDU mode, faults) lives in `modems.emulator`; this module only
wires options to it. Never does: send anything anywhere but the pty it creates.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

Subparsers = Any  # argparse's _SubParsersAction


def add_sim_modem(kinds: Subparsers) -> None:
    """Add `modem` to the `tandem sim` kinds."""
    modem = kinds.add_parser(
        "modem", help="run a GSM modem emulator on a pty (AT commands, PDU mode)"
    )
    modem.add_argument("--pin", default=None, help="the SIM asks for this PIN (default: none)")
    modem.add_argument(
        "--link",
        type=Path,
        default=None,
        help="also make this path a symlink to the pty (a stable name, like /dev/serial/by-id)",
    )
    modem.add_argument("--operator", default="Tandem Sim", help="the operator name +COPS shows")
    modem.add_argument("--signal", type=int, default=20, help="+CSQ rssi, 0-31")
    modem.add_argument(
        "--report-delay", type=float, default=1.0, help="seconds from +CMGS to the status report"
    )
    modem.add_argument(
        "--report-status", type=int, default=0, help="TP-Status of status reports (0 delivered)"
    )
    modem.add_argument(
        "--mo-interval", type=float, default=None, help="receive an MO message every N seconds"
    )
    modem.add_argument(
        "--ack-timeout",
        type=float,
        default=10.0,
        help="with AT+CSMS=1, seconds a +CMT/+CDS waits for its +CNMA before the network is "
        "told RP-ERROR and routing is turned off",
    )
    modem.set_defaults(handler=_sim_modem)


def _sim_modem(args: argparse.Namespace) -> int:
    from gateway.cli_support import EXIT_OK, fail, run_async
    from modems.emulator import ModemSettings
    from modems.emulator_io import run_pty_modem

    if not 0 <= args.signal <= 31:
        return fail("sim modem: --signal: must be 0-31")
    if not 0 <= args.report_status <= 255:
        return fail("sim modem: --report-status: must be 0-255")
    if args.report_delay < 0 or (args.mo_interval is not None and args.mo_interval <= 0):
        return fail("sim modem: --report-delay and --mo-interval must be positive")
    if args.ack_timeout <= 0:
        return fail("sim modem: --ack-timeout: must be positive")
    if args.pin is not None and not (args.pin.isdigit() and 4 <= len(args.pin) <= 8):
        return fail("sim modem: --pin: must be 4-8 digits")
    settings = ModemSettings(
        pin=args.pin,
        operator=args.operator,
        signal=args.signal,
        report_delay=args.report_delay,
        report_status=args.report_status,
        ack_timeout=args.ack_timeout,
    )

    def announce(message: str) -> None:
        print(message, flush=True)

    try:
        run_async(run_pty_modem(settings, args.link, args.mo_interval, announce))
    except OSError as exc:
        print(f"tandem: sim modem: {exc}", file=sys.stderr)
        return 1
    return EXIT_OK
