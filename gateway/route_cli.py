"""`tandem route explain NUMBER`: why a destination goes where it goes, from a shell.

Owns the `route` subcommand. It loads the config (routes, numbering, operator tables) the way
the daemon does, asks `routing.explain_route` for the explanation (the same matching code the
daemon runs, so the answer cannot disagree with it) and prints `routing.render_explanation`
or JSON. The targets' live state comes from the running daemon over its local HTTP endpoint
(`GET /admin/links` with the admin token from its file, see `gateway.http.admin` and
`gateway.http.admin_token`); without a daemon it says so and shows which
target would be next if every link were up.

Exit codes: 0 a route was chosen, 1 the number is refused or no route matches, 2 a config,
table or usage error. Never does: change routing state, or send anything.
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from gateway.cli_support import add_config_argument
from gateway.config import ConfigError, HttpConfig, TandemConfig, load_config
from gateway.http.admin_token import AdminTokenUnreadable, admin_token_of
from routing import (
    LinkStatus,
    MessageKind,
    NumberResolver,
    RouteExplanation,
    RouteTable,
    TableFormatError,
    explain_route,
    render_explanation,
)

LINKS_PATH = "/admin/links"  # gateway.http.admin.LINKS_PATH (not imported: keeps aiohttp out)
DAEMON_TIMEOUT = 2.0
NOT_RUNNING = "daemon not running: live state unknown"


@dataclass(slots=True)
class LiveState:
    """What the running daemon said about its links; `links` is None when it could not be asked."""

    url: str
    links: dict[str, LinkStatus] | None
    problem: str | None = None


def add_route_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="route_action", metavar="ACTION", required=True)
    explain = actions.add_parser(
        "explain", help="show how a destination is normalised, resolved and routed"
    )
    explain.add_argument("number", help="destination, e.g. +447911123456")
    explain.add_argument("--from", dest="sender", default=None, help="sender id of the message")
    explain.add_argument("--account", default=None, help="account (API key name or system_id)")
    explain.add_argument(
        "--kind", choices=[kind.value for kind in MessageKind], default=None, help="traffic kind"
    )
    explain.add_argument("--region", default=None, help="region for a national number (GB)")
    explain.add_argument(
        "--tag", action="append", default=[], help="route tag the message carries (repeatable)"
    )
    add_config_argument(explain)
    explain.add_argument("--json", action="store_true", help="print JSON instead of text")
    explain.set_defaults(handler=_explain)


def daemon_url(http: HttpConfig) -> str:
    """Where the daemon of this config listens (a wildcard host is reached on loopback)."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(http.host, http.host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{http.port}"


def ask_daemon(config: TandemConfig, timeout: float = DAEMON_TIMEOUT) -> LiveState:
    """The live link states of the daemon running with `config`, if one answers."""
    url = daemon_url(config.http)
    if not config.http.enabled or config.http.port == 0:
        return LiveState(url, None, "the config has no fixed HTTP port to ask")
    try:
        token = admin_token_of(config)
    except AdminTokenUnreadable as exc:  # no daemon has run with this config, or not ours
        return LiveState(url, None, str(exc))
    request = urllib.request.Request(url + LINKS_PATH, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            document = json.loads(response.read())
    except (OSError, ValueError) as exc:  # refused, timed out, HTTP error, not JSON
        return LiveState(url, None, str(getattr(exc, "reason", exc)))
    links = {
        entry["name"]: LinkStatus(entry["state"] == "up", float(entry["throttle_level"]))
        for entry in document.get("links", [])
    }
    return LiveState(url, links)


def _explain(args: argparse.Namespace) -> int:
    from gateway.cli_support import EXIT_FAILURE, EXIT_OK, fail

    try:
        config = load_config(args.config)
        resolver = NumberResolver.from_config(config.numbering)
        table = RouteTable.from_config(config.routes)
    except ConfigError as exc:
        return fail(str(exc))
    except TableFormatError as exc:
        return fail(f"operator table: {exc}")
    except OSError as exc:
        return fail(f"operator table: cannot read {exc.filename}: {exc.strerror or exc}")
    live = ask_daemon(config)
    kind = MessageKind(args.kind) if args.kind is not None else None

    def explain(states: dict[str, LinkStatus]) -> RouteExplanation:
        return explain_route(
            args.number,
            resolver,
            table,
            now=time.time(),
            link_states=states,
            sender=args.sender,
            account=args.account,
            kind=kind,
            region=args.region,
            tags=frozenset(args.tag),
        )

    explanation = explain(live.links if live.links is not None else {})
    if_all_up: str | None = None
    if live.links is None and explanation.chosen_route is not None:
        every_link = {link.name: LinkStatus(True) for link in config.links if link.enabled}
        if_all_up = explain(every_link).next_target
    if args.json:
        document = explanation.to_dict()
        document["live_state"] = {
            "daemon": live.url,
            "known": live.links is not None,
            "problem": live.problem,
            "next_target_if_all_links_up": if_all_up,
        }
        print(json.dumps(document, indent=2, default=str))
    else:
        print(render_explanation(explanation), end="")
        if live.links is not None:
            print(f"live state:   from the daemon at {live.url}")
        else:
            print(f"live state:   {NOT_RUNNING} ({live.url}: {live.problem})")
            if explanation.chosen_route is not None:
                print(f"if all up:    next target would be {if_all_up or '-'}")
    return EXIT_OK if explanation.chosen_route is not None else EXIT_FAILURE
