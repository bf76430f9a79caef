"""HTTP API keys: minting, hashing, scopes, and the daemon's cache of who a bearer key is.

Owns `mint_key` (a new key and the record to store for it), `hash_key`, the scope names, the
`KeyRing` that answers "which key is this `Authorization: Bearer` value?" for the HTTP API, and
the `create_key` / `list_keys` / `revoke_key` operations behind `tandem keys`.

Never does: store a key in clear. A key is shown once when it is created; the store keeps its
SHA-256 only. SHA-256 and not a slow password hash: keys are 32 random bytes, so they cannot be
guessed from their hash, and every API request pays for the lookup.

A revocation made with the CLI (another process, same store) reaches a running daemon within
`[http] key_cache_seconds`: the ring re-reads a cached key once it is that old.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from gateway.store.base import ApiKeyRecord, ApiKeyStore

KEY_PREFIX = "tdm_"
SCOPES: tuple[str, ...] = ("messages", "otp", "optouts", "inbound")
DEFAULT_SCOPES: tuple[str, ...] = ("messages", "otp")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_REGION = re.compile(r"^[A-Z]{2}$")


class InvalidKeySettings(ValueError):
    """An invalid `tandem keys create` argument; the message is one sentence for the operator."""


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(slots=True, frozen=True)
class MintedKey:
    """A freshly created key: `secret` is shown once and never stored."""

    secret: str
    record: ApiKeyRecord


def mint_key(
    name: str,
    *,
    now: float,
    scopes: Iterable[str] = DEFAULT_SCOPES,
    senders: str | None = None,
    countries: Iterable[str] | None = None,
    requests_per_second: float | None = None,
    messages_per_second: float | None = None,
    callback_url: str | None = None,
) -> MintedKey:
    """Validate the settings and make a key; raises `InvalidKeySettings` with the reason."""
    if not _NAME.match(name):
        raise InvalidKeySettings("name must be 1-64 letters, digits, '_', '.' or '-'")
    scope_list = tuple(dict.fromkeys(s.strip() for s in scopes if s.strip()))
    unknown = [s for s in scope_list if s not in SCOPES]
    if unknown or not scope_list:
        raise InvalidKeySettings(
            f"scopes must be some of {', '.join(SCOPES)} (got {', '.join(unknown) or 'none'})"
        )
    if senders is not None:
        try:
            re.compile(senders)
        except re.error as exc:
            raise InvalidKeySettings(f"senders is not a regular expression: {exc}") from None
    region_list: tuple[str, ...] | None = None
    if countries is not None:
        region_list = tuple(c.strip().upper() for c in countries if c.strip())
        bad = [c for c in region_list if not _REGION.match(c)]
        if bad or not region_list:
            raise InvalidKeySettings("countries must be two-letter region codes such as GB,DE")
    for label, rate in (("rps", requests_per_second), ("mps", messages_per_second)):
        if rate is not None and rate <= 0:
            raise InvalidKeySettings(f"{label} must be above 0")
    if callback_url is not None and not callback_url.startswith(("http://", "https://")):
        raise InvalidKeySettings("callback-url must be an http:// or https:// URL")
    key_id = "key_" + secrets.token_hex(6)
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    record = ApiKeyRecord(
        id=key_id,
        name=name,
        key_hash=hash_key(secret),
        prefix=secret[: len(KEY_PREFIX) + 6],
        scopes=scope_list,
        created_at=now,
        callback_secret="whsec_" + secrets.token_urlsafe(24),
        senders=senders,
        countries=region_list,
        requests_per_second=requests_per_second,
        messages_per_second=messages_per_second,
        callback_url=callback_url,
    )
    return MintedKey(secret, record)


@dataclass(slots=True)
class ApiKey:
    """An active key as the HTTP API uses it (compiled sender rule, effective limits)."""

    record: ApiKeyRecord
    sender_rule: re.Pattern[str] | None
    requests_per_second: float
    messages_per_second: float

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def name(self) -> str:
        return self.record.name

    def allows_scope(self, scope: str) -> bool:
        return scope in self.record.scopes

    def allows_sender(self, sender: str) -> bool:
        return self.sender_rule is None or self.sender_rule.fullmatch(sender) is not None

    def allows_country(self, region: str | None) -> bool:
        countries = self.record.countries
        return countries is None or (region is not None and region in countries)


class KeyRing:
    """Bearer value -> active `ApiKey`, cached for `cache_seconds` (revocations by the CLI show
    up within that time). Unknown values are looked up in the store every time: they are
    rejected anyway, and rate limits apply per key, so there is nothing to save for them.

    The cache is keyed by the bearer value itself, in memory only, so a cached request costs a
    dict lookup instead of a SHA-256; it holds at most one entry per key that exists."""

    def __init__(
        self,
        store: ApiKeyStore,
        *,
        default_requests_per_second: float,
        default_messages_per_second: float,
        cache_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._default_rps = default_requests_per_second
        self._default_mps = default_messages_per_second
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._by_bearer: dict[str, tuple[ApiKey | None, float]] = {}
        self._by_name: dict[str, tuple[ApiKeyRecord | None, float]] = {}

    def set_defaults(
        self,
        *,
        default_requests_per_second: float,
        default_messages_per_second: float,
        cache_seconds: float,
    ) -> None:
        """A reload: the limits of keys created without their own, and the cache's age. The
        cache is emptied so every key's next request takes the new limits."""
        self._default_rps = default_requests_per_second
        self._default_mps = default_messages_per_second
        self._cache_seconds = cache_seconds
        self._by_bearer.clear()
        self._by_name.clear()

    async def authenticate(self, bearer: str) -> ApiKey | None:
        now = self._clock()
        cached = self._by_bearer.get(bearer)
        if cached is not None and now - cached[1] < self._cache_seconds:
            return cached[0]
        record = await self._store.find_api_key(hash_key(bearer))
        key = None if record is None or record.revoked_at is not None else self._activate(record)
        if key is not None or cached is not None:
            self._by_bearer[bearer] = (key, now)
        return key

    def cached(self, bearer: str) -> ApiKey | None:
        """The active key of `bearer` when the ring holds it fresh: no hash, no store read."""
        cached = self._by_bearer.get(bearer)
        if cached is not None and self._clock() - cached[1] < self._cache_seconds:
            return cached[0]
        return None

    def was_valid(self, bearer: str) -> bool:
        """Whether `bearer` was an active key when the ring last looked (at any age)."""
        cached = self._by_bearer.get(bearer)
        return cached is not None and cached[0] is not None

    async def record_by_name(self, name: str, *, revoked_too: bool = False) -> ApiKeyRecord | None:
        """The active key named `name` (the account of an HTTP message): callback URL and
        secret. `revoked_too`: a revoked key's record as well (names are never reused), for
        the callbacks still owed for messages it sent."""
        now = self._clock()
        cached = self._by_name.get(name)
        if cached is not None and now - cached[1] < self._cache_seconds:
            record = cached[0]
        else:
            record = await self._store.find_api_key_by_name(name)
            self._by_name[name] = (record, now)
        if record is not None and record.revoked_at is not None and not revoked_too:
            return None
        return record

    def _activate(self, record: ApiKeyRecord) -> ApiKey:
        return ApiKey(
            record=record,
            sender_rule=re.compile(record.senders) if record.senders else None,
            requests_per_second=record.requests_per_second or self._default_rps,
            messages_per_second=record.messages_per_second or self._default_mps,
        )


# --- `tandem keys` operations (on the store directly) ---------------------------------------


async def create_key(store: ApiKeyStore, name: str, **settings: object) -> MintedKey:
    minted = mint_key(name, now=time.time(), **settings)  # type: ignore[arg-type]
    await store.save_api_key(minted.record)
    return minted


async def list_keys(store: ApiKeyStore) -> list[ApiKeyRecord]:
    return await store.list_api_keys()


async def revoke_key(store: ApiKeyStore, name_or_id: str) -> bool:
    return await store.revoke_api_key(name_or_id, at=time.time())
