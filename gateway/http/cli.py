"""`tandem keys`, `tandem send` and `tandem otp`: the HTTP API's command line.

Owns the setup functions that `gateway.cli.SUBCOMMANDS` lists for these commands.
`keys create|list|revoke` work on the store directly (the daemon may be running: SQLite WAL lets
both in, and a running daemon sees a revocation within `[http] key_cache_seconds`): the daemon's
store, found as `gateway.state_paths` says, and named on stderr.
`send` and `otp send|check` talk to the local daemon's HTTP API like any client would, so a
sysadmin can test a route from a shell; the key comes from `--key` or `TANDEM_API_KEY`.

Never does: daemon logic. Operator mistakes end as one line on stderr, exit code 2.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from datetime import UTC, datetime
from typing import Any

from gateway.cli_store import daemon_store_path, with_daemon_store
from gateway.cli_support import EXIT_FAILURE, EXIT_OK, add_config_argument, fail
from gateway.config import ConfigError, TandemConfig, load_config
from gateway.state_paths import StateNotFound

KEY_ENVIRONMENT = "TANDEM_API_KEY"


def _load(args: argparse.Namespace) -> TandemConfig:
    return load_config(args.config)


# --- tandem keys --------------------------------------------------------------------------------


def add_keys_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="keys_action", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="create a key (shown once)")
    add_config_argument(create)
    create.add_argument("--name", required=True, help="unique name; also the account")
    create.add_argument(
        "--scopes", default="messages,otp", help="comma-separated: messages,otp,optouts,inbound"
    )
    create.add_argument("--senders", default=None, help="regex every 'from' must fully match")
    create.add_argument(
        "--countries", default=None, help="allowed destination regions, e.g. GB,DE (default all)"
    )
    create.add_argument("--rps", type=float, default=None, help="requests per second")
    create.add_argument("--mps", type=float, default=None, help="messages per second")
    create.add_argument("--callback-url", default=None, help="receipt callbacks for this key")
    create.set_defaults(handler=_keys_create)
    listing = actions.add_parser("list", help="list keys (never the keys themselves)")
    add_config_argument(listing)
    listing.set_defaults(handler=_keys_list)
    revoke = actions.add_parser("revoke", help="revoke a key by name or id")
    add_config_argument(revoke)
    revoke.add_argument("name_or_id")
    revoke.set_defaults(handler=_keys_revoke)


def _keys_create(args: argparse.Namespace) -> int:
    from gateway.keys import InvalidKeySettings, create_key
    from gateway.store.base import DuplicateKeyName

    try:
        config = _load(args)
        path = daemon_store_path(config)
    except (ConfigError, StateNotFound) as exc:
        return fail(str(exc))
    if args.callback_url is not None:
        from gateway.egress import EgressPolicy

        refusal = EgressPolicy.from_config(config.egress).url_refusal(args.callback_url)
        if refusal is not None:
            return fail(f"keys create: callback-url cannot be used: {refusal} ([egress] allow)")
    settings: dict[str, Any] = {
        "scopes": args.scopes.split(","),
        "senders": args.senders,
        "countries": None if args.countries is None else args.countries.split(","),
        "requests_per_second": args.rps,
        "messages_per_second": args.mps,
        "callback_url": args.callback_url,
    }
    try:
        minted = asyncio.run(
            with_daemon_store(config, path, lambda store: create_key(store, args.name, **settings))
        )
    except InvalidKeySettings as exc:
        return fail(f"keys create: {exc}")
    except DuplicateKeyName as exc:
        return fail(f"keys create: {exc}")
    record = minted.record
    print(f"key:             {minted.secret}")
    print(f"id:              {record.id}")
    print(f"name:            {record.name}")
    print(f"scopes:          {','.join(record.scopes)}")
    print(f"callback secret: {record.callback_secret}")
    print("The key is shown only now; store it safely.", file=sys.stderr)
    return EXIT_OK


def _when(unix_time: float | None) -> str:
    if unix_time is None:
        return "-"
    return datetime.fromtimestamp(unix_time, UTC).strftime("%Y-%m-%d %H:%M")


def _keys_list(args: argparse.Namespace) -> int:
    from gateway.keys import list_keys

    try:
        config = _load(args)
        path = daemon_store_path(config)
    except (ConfigError, StateNotFound) as exc:
        return fail(str(exc))
    records = asyncio.run(with_daemon_store(config, path, list_keys))
    print(f"{'ID':<17} {'NAME':<20} {'PREFIX':<11} {'SCOPES':<20} {'CREATED':<17} REVOKED")
    for r in records:
        print(
            f"{r.id:<17} {r.name:<20} {r.prefix:<11} {','.join(r.scopes):<20} "
            f"{_when(r.created_at):<17} {_when(r.revoked_at)}"
        )
    return EXIT_OK


def _keys_revoke(args: argparse.Namespace) -> int:
    from gateway.keys import revoke_key

    try:
        config = _load(args)
        path = daemon_store_path(config)
    except (ConfigError, StateNotFound) as exc:
        return fail(str(exc))
    revoked = asyncio.run(
        with_daemon_store(config, path, lambda store: revoke_key(store, args.name_or_id))
    )
    if not revoked:
        return fail(f"keys revoke: no active key named or with id {args.name_or_id!r}", 1)
    print(f"revoked {args.name_or_id}")
    return EXIT_OK


# --- tandem send / tandem otp (through the local daemon's API) ---------------------------------


def _client_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--key", default=None, help=f"API key (default: ${KEY_ENVIRONMENT})")
    parser.add_argument("--url", default=None, help="API base URL (default: from [http])")


def add_send_arguments(parser: argparse.ArgumentParser) -> None:
    _client_arguments(parser)
    parser.add_argument("--to", required=True, action="append", help="recipient (repeatable)")
    parser.add_argument("--text", required=True)
    parser.add_argument(
        "--from", dest="sender", default=None, help="sender (default: [http] default_sender)"
    )
    parser.set_defaults(handler=_send)


def add_otp_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="otp_action", metavar="ACTION", required=True)
    send = actions.add_parser("send", help="send a code")
    _client_arguments(send)
    send.add_argument("--to", required=True)
    send.add_argument("--from", dest="sender", default=None)
    send.add_argument("--code", default=None, help="send this code instead of a generated one")
    send.add_argument("--locale", default=None)
    send.set_defaults(handler=_otp_send)
    check = actions.add_parser("check", help="check a code")
    _client_arguments(check)
    check.add_argument("id")
    check.add_argument("code")
    check.set_defaults(handler=_otp_check)


def _base_url(args: argparse.Namespace, config: TandemConfig) -> str:
    if args.url:
        return str(args.url).rstrip("/")
    host = config.http.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"http://{host}:{config.http.port}"


def _call(args: argparse.Namespace, method: str, path: str, body: dict[str, Any]) -> int:
    import aiohttp

    try:
        config = _load(args)
    except ConfigError as exc:
        return fail(str(exc))
    key = args.key or os.environ.get(KEY_ENVIRONMENT)
    if not key:
        return fail(f"give --key or set {KEY_ENVIRONMENT}")
    url = _base_url(args, config) + path

    async def request() -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {key}"}
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, url, json=body, headers=headers) as response,
        ):
            return response.status, await response.json(content_type=None)

    try:
        status, document = asyncio.run(request())
    except (aiohttp.ClientError, OSError) as exc:
        return fail(f"cannot reach the daemon at {url}: {exc}", EXIT_FAILURE)
    except ValueError:
        return fail(f"{url} did not answer JSON", EXIT_FAILURE)
    if status >= 400:
        where = f" ({document.get('field')})" if document.get("field") else ""
        return fail(f"{status} {document.get('code')}{where}: {document.get('detail')}", 1)
    print(json.dumps(document, indent=2, ensure_ascii=False))
    return EXIT_OK


def _send(args: argparse.Namespace) -> int:
    to: str | list[str] = args.to[0] if len(args.to) == 1 else args.to
    body: dict[str, Any] = {"to": to, "text": args.text}
    sender = args.sender
    if not sender:
        try:
            sender = _load(args).http.default_sender
        except ConfigError as exc:
            return fail(str(exc))
    if not sender:  # an empty sender id is refused or replaced by carriers: say so here
        return fail("send: give --from, or set [http] default_sender in the config")
    body["from"] = sender
    return _call(args, "POST", "/v1/messages", body)


def _otp_send(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"to": args.to}
    for field, value in (("from", args.sender), ("code", args.code), ("locale", args.locale)):
        if value:
            body[field] = value
    return _call(args, "POST", "/v1/otp", body)


def _otp_check(args: argparse.Namespace) -> int:
    return _call(args, "POST", f"/v1/otp/{args.id}/check", {"code": args.code})
