"""SMPP customer accounts: who may bind, from where, how fast, and who owns which MO numbers.

Owns: password hashing (argon2) and the 8-character SMPP password limit; `Account` (an
`AccountConfig` compiled for the hot path: networks, sender patterns, MO numbers); `AccountBook`
(the accounts of `[[accounts]]` in the config plus the CLI-managed accounts file, reloaded when
that file changes); `TokenBucket` (an account's tps, counted per segment); `BindGuard` (slows
down and then bans binds that keep failing, counted per address and per account); and
`tandem accounts add/list/passwd/remove`, which edit the accounts file.

Where CLI-managed accounts live: `<data_dir>/accounts.toml`, a TOML file of `[[accounts]]`
tables with the same keys as the config. The CLI rewrites it atomically; a running server
notices the change and reloads it, so accounts are managed on a live install without editing
the main config or restarting. Accounts written in the main config are read-only to the CLI.

Must never: open sockets or decide SMPP statuses beyond bind checks. `TokenBucket` and
`BindGuard` are sans-IO (they take `now`).
"""

from __future__ import annotations

import argparse
import getpass
import ipaddress
import os
import re
import sys
import tempfile
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gateway.cli_support import add_config_argument
from gateway.config import AccountConfig, TandemConfig, validation_reason
from gateway.private_files import private_dir

MAX_PASSWORD_LENGTH = 8  # SMPP 3.4 4.1: password is a C-Octet String of at most 9 octets
ACCOUNTS_FILE_NAME = "accounts.toml"
# OWASP's argon2id minimum (19 MiB, 2 passes, 1 lane): a bind costs ~0.1 s of one core, not the
# library default's ~0.5 s on four. The failed-bind guard, not the hash cost, stops guessing.
ARGON2_TIME_COST, ARGON2_MEMORY_KIB, ARGON2_LANES = 2, 19456, 1

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class PasswordTooLong(ValueError):
    """SMPP carries at most 8 password characters; a longer one could never bind."""


def hash_password(password: str) -> str:
    """An argon2 hash of an SMPP password (at most 8 characters, not empty)."""
    if not password:
        raise ValueError("the password is empty")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise PasswordTooLong(f"SMPP passwords are at most {MAX_PASSWORD_LENGTH} characters")
    from argon2 import PasswordHasher  # lazily: `tandem check-config` stays light

    hasher = PasswordHasher(ARGON2_TIME_COST, ARGON2_MEMORY_KIB, ARGON2_LANES)
    return hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """True when `password` matches. CPU-heavy (argon2): run it off the event loop."""
    from argon2 import PasswordHasher
    from argon2.exceptions import InvalidHashError, VerificationError

    if len(password) > MAX_PASSWORD_LENGTH:
        return False
    try:
        return PasswordHasher().verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def accounts_file(config: TandemConfig) -> Path:
    """The CLI-managed accounts file of an install."""
    return config.data_dir / ACCOUNTS_FILE_NAME


@dataclass(slots=True)
class Account:
    """One account, compiled for the hot path."""

    config: AccountConfig
    networks: tuple[IpNetwork, ...]
    senders: tuple[re.Pattern[str], ...]
    mo_numbers: frozenset[str]
    route_tags: frozenset[str]

    @classmethod
    def compile(cls, config: AccountConfig) -> Account:
        return cls(
            config,
            tuple(ipaddress.ip_network(n, strict=False) for n in config.allowed_networks),
            tuple(re.compile(p) for p in config.allowed_senders),
            frozenset(_number_key(n) for n in config.mo_numbers),
            frozenset(config.route_tags),
        )

    @property
    def system_id(self) -> str:
        return self.config.system_id

    def allows_address(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.networks)

    def allows_sender(self, sender: str) -> bool:
        if not self.senders:
            return True
        return any(pattern.fullmatch(sender) for pattern in self.senders)


def _number_key(number: str) -> str:
    return number.strip().removeprefix("+")


