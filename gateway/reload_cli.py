"""`tandem reload`: have the running daemon read its config file again, and say what changed.

Asks the daemon that runs with the given config (`POST /admin/reload` with the admin token from
its file, as `tandem status` asks for `/admin/status`): the daemon reloads the file it was
started with, as on SIGHUP, and answers what it changed or why it refused the file. Prints the
changes (exit 0), or the refusal, one line naming the file, the key and the reason (exit 1). A
daemon without an HTTP listener is reloaded with `kill -HUP <pid>` (the log says the outcome).
"""

from __future__ import annotations

import argparse
import json
import urllib.error
import urllib.request

from gateway.cli_support import EXIT_FAILURE, EXIT_OK, add_config_argument, fail
from gateway.config import ConfigError, load_config
from gateway.http.admin_token import AdminTokenUnreadable, admin_token_of
from gateway.route_cli import DAEMON_TIMEOUT, daemon_url

RELOAD_PATH = "/admin/reload"  # gateway.http.reload.RELOAD_PATH (not imported: keeps aiohttp out)


def add_reload_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait")
    parser.set_defaults(handler=_reload)


def _reload(args: argparse.Namespace) -> int:
    try:
        # The daemon reads its own file; this copy only says where to reach it. A file that
        # does not load here would not load there either: said now, nothing is sent.
        config = load_config(args.config)
    except ConfigError as exc:
        return fail(f"reload: refused, nothing changed: {exc}")
    if not config.http.enabled or config.http.port == 0:
        return fail("reload: the config has no fixed HTTP port; send the daemon SIGHUP instead")
    url = daemon_url(config.http)
    try:
        token = admin_token_of(config)
    except AdminTokenUnreadable as exc:
        return fail(f"reload: {exc}", EXIT_FAILURE)
    request = urllib.request.Request(
        url + RELOAD_PATH, method="POST", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=max(args.timeout, DAEMON_TIMEOUT)) as answer:
            report = json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        if exc.code != 422:
            return fail(f"reload: {url} answered {exc.code} {exc.reason}", EXIT_FAILURE)
        report = json.loads(exc.read())
    except (OSError, ValueError) as exc:  # refused, timed out, not JSON
        return fail(f"reload: no answer from {url}: {getattr(exc, 'reason', exc)}", EXIT_FAILURE)
    if not report["ok"]:
        return fail(f"reload: refused, nothing changed: {report['error']}", EXIT_FAILURE)
    print(f"reloaded {report['source']}")
    for change in report["changes"]:
        print(f"  {change}")
    if report["needs_restart"]:
        print(f"  at the next restart: {', '.join(report['needs_restart'])}")
    return EXIT_OK
