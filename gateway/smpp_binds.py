"""Credential checks of the customer SMPP server's binds: what they cost and what they tell.

Owns `PasswordVerifier` (argon2 on a few threads of its own behind a bounded queue: a bind
whose check would wait past its budget is refused at once, never queued; unknown system_ids are
verified against a dummy hash made at start, so they cost what a wrong password costs),
`CredentialCache` (credentials verified recently, kept as a hash keyed with a secret of this
process: never the password; a cached-good bind skips the queue) and `BindChecker`, which ties
them together and words the refusal: by default an unknown system_id, a wrong password and a
bind from an address the account does not allow are all answered ESME_RBINDFAIL, after the same
work, so a prober cannot tell which accounts exist; `distinct_bind_failures` keeps the spec's
distinct statuses (ESME_RINVSYSID, ESME_RINVPASWD) for operators who want them. The reason
always goes to the log.

Must never: log or keep a password, or decide bind types and counts (the server does), or ban
(`gateway.accounts.BindGuard` does).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from gateway.accounts import Account, hash_password, verify_password
from smpp.constants import CommandStatus

T = TypeVar("T")


def _timed(function: Callable[..., T], *args: object) -> tuple[T, float]:
    started = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - started


class VerifierBusy(Exception):
    """The verification queue is at its bound: the bind is refused now, not queued."""


@dataclass(slots=True)
class VerifierStats:
    verified: int = 0  # argon2 verifications run (dummy ones included)
    refused_busy: int = 0  # binds refused because the queue was full


class PasswordVerifier:
    """argon2 verification off the event loop on `threads` threads of its own, behind a
    bounded queue. A check is refused at once (`VerifierBusy`) when it would wait longer than
    `wait_budget` seconds at the pace checks are going (the checks ahead of it times the
    recent time of one, over the threads), when `max_pending` are queued or running already,
    or when `max_pending_per_client` of them are one client address's (one source cannot fill
    the queue alone). `verify` is the check itself (the real one unless a test needs another);
    `seconds_per_check` the first estimate of its time (None: timed when the dummy hash is
    made, which costs one check)."""

    def __init__(
        self,
        *,
        threads: int = 2,
        max_pending: int = 256,
        max_pending_per_client: int = 8,
        wait_budget: float = 5.0,
        seconds_per_check: float | None = None,
        verify: Callable[[str, str], bool] = verify_password,
    ) -> None:
        self.threads = threads
        self.max_pending = max_pending
        self.max_pending_per_client = max_pending_per_client
        self.wait_budget = wait_budget
        self.seconds_per_check = seconds_per_check
        self.pending = 0
        self._pending_by_client: dict[str, int] = {}
        self.stats = VerifierStats()
        self._verify = verify
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="smpp-password")
        self._dummy_hash: str | None = None

    async def start(self) -> None:
        """Make the dummy hash (a random password, the cost every account hash has)."""
        if self._dummy_hash is None:
            loop = asyncio.get_running_loop()
            password = secrets.token_urlsafe(6)[:8]
            self._dummy_hash, seconds = await loop.run_in_executor(
                self._executor, _timed, hash_password, password
            )
            if self.seconds_per_check is None:
                self.seconds_per_check = seconds

    def expected_wait(self) -> float:
        """Seconds a check queued now would wait for its answer, at the recent pace."""
        return (self.pending + 1) * (self.seconds_per_check or 0.0) / self.threads

    async def verify(self, password_hash: str | None, password: str, client: str = "") -> bool:
        """Whether `password` matches `password_hash`; None (an unknown system_id) is
        verified against the dummy hash and never matches. Raises `VerifierBusy`."""
        by_client = self._pending_by_client
        mine = by_client.get(client, 0)
        if (
            self.pending >= self.max_pending
            or mine >= self.max_pending_per_client
            or self.expected_wait() > self.wait_budget
        ):
            self.stats.refused_busy += 1
            raise VerifierBusy
        self.pending += 1
        by_client[client] = mine + 1
        try:
            if self._dummy_hash is None:
                await self.start()
            target = password_hash if password_hash is not None else self._dummy_hash
            assert target is not None
            loop = asyncio.get_running_loop()
            matched, seconds = await loop.run_in_executor(
                self._executor, _timed, self._verify, target, password
            )
            self.stats.verified += 1
            # The pace follows the machine (a busy host checks slower), smoothed.
            previous = self.seconds_per_check
            self.seconds_per_check = seconds if previous is None else 0.8 * previous + 0.2 * seconds
        finally:
            self.pending -= 1
            left = by_client[client] - 1
            if left:
                by_client[client] = left
            else:
                del by_client[client]
        return matched and password_hash is not None

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class CredentialCache:
    """Credentials verified recently, per system_id: a BLAKE2b of the system_id, password and
    password hash keyed with a random secret of this process, and when it was verified.
    Sans-IO: callers pass `now`. A password change (a new hash) misses; entries older than
    `ttl` seconds miss and are dropped; at most `max_entries` are kept (the oldest go)."""

    def __init__(self, *, ttl: float = 3600.0, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._key = secrets.token_bytes(32)
        self._entries: dict[str, tuple[bytes, float]] = {}

    def holds(self, system_id: str, password: str, password_hash: str, now: float) -> bool:
        entry = self._entries.get(system_id)
        if entry is None:
            return False
        digest, verified_at = entry
        if now - verified_at >= self.ttl:
            del self._entries[system_id]
            return False
        return hmac.compare_digest(digest, self._digest(system_id, password, password_hash))

    def remember(self, system_id: str, password: str, password_hash: str, now: float) -> None:
        self._entries.pop(system_id, None)  # re-inserted last: the dict's order is age
        if len(self._entries) >= self.max_entries:
            del self._entries[next(iter(self._entries))]
        self._entries[system_id] = (self._digest(system_id, password, password_hash), now)

    def __len__(self) -> int:
        return len(self._entries)

    def _digest(self, system_id: str, password: str, password_hash: str) -> bytes:
        material = "\0".join((system_id, password, password_hash)).encode("utf-8", "replace")
        return hashlib.blake2b(material, key=self._key, digest_size=32).digest()


@dataclass(slots=True, frozen=True)
class BindRefusal:
    """A bind the credentials check refused: what the client is told, and why (for the log)."""

    status: int
    reason: str
    network: bool = False  # refused for its source address


class BindChecker:
    """The credentials part of a bind decision: cache, verification and the refusal's words."""

    def __init__(
        self,
        *,
        distinct_failures: bool = False,
        verifier: PasswordVerifier | None = None,
        cache: CredentialCache | None = None,
    ) -> None:
        self.distinct_failures = distinct_failures
        self.verifier = verifier if verifier is not None else PasswordVerifier()
        self.cache = cache if cache is not None else CredentialCache()

    def cached(self, address: str, account: Account | None, password: str, now: float) -> bool:
        """True when this account's credentials were verified recently (and the account
        still takes binds from `address`): such a bind skips the queue and any ban."""
        if account is None or not account.allows_address(address):
            return False
        return self.cache.holds(account.system_id, password, account.config.password_hash, now)

    async def check(
        self, address: str, account: Account | None, password: str, now: float
    ) -> BindRefusal | None:
        """None when the credentials hold (and are cached from then on), else the refusal.
        Raises `VerifierBusy` when the queue is full."""
        if account is None:
            await self.verifier.verify(None, password, address)
            return self._refusal(CommandStatus.ESME_RINVSYSID, "unknown system_id")
        if not account.allows_address(address):
            if not self.distinct_failures:
                await self.verifier.verify(None, password, address)  # as costly as the others
            return BindRefusal(CommandStatus.ESME_RBINDFAIL, "address not allowed", network=True)
        password_hash = account.config.password_hash
        if not await self.verifier.verify(password_hash, password, address):
            return self._refusal(CommandStatus.ESME_RINVPASWD, "wrong password")
        self.cache.remember(account.system_id, password, password_hash, now)
        return None

    def _refusal(self, distinct_status: int, reason: str) -> BindRefusal:
        status = distinct_status if self.distinct_failures else CommandStatus.ESME_RBINDFAIL
        return BindRefusal(status, reason)

    async def start(self) -> None:
        await self.verifier.start()

    def shutdown(self) -> None:
        self.verifier.shutdown()