def load_accounts_file(path: Path) -> list[AccountConfig]:
    """The accounts of a CLI-managed file; an absent file holds none. Raises ValueError with a
    one-line reason for a broken one."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: invalid TOML: {exc}") from None
    accounts = []
    for index, entry in enumerate(document.get("accounts", [])):
        try:
            accounts.append(AccountConfig.model_validate(entry))
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(part) for part in first["loc"])
            raise ValueError(
                f"{path}: accounts[{index}].{where}: {validation_reason(first)}"
            ) from None
    return accounts


def save_accounts_file(path: Path, accounts: Iterable[AccountConfig]) -> None:
    """Write the accounts file atomically (a reader sees the old or the new file, never half)."""
    lines = ["# Managed by `tandem accounts`; the daemon reloads it when it changes.\n"]
    for account in accounts:
        lines.append("\n[[accounts]]\n")
        for key, value in account.model_dump(mode="json").items():
            if value is None:
                continue
            lines.append(f"{key} = {_toml_value(value)}\n")
    private_dir(path.parent)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".accounts.", suffix=".toml")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.writelines(lines)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


class AccountBook:
    """Every account the server knows: `[[accounts]]` of the config, then the accounts file.

    A system_id in both is the config's (the CLI refuses to edit those). `reload_if_changed`
    re-reads the file when its modification time moved; a broken file keeps the last good set.
    """

    def __init__(self, static: Iterable[AccountConfig], file: Path | None) -> None:
        self._static = list(static)
        self.file = file
        self._file_stamp: tuple[int, int] | None = None
        self.load_error: str | None = None
        self._accounts: dict[str, Account] = {}
        self._owners: dict[str, Account] = {}
        self._rebuild(self._read_file())

    def get(self, system_id: str) -> Account | None:
        return self._accounts.get(system_id)

    def __iter__(self) -> Any:
        return iter(self._accounts.values())

    def __len__(self) -> int:
        return len(self._accounts)

    def owner_of(self, number: str) -> Account | None:
        """The enabled account whose MO numbers include `number` (with or without '+')."""
        return self._owners.get(_number_key(number))

    def replace_static(self, static: Iterable[AccountConfig]) -> None:
        """A reload of the config: its `[[accounts]]`, with the file read again."""
        self._static = list(static)
        self._rebuild(self._read_file())

    def reload_if_changed(self) -> bool:
        """Re-read the accounts file if it changed; True when the set of accounts was rebuilt."""
        if self.file is None or self._stamp() == self._file_stamp:
            return False
        self._rebuild(self._read_file())
        return True

    def _stamp(self) -> tuple[int, int] | None:
        assert self.file is not None
        try:
            status = self.file.stat()
        except FileNotFoundError:
            return None
        return (status.st_mtime_ns, status.st_size)

    def _read_file(self) -> list[AccountConfig] | None:
        if self.file is None:
            return []
        self._file_stamp = self._stamp()
        try:
            accounts = load_accounts_file(self.file)
        except ValueError as exc:
            self.load_error = str(exc)
            return None
        self.load_error = None
        return accounts

    def _rebuild(self, from_file: list[AccountConfig] | None) -> None:
        if from_file is None:
            return  # keep serving the last good set
        accounts: dict[str, Account] = {}
        for config in [*from_file, *self._static]:  # the config's entry wins
            accounts[config.system_id] = Account.compile(config)
        owners: dict[str, Account] = {}
        for account in accounts.values():
            if account.config.enabled:
                for number in account.mo_numbers:
                    owners.setdefault(number, account)
        self._accounts = accounts
        self._owners = owners


@dataclass(slots=True)
class TokenBucket:
    """`rate` tokens per second, at most `burst` saved. Sans-IO: callers pass `now`."""

    rate: float
    burst: float
    tokens: float = field(default=-1.0)
    updated: float = 0.0

    def __post_init__(self) -> None:
        if self.tokens < 0:
            self.tokens = self.burst

    def take(self, count: int, now: float) -> bool:
        """Take `count` tokens if they are there; False (and nothing taken) otherwise."""
        elapsed = now - self.updated
        if elapsed > 0:
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
            self.updated = now
        if self.tokens >= count:
            self.tokens -= count
            return True
        return False


@dataclass(slots=True)
class _Failures:
    count: int = 0
    last: float = 0.0
    banned_until: float = 0.0


@dataclass(slots=True)
class BindGuardStats:
    failures: int = 0
    bans: int = 0  # of an (address, system_id) pair or of a whole address
    refused_while_banned: int = 0


class _FailureTable:
    """Failures per key: the first `free` answered at once, each further one waits twice as
    long as the one before; after `ban_after` (None: never) the key is banned."""

    def __init__(self, guard: BindGuard, free: int, ban_after: int | None) -> None:
        self.guard = guard
        self.free = free
        self.ban_after = ban_after
        self.entries: dict[object, _Failures] = {}

    def banned(self, key: object, now: float) -> bool:
        entry = self.entries.get(key)
        return entry is not None and entry.banned_until > now

    def failed(self, key: object, now: float) -> float:
        guard = self.guard
        entry = self.entries.get(key)
        if entry is None or now - entry.last >= guard.forget_after:
            if len(self.entries) >= guard.max_tracked:
                self._forget_oldest(now)
            entry = self.entries[key] = _Failures()
        entry.count += 1
        entry.last = now
        banning = self.ban_after is not None and entry.count >= self.ban_after
        if banning and entry.banned_until <= now:
            entry.banned_until = now + guard.ban_seconds
            guard.stats.bans += 1
        over = entry.count - self.free
        if over <= 0:
            return 0.0
        return float(min(guard.max_delay, guard.base_delay * 2.0 ** (over - 1)))

    def _forget_oldest(self, now: float) -> None:
        forget_after = self.guard.forget_after
        stale = [k for k, f in self.entries.items() if now - f.last >= forget_after]
        for key in stale or list(self.entries)[: max(1, self.guard.max_tracked // 10)]:
            del self.entries[key]


class BindGuard:
    """Slows down and bans binds that keep failing. Sans-IO: callers pass `now`.

    Failures are counted three ways. Per address and system_id (a client getting one account
    wrong): the first `free_failures` are answered at once, each further one waits twice as
    long as the one before (from `base_delay`, capped at `max_delay`), and after `ban_after`
    that address is refused that account for `ban_seconds`. Per address over every system_id
    (one client spraying accounts): slowed the same way after `address_free_failures`, the
    whole address banned after `address_ban_after`. Per system_id over every address (many
    addresses guessing one account): slowed after `account_free_failures`, never banned, since
    that would let anyone lock a customer out. So a client sharing an attacker's address (a
    NAT, a carrier-grade NAT, a hosting provider) keeps binding to its own account, and the
    server lets a credential it verified recently through any ban. Anything quiet for
    `forget_after` seconds starts clean; a successful bind clears its pair.
    """

    def __init__(
        self,
        *,
        free_failures: int = 3,
        base_delay: float = 0.5,
        max_delay: float = 8.0,
        ban_after: int = 10,
        ban_seconds: float = 300.0,
        address_free_failures: int = 10,
        address_ban_after: int = 50,
        account_free_failures: int = 10,
        forget_after: float = 600.0,
        max_tracked: int = 100_000,
    ) -> None:
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.ban_seconds = ban_seconds
        self.forget_after = forget_after
        self.max_tracked = max_tracked
        self.stats = BindGuardStats()
        self._pairs = _FailureTable(self, free_failures, ban_after)
        self._addresses = _FailureTable(self, address_free_failures, address_ban_after)
        self._accounts = _FailureTable(self, account_free_failures, None)

    def banned(self, address: str, system_id: str, now: float) -> bool:
        if self._pairs.banned((address, system_id), now) or self._addresses.banned(address, now):
            self.stats.refused_while_banned += 1
            return True
        return False

    def failed(self, address: str, system_id: str, now: float) -> float:
        """Record a failed bind; returns how long to wait before answering it."""
        self.stats.failures += 1
        return max(
            self._pairs.failed((address, system_id), now),
            self._addresses.failed(address, now),
            self._accounts.failed(system_id, now),
        )

    def succeeded(self, address: str, system_id: str) -> None:
        self._pairs.entries.pop((address, system_id), None)


# --- tandem accounts ------------------------------------------------------------------------


def add_accounts_arguments(parser: argparse.ArgumentParser) -> None:
    """`tandem accounts add|list|passwd|remove` (a `gateway.cli.SUBCOMMANDS` entry)."""
    add_config_argument(parser)
    actions = parser.add_subparsers(dest="accounts_action", metavar="ACTION", required=True)

    add = actions.add_parser("add", help="add an account")
    add.add_argument("system_id")
    add.add_argument("--password", help="at most 8 characters (default: ask)")
    add.add_argument("--tps", type=float, default=None, help="segments per second")
    add.add_argument("--window", type=int, default=None)
    add.add_argument("--max-binds", type=int, default=None)
    add.add_argument(
        "--bind-type",
        action="append",
        choices=("transmitter", "receiver", "transceiver"),
        help="allowed bind type (repeatable; default: all)",
    )
    add.add_argument("--network", action="append", help="allowed source network (repeatable)")
    add.add_argument("--sender", action="append", help="allowed sender regex (repeatable)")
    add.add_argument(
        "--source-ton-npi",
        choices=("set", "check"),
        default=None,
        help="a source TON that does not fit the sender: set the fitting one, or refuse",
    )
    add.add_argument("--mo-number", action="append", help="MO number or short code owned")
    add.add_argument("--multipart", choices=("reassemble", "passthrough"), default=None)
    add.add_argument("--route-tag", action="append", help="route tag of its messages (repeatable)")
    add.add_argument("--disabled", action="store_true", help="add it disabled")
    add.set_defaults(handler=_accounts_add)

    listing = actions.add_parser("list", help="list accounts")
    listing.set_defaults(handler=_accounts_list)

    passwd = actions.add_parser("passwd", help="change an account's password")
    passwd.add_argument("system_id")
    passwd.add_argument("--password", help="at most 8 characters (default: ask)")
    passwd.set_defaults(handler=_accounts_passwd)

    remove = actions.add_parser("remove", help="remove an account")
    remove.add_argument("system_id")
    remove.set_defaults(handler=_accounts_remove)

    for name, enabled in (("enable", True), ("disable", False)):
        toggle = actions.add_parser(name, help=f"{name} an account")
        toggle.add_argument("system_id")
        toggle.set_defaults(handler=_accounts_toggle, enable=enabled)


def _fail(message: str) -> int:
    print(f"tandem accounts: {message}", file=sys.stderr)
    return 2


def _load(args: argparse.Namespace) -> tuple[TandemConfig, Path, list[AccountConfig]]:
    from gateway.config import load_config
    from gateway.state_paths import daemon_state_path

    config = load_config(args.config)
    data_dir = daemon_state_path(config.data_dir, "data directory")
    path = data_dir / ACCOUNTS_FILE_NAME
    return config, path, load_accounts_file(path)


def _password(args: argparse.Namespace) -> str:
    if args.password is not None:
        password: str = args.password
        return password
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise ValueError("the passwords differ")
    return first


def _guarded(run: Any) -> Any:
    from gateway.config import ConfigError
    from gateway.state_paths import StateNotFound

    def handler(args: argparse.Namespace) -> int:
        try:
            result: int = run(args)
        except (ConfigError, StateNotFound, ValueError) as exc:
            return _fail(str(exc))
        return result

    return handler


@_guarded
def _accounts_add(args: argparse.Namespace) -> int:
    config, path, accounts = _load(args)
    if any(a.system_id == args.system_id for a in [*accounts, *config.accounts]):
        return _fail(f"{args.system_id!r} exists already")
    fields: dict[str, Any] = {
        "system_id": args.system_id,
        "password_hash": hash_password(_password(args)),
        "enabled": not args.disabled,
    }
    for key, value in (
        ("tps", args.tps),
        ("window", args.window),
        ("max_binds", args.max_binds),
        ("bind_types", args.bind_type),
        ("allowed_networks", args.network),
        ("allowed_senders", args.sender),
        ("source_ton_npi", args.source_ton_npi),
        ("mo_numbers", args.mo_number),
        ("multipart", args.multipart),
        ("route_tags", args.route_tag),
    ):
        if value is not None:
            fields[key] = value
    try:
        account = AccountConfig.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        return _fail(f"{'.'.join(map(str, first['loc']))}: {validation_reason(first)}")
    save_accounts_file(path, [*accounts, account])
    print(f"added {args.system_id} to {path}")
    return 0


@_guarded
def _accounts_list(args: argparse.Namespace) -> int:
    config, path, accounts = _load(args)
    rows = [(a, "config") for a in config.accounts] + [(a, str(path)) for a in accounts]
    if not rows:
        print("no accounts")
    for account, source in rows:
        tps = "-" if account.tps is None else f"{account.tps:g}"
        state = "enabled" if account.enabled else "disabled"
        print(
            f"{account.system_id:<16} {state:<8} tps={tps:<6} window={account.window:<5} "
            f"binds<={account.max_binds} {','.join(account.bind_types)} "
            f"mo={','.join(account.mo_numbers) or '-'} "
            f"tags={','.join(account.route_tags) or '-'} ({source})"
        )
    return 0


def _edit(args: argparse.Namespace, change: Any) -> int:
    config, path, accounts = _load(args)
    if any(a.system_id == args.system_id for a in config.accounts):
        return _fail(f"{args.system_id!r} is defined in the config file; edit it there")
    for index, account in enumerate(accounts):
        if account.system_id == args.system_id:
            updated = change(account)
            if updated is None:
                del accounts[index]
            else:
                accounts[index] = updated
            save_accounts_file(path, accounts)
            print(f"{args.accounts_action}: {args.system_id} in {path}")
            return 0
    return _fail(f"no account {args.system_id!r} in {path}")


@_guarded
def _accounts_passwd(args: argparse.Namespace) -> int:
    password_hash = hash_password(_password(args))
    return _edit(args, lambda a: a.model_copy(update={"password_hash": password_hash}))


@_guarded
def _accounts_remove(args: argparse.Namespace) -> int:
    return _edit(args, lambda a: None)


@_guarded
def _accounts_toggle(args: argparse.Namespace) -> int:
    return _edit(args, lambda a: a.model_copy(update={"enabled": args.enable}))
