"""`tandem status`: the running daemon's status page in the terminal.

Asks the daemon that runs with the given config (`GET /admin/status` with the admin token from
its file, as `tandem route explain` asks for `/admin/links`) and prints links, customer binds,
rates over the last minutes, the delivery ratio and recent warnings (`gateway.status` renders
them). Without an answering daemon it says why, one line, exit 1.
"""

from __future__ import annotations

import argparse
import json
import urllib.request

from gateway.cli_support import EXIT_FAILURE, EXIT_OK, add_config_argument, fail
from gateway.config import ConfigError, load_config
from gateway.http.admin_token import AdminTokenUnreadable, admin_token_of
from gateway.route_cli import DAEMON_TIMEOUT, daemon_url

STATUS_PATH = "/admin/status"  # gateway.http.admin.STATUS_PATH (not imported: keeps aiohttp out)


def add_status_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--json", action="store_true", help="print the JSON document")
    parser.add_argument("--timeout", type=float, default=DAEMON_TIMEOUT, help="seconds to wait")
    parser.set_defaults(handler=_status)


def _status(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        return fail(str(exc))
    url = daemon_url(config.http)
    if not config.http.enabled or config.http.port == 0:
        return fail("status: the config has no fixed HTTP port to ask the daemon on")
    try:
        token = admin_token_of(config)
    except AdminTokenUnreadable as exc:
        return fail(f"status: {exc}", EXIT_FAILURE)
    headers = {"Authorization": f"Bearer {token}"}
    request = urllib.request.Request(url + STATUS_PATH, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=args.timeout) as response:
            document = json.loads(response.read())
    except (OSError, ValueError) as exc:  # refused, timed out, HTTP error, not JSON
        return fail(f"status: no answer from {url}: {getattr(exc, 'reason', exc)}", EXIT_FAILURE)
    if args.json:
        print(json.dumps(document, indent=2))
        return EXIT_OK
    from gateway.status import render_terminal

    print(render_terminal(document))
    return EXIT_OK
