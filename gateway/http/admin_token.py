"""The admin token: who may read the daemon's own views under `/admin/` (`GET /admin/links`).

Owns the token file (`[http] admin_token_file`, by default `<data_dir>/admin.token`): 32 random
bytes, URL-safe, created mode 0600 by the daemon when it is missing and kept across restarts,
and read by the `tandem` commands that ask the running daemon (`route explain`). A request under
`/admin/` must carry `Authorization: Bearer <token>`. The TCP peer's address counts for nothing:
a reverse proxy on the same host forwards from 127.0.0.1, so "loopback only" would make these
paths public through it; the proxy does not know the token. Whoever can read the file (the
daemon's user, root) may ask.

Imports no aiohttp (the command line reads the token too). Never does: log the token, or accept
an empty one.
"""

from __future__ import annotations

import base64
import hmac
import os
import secrets
from pathlib import Path

from gateway.config import TandemConfig

ADMIN_PREFIX = "/admin/"
TOKEN_FILE = "admin.token"


def admin_token_path(config: TandemConfig) -> Path:
    configured = config.http.admin_token_file
    return configured if configured is not None else config.data_dir / TOKEN_FILE


def read_admin_token(path: Path) -> str:
    """The token in `path` (OSError when it cannot be read, ValueError when it is empty)."""
    token = path.read_text(encoding="ascii").strip()
    if not token:
        raise ValueError(f"{path} is empty")
    return token


class AdminTokenUnreadable(Exception):
    """The `tandem` command cannot read the daemon's token; says which file and why."""


def admin_token_of(config: TandemConfig) -> str:
    """The token of the daemon running with `config`, for a `tandem` command that asks it.

    Raises AdminTokenUnreadable ("cannot read the admin token <file>: <reason>") when the file
    is missing (no daemon has run with this config), unreadable (not our user) or empty.
    """
    path = admin_token_path(config)
    try:
        return read_admin_token(path)
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise AdminTokenUnreadable(f"cannot read the admin token {path}: {reason}") from None


def load_or_create_admin_token(path: Path) -> str:
    """The daemon's token, written (mode 0600, whatever the umask) on first start."""
    try:
        return read_admin_token(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as file:
        file.write(token + "\n")
    return token


def admin_credentials_match(token: str, authorization: str) -> bool:
    """`bearer_matches`, or HTTP Basic with the token as the password (any user name): what a
    browser can send for the status page."""
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "basic":
        return bearer_matches(token, authorization)
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return False
    _, colon, password = decoded.partition(":")
    return bool(colon and token) and hmac.compare_digest(password.encode(), token.encode())


def bearer_matches(token: str, authorization: str) -> bool:
    """Whether an `Authorization` header carries `token` (compared in constant time)."""
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False
    return hmac.compare_digest(value.strip().encode(), token.encode())
