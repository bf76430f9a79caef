"""`tandem inbound block|unblock|list` and `tandem sim mo`: inbound traffic from the command line.

`tandem inbound` works on the daemon's store directly (found as `gateway.state_paths` says and
named on stderr); a running daemon reads the block list again within two seconds. A blocked
number's MOs are still answered to the carrier and kept (state `blocked`), never forwarded.

`tandem sim mo` asks the running daemon (`POST /admin/sim/mo` with the admin token from its
file) to have its built-in simulator send an MO: the sandbox's way to try STOP and friends.

Never does: daemon logic. Operator mistakes end as one line on stderr, exit code 2.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from gateway.cli_store import daemon_store_path, with_daemon_store
from gateway.cli_support import EXIT_FAILURE, EXIT_OK, Subparsers, add_config_argument, fail
from gateway.config import ConfigError, load_config
from gateway.state_paths import StateNotFound

SIM_MO_PATH = "/admin/sim/mo"  # gateway.http.sim_admin.SIM_MO_PATH (not imported: no aiohttp)


def add_inbound_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="inbound_action", metavar="ACTION", required=True)
    block = actions.add_parser("block", help="keep MOs from a number, forward none of them")
    add_config_argument(block)
    block.add_argument("number")
    block.add_argument("--reason", default="")
    block.set_defaults(handler=_block)
    unblock = actions.add_parser("unblock", help="forward a number's MOs again")
    add_config_argument(unblock)
    unblock.add_argument("number")
    unblock.set_defaults(handler=_unblock)
    listing = actions.add_parser("list", help="the blocked numbers")
    add_config_argument(listing)
    listing.set_defaults(handler=_list)


def add_sim_mo(kinds: Subparsers) -> None:
    mo = kinds.add_parser(
        "mo", help="have the daemon's built-in simulator send an MO (e.g. STOP) as a phone would"
    )
    add_config_argument(mo)
    mo.add_argument("--from", dest="source", required=True, help="the phone's number")
    mo.add_argument("--to", dest="destination", required=True, help="our number or short code")
    mo.add_argument("--text", required=True)
    mo.set_defaults(handler=_sim_mo)


def _number(raw: str) -> str | None:
    digits = raw.strip().removeprefix("+")
    return digits if digits.isdigit() and 1 <= len(digits) <= 15 else None


def _with_store(args: argparse.Namespace, command: str, work: Any) -> int:
    try:
        config = load_config(args.config)
        path = daemon_store_path(config)
    except (ConfigError, StateNotFound) as exc:
        return fail(f"inbound {command}: {exc}")
    result: int = asyncio.run(with_daemon_store(config, path, work))
    return result


def _block(args: argparse.Namespace) -> int:
    number = _number(args.number)
    if number is None:
        return fail(f"inbound block: {args.number!r} is not a number (digits, at most 15)")

    async def work(store: Any) -> int:
        added = await store.block_inbound(number, at=time.time(), reason=args.reason)
        print(f"+{number} {'blocked' if added else 'was already blocked'}")
        return EXIT_OK

    return _with_store(args, "block", work)


def _unblock(args: argparse.Namespace) -> int:
    number = _number(args.number)
    if number is None:
        return fail(f"inbound unblock: {args.number!r} is not a number (digits, at most 15)")

    async def work(store: Any) -> int:
        removed = await store.unblock_inbound(number)
        print(f"+{number} {'unblocked' if removed else 'was not blocked'}")
        return EXIT_OK

    return _with_store(args, "unblock", work)


def _list(args: argparse.Namespace) -> int:
    async def work(store: Any) -> int:
        blocked = await store.inbound_blocked()
        for number, since, reason in blocked:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since))
            print(f"+{number}  {when}  {reason}".rstrip())
        if not blocked:
            print("no blocked numbers", file=sys.stderr)
        return EXIT_OK

    return _with_store(args, "list", work)


def _sim_mo(args: argparse.Namespace) -> int:
    from gateway.http.admin_token import AdminTokenUnreadable, admin_token_of
    from gateway.route_cli import DAEMON_TIMEOUT, daemon_url

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        return fail(f"sim mo: {exc}")
    if not config.simulator.enabled:
        return fail("sim mo: the simulator is off in this config ([simulator] enabled)")
    if not config.http.enabled or config.http.port == 0:
        return fail("sim mo: the config has no fixed HTTP port to reach the daemon on")
    url = daemon_url(config.http)
    try:
        token = admin_token_of(config)
    except AdminTokenUnreadable as exc:
        return fail(f"sim mo: {exc}", EXIT_FAILURE)
    body = json.dumps({"from": args.source, "to": args.destination, "text": args.text})
    request = urllib.request.Request(
        url + SIM_MO_PATH,
        data=body.encode(),
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=DAEMON_TIMEOUT) as answer:
            sent = json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        try:
            reason = json.loads(exc.read()).get("error", exc.reason)
        except ValueError:
            reason = exc.reason
        return fail(f"sim mo: {url} answered {exc.code}: {reason}", EXIT_FAILURE)
    except (OSError, ValueError) as exc:
        return fail(f"sim mo: no answer from {url}: {getattr(exc, 'reason', exc)}", EXIT_FAILURE)
    print(f"MO from +{sent['from']} to {sent['to']} sent by the simulator: {sent['text']}")
    return EXIT_OK
