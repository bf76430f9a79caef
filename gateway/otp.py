"""One-time passwords: codes, their hashes, checks, re-sends and SMS-pumping limits.

Owns the OTP rules (`current_status`, `SendLimiter`, `CodeHasher`, `render_template`, all
sans-IO: they take `now` and never await) and `OtpService`, which applies them for the HTTP
API: it sends the code through `MessageIntake` (kind `otp`, so the highest queue priority and
the `kind = "otp"` routes) and keeps the verification in the store.

Checks, cancels and re-sends are each ONE conditional write in the store (`OtpStore`: counts,
status and expiry decided in the statement), never a copy of the row read, changed in memory
and written back: concurrent checks, on one daemon or on several sharing the store, count at
most `max_checks`, approve at most once, and cannot undo a cancel or an approval.

Never does: store a code. The store keeps `HMAC-SHA256(pepper, id + ":" + code)` only, with the
pepper in `<data_dir>/otp.key` (0600), so a copy of the database alone does not reveal codes; a
check hands the store the HMAC of the code it was given, to compare in the statement.

Re-sending the same code: a new request for the same destination with the same API key while a
verification is pending sends the SAME code again (counted as a send, same id, same expiry).
The code must then be known, but only its hash may be stored, so the plaintext lives in this
process's memory only, until the verification ends or expires. After a daemon restart the
plaintext is gone: a new request for that destination then starts a new verification with a
new code (the old verification can still be checked until it expires). That trades a rare
extra code after restarts for never keeping codes at rest. The SMS itself carries the code and
must survive a crash until it is sent, so the store keeps its content sealed (never in clear in
the database or its WAL: gateway.store.sealing) until the message reaches a final status;
`OtpService` is a status listener and then wipes it (`MessageRedaction.redact_message`).

SMS-pumping protection (fraudsters requesting OTPs to premium ranges they are paid for):
- allowed destination countries per API key (`tandem keys create --countries GB,DE`);
- at most `max_sends` sends per destination within `send_window` (first send and re-sends);
- a velocity limit per destination prefix (first `prefix_digits` digits of E.164): more than
  `prefix_max_sends` within `prefix_window` trips it, and the prefix is then blocked for
  `prefix_block_seconds`. Trips are logged and counted in `OtpStats` (the metrics exporter
  reads them). Counters live in memory: a restart resets them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import re
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

from dlr.status import is_final
from gateway.config import OtpConfig
from gateway.intake import MessageIntake, MessageRequest
from gateway.keys import ApiKey
from gateway.messages import Channel, Message, MessageKind
from gateway.private_files import read_or_create_key
from gateway.store.base import (
    MessageRedaction,
    OtpChange,
    OtpRecord,
    OtpStore,
    StatusChange,
)
from gateway.store.base import OtpStatus as OtpStatus  # its one enum; the rules are here
from routing import InvalidNumber, NumberResolver

log = logging.getLogger("tandem.otp")

_CLIENT_CODE = re.compile(r"^[0-9A-Za-z]{4,10}$")
_PLACEHOLDER = re.compile(r"\{\{\s*(code|ttl_minutes|brand)\s*\}\}")


@dataclass(slots=True)
class OtpRefusal(Exception):
    """Why an OTP request is refused: a stable `code`, the `field` at fault, a sentence, the
    HTTP status, and for limits the seconds after which a retry may succeed."""

    code: str
    field: str
    reason: str
    http_status: int
    retry_after: float | None = None
    otp_status: str | None = None

    def __str__(self) -> str:
        return f"{self.code}: {self.field}: {self.reason}"


# --- codes, hashes, templates (sans-IO) -------------------------------------------------------


def generate_code(length: int) -> str:
    """`length` decimal digits from the OS's CSPRNG (leading zeros kept)."""
    return f"{secrets.randbelow(10**length):0{length}d}"


class CodeHasher:
    """HMAC-SHA256 of (verification id, code) under a secret pepper."""

    __slots__ = ("_pepper",)

    def __init__(self, pepper: bytes) -> None:
        if len(pepper) < 16:
            raise ValueError("the OTP pepper must be at least 16 bytes")
        self._pepper = pepper

    def hash(self, otp_id: str, code: str) -> str:
        return hmac.new(self._pepper, f"{otp_id}:{code}".encode(), hashlib.sha256).hexdigest()

    def matches(self, otp_id: str, code: str, stored_hash: str) -> bool:
        return hmac.compare_digest(self.hash(otp_id, code).encode(), stored_hash.encode())

    @classmethod
    def from_file(cls, path: Path) -> CodeHasher:
        """Read the pepper, creating it (32 random bytes, mode 0600) on first use."""
        return cls(read_or_create_key(path, 32))


def render_template(template: str, *, code: str, ttl_seconds: float, brand: str) -> str:
    values = {"code": code, "ttl_minutes": str(max(1, round(ttl_seconds / 60))), "brand": brand}
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], template)


def template_refusal(template: str) -> OtpRefusal | None:
    if _PLACEHOLDER.search(template) is None or "code" not in {
        m.group(1) for m in _PLACEHOLDER.finditer(template)
    }:
        return OtpRefusal("invalid_template", "template", "the template must contain {{code}}", 422)
    return None


# --- checks (sans-IO) ---------------------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class CheckOutcome:
    status: OtpStatus
    attempts_left: int
    changed: bool  # this check used an attempt (and, if APPROVED, approved)

    @classmethod
    def of(cls, change: OtpChange, now: float) -> CheckOutcome:
        record = change.record
        return cls(current_status(record, now), attempts_left(record), change.changed)


def current_status(record: OtpRecord, now: float) -> OtpStatus:
    """The record's status at `now`: a pending one past its expiry is expired."""
    status = OtpStatus(record.status)
    if status is OtpStatus.PENDING and now >= record.expires_at:
        return OtpStatus.EXPIRED
    return status


def attempts_left(record: OtpRecord) -> int:
    return max(0, record.max_checks - record.checks)


# --- send limits (sans-IO) ----------------------------------------------------------------------


@dataclass(slots=True)
class OtpStats:
    """Counters for the metrics exporter."""

    sent: int = 0
    resent: int = 0
    checks: int = 0
    approved: int = 0
    wrong_codes: int = 0  # checks that used an attempt and did not approve
    attempts_exhausted: int = 0  # verifications ended by their last wrong code
    expired: int = 0  # verifications this node sent that ended pending (their time ran out)
    destination_limited: int = 0  # refused: too many sends to one destination
    prefix_limited: int = 0  # refused: the destination's prefix is blocked
    prefix_trips: int = 0  # times a prefix went over its velocity limit and was blocked
    country_refused: int = 0


@dataclass(slots=True)
class SendLimiter:
    """Sliding-window counters per destination and per destination prefix, and prefix blocks."""

    max_sends: int
    send_window: float
    prefix_digits: int
    prefix_max_sends: int  # 0: no prefix limit
    prefix_window: float
    prefix_block_seconds: float
    stats: OtpStats = field(default_factory=OtpStats)
    _by_destination: dict[str, deque[float]] = field(default_factory=dict)
    _by_prefix: dict[str, deque[float]] = field(default_factory=dict)
    _blocked_until: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: OtpConfig, stats: OtpStats) -> SendLimiter:
        return cls(
            max_sends=config.max_sends,
            send_window=config.send_window,
            prefix_digits=config.prefix_digits,
            prefix_max_sends=config.prefix_max_sends,
            prefix_window=config.prefix_window,
            prefix_block_seconds=config.prefix_block_seconds,
            stats=stats,
        )

    def prefix_of(self, e164: str) -> str:
        return e164.removeprefix("+")[: self.prefix_digits]

    def refusal(self, e164: str, now: float) -> OtpRefusal | None:
        """Why a send to `e164` may not happen now, or None. Counts nothing."""
        prefix = self.prefix_of(e164)
        blocked_until = self._blocked_until.get(prefix)
        if blocked_until is not None:
            if now < blocked_until:
                self.stats.prefix_limited += 1
                return OtpRefusal(
                    "prefix_blocked",
                    "to",
                    f"sending to +{prefix}... is paused after unusual traffic; try later",
                    429,
                    retry_after=blocked_until - now,
                )
            del self._blocked_until[prefix]
        sends = _trim(self._by_destination.get(e164), now - self.send_window)
        if sends is not None and len(sends) >= self.max_sends:
            self.stats.destination_limited += 1
            return OtpRefusal(
                "too_many_sends",
                "to",
                f"at most {self.max_sends} codes may be sent to one number within "
                f"{self.send_window:.0f} seconds",
                429,
                retry_after=sends[0] + self.send_window - now,
            )
        return None

    def record_send(self, e164: str, now: float) -> None:
        self._by_destination.setdefault(e164, deque()).append(now)
        if not self.prefix_max_sends:
            return
        prefix = self.prefix_of(e164)
        sends = self._by_prefix.setdefault(prefix, deque())
        sends.append(now)
        _trim(sends, now - self.prefix_window)
        if len(sends) > self.prefix_max_sends:
            self._blocked_until[prefix] = now + self.prefix_block_seconds
            sends.clear()
            self.stats.prefix_trips += 1
            log.warning(
                "OTP velocity limit: more than %d sends to prefix +%s within %.0f s; "
                "blocked for %.0f s",
                self.prefix_max_sends,
                prefix,
                self.prefix_window,
                self.prefix_block_seconds,
            )

    def blocked_prefixes(self, now: float) -> dict[str, float]:
        return {p: until for p, until in self._blocked_until.items() if until > now}

    def sweep(self, now: float) -> None:
        """Drop counters that fell out of their windows (memory stays bounded)."""
        for counters, window in (
            (self._by_destination, self.send_window),
            (self._by_prefix, self.prefix_window),
        ):
            for key in [k for k, sends in counters.items() if not _trim(sends, now - window)]:
                del counters[key]
        for prefix in [p for p, until in self._blocked_until.items() if until <= now]:
            del self._blocked_until[prefix]


def _trim(sends: deque[float] | None, cutoff: float) -> deque[float] | None:
    if sends is not None:
        while sends and sends[0] <= cutoff:
            sends.popleft()
    return sends


# --- the service (awaits the store and the intake) ----------------------------------------------


@dataclass(slots=True)
class SendResult:
    record: OtpRecord
    resent: bool


@dataclass(slots=True)
class _Live:
    """What only memory knows about a pending verification: its code, for re-sends."""

    code: str
    expires_at: float
    slot: tuple[str, str]  # (key id, E.164): the destination it was sent to


class OtpService:
    """Sends and checks codes for the HTTP API; one per daemon."""

    def __init__(
        self,
        config: OtpConfig,
        *,
        intake: MessageIntake,
        numbers: NumberResolver,
        store: OtpStore,
        hasher: CodeHasher,
        redactor: MessageRedaction | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.intake = intake
        self.numbers = numbers
        self.store = store
        self.hasher = hasher
        self.redactor = redactor
        self.clock = clock
        self._redactions: set[asyncio.Task[None]] = set()
        self.stats = OtpStats()
        self.limiter = SendLimiter.from_config(config, self.stats)
        self._live: dict[str, _Live] = {}  # otp id -> plaintext code, while pending
        self._active: dict[tuple[str, str], str] = {}  # (key id, E.164) -> pending otp id
        self._sending = _Holds()  # (key id, E.164) -> one send at a time

    async def send(
        self,
        key: ApiKey,
        *,
        to: str,
        sender: str | None = None,
        template: str | None = None,
        code_length: int | None = None,
        ttl: int | None = None,
        locale: str | None = None,
        code: str | None = None,
    ) -> SendResult:
        now = self.clock()
        config = self.config
        try:
            # Normalising is enough here (the intake finds the operator when it routes).
            number = self.numbers.normalise(to)
        except InvalidNumber as exc:
            raise OtpRefusal("invalid_number", "to", exc.reason, 422) from None
        if not key.allows_country(number.region):
            self.stats.country_refused += 1
            raise OtpRefusal(
                "country_not_allowed",
                "to",
                f"this key may not send to {number.region or 'that country'}",
                403,
            )
        if code is not None and not _CLIENT_CODE.match(code):
            raise OtpRefusal("invalid_code", "code", "a code is 4 to 10 letters or digits", 422)
        if template is not None and (refusal := template_refusal(template)) is not None:
            raise refusal
        if template is None:
            locale = locale or config.default_locale
            if locale not in config.templates:
                raise OtpRefusal(
                    "unknown_locale",
                    "locale",
                    f"no template for locale {locale!r}; known: {', '.join(config.templates)}",
                    422,
                )
            template = config.templates[locale]
        slot = (key.id, number.e164)
        # One send per destination at a time on this node: a concurrent request for the same
        # destination waits, then re-sends the verification the first one created.
        async with self._sending.hold(slot):
            now = self.clock()
            refusal = self.limiter.refusal(number.e164, now)
            if refusal is not None:
                raise refusal
            existing = await self._pending_for(slot, now)
            if existing is not None:
                record, resent = existing, True
                live = self._live.get(record.id)
                if code is not None:  # the caller's own new code replaces the pending one
                    plaintext = code
                else:
                    plaintext = live.code if live is not None else generate_code(record.code_length)
            else:
                resent = False
                lifetime = ttl or config.ttl
                plaintext = code or generate_code(code_length or config.code_length)
                otp_id = "otp_" + secrets.token_hex(10)
                record = OtpRecord(
                    id=otp_id,
                    key_id=key.id,
                    to=number.e164,
                    status=OtpStatus.PENDING.value,
                    code_hash=self.hasher.hash(otp_id, plaintext),
                    code_length=len(plaintext),
                    created_at=now,
                    expires_at=now + lifetime,
                    max_checks=config.max_checks,
                    updated_at=now,
                )
            text = render_template(
                template, code=plaintext, ttl_seconds=record.expires_at - now, brand=config.brand
            )
            request = MessageRequest(
                account=key.name,
                channel=Channel.HTTP,
                to=number.e164,
                sender=sender or config.default_sender,
                text=text,
                kind=MessageKind.OTP,
                validity_at=record.expires_at,
            )
            prepared = await self.intake.accept([request])
            # Only a send that was accepted changes the verification.
            self.limiter.record_send(number.e164, now)
            message_id = prepared[0].message.id
            if not resent:
                record.message_id = message_id
                await self.store.create_otp(record)
                self._live[record.id] = _Live(plaintext, record.expires_at, slot)
                self._active[slot] = record.id
                self.stats.sent += 1
                return SendResult(record, False)
            self.stats.resent += 1
            change = await self.store.record_otp_send(
                record.id,
                key_id=key.id,
                message_id=message_id,
                code_hash=self.hasher.hash(record.id, plaintext),
                code_length=len(plaintext),
                now=now,
            )
            if change is None or not change.changed:  # it ended meanwhile (another node)
                self._forget(record.id)
                return SendResult(record if change is None else change.record, True)
            self._live[record.id] = _Live(plaintext, record.expires_at, slot)
            return SendResult(change.record, True)

    async def get(self, key: ApiKey, otp_id: str) -> OtpRecord | None:
        """The verification as stored now (another node may have changed it)."""
        record = await self.store.get_otp(otp_id)
        if record is None or record.key_id != key.id:
            return None
        status = current_status(record, self.clock())
        if status is not OtpStatus.PENDING:
            record.status = status.value
            self._forget(otp_id)
        return record

    async def check(self, key: ApiKey, otp_id: str, code: str) -> tuple[OtpRecord, CheckOutcome]:
        """One check, decided by the store in one statement (`OtpStore.check_otp`): memory
        holds no copy of the counters to race with."""
        now = self.clock()
        # The store compares this hash with the stored one. Its timing can say at most how
        # much of two HMAC outputs agree, which without the pepper says nothing of the code.
        code_hash = self.hasher.hash(otp_id, code)
        change = await self.store.check_otp(otp_id, key_id=key.id, code_hash=code_hash, now=now)
        if change is None:
            raise OtpRefusal("not_found", "id", "no such verification", 404)
        self.stats.checks += 1
        outcome = CheckOutcome.of(change, now)
        if outcome.changed and outcome.status is not OtpStatus.APPROVED:
            self.stats.wrong_codes += 1
            if outcome.status is OtpStatus.MAX_ATTEMPTS_REACHED:
                self.stats.attempts_exhausted += 1
        if outcome.status is not OtpStatus.PENDING:
            self._forget(otp_id)
            if outcome.status is OtpStatus.APPROVED and outcome.changed:
                self.stats.approved += 1
        return change.record, outcome

    async def cancel(self, key: ApiKey, otp_id: str) -> OtpRecord:
        now = self.clock()
        change = await self.store.cancel_otp(otp_id, key_id=key.id, now=now)
        if change is None:
            raise OtpRefusal("not_found", "id", "no such verification", 404)
        self._forget(otp_id)
        if not change.changed:
            status = current_status(change.record, now).value
            raise OtpRefusal(
                status,
                "id",
                f"the verification is {status.replace('_', ' ')}; only a pending one "
                "can be canceled",
                409,
                otp_status=status,
            )
        return change.record

    def message_status_changed(self, message: Message, change: StatusChange) -> None:
        """Status listener: a finished OTP message's text (the code) is wiped from the store."""
        if self.redactor is None or message.kind is not MessageKind.OTP:
            return
        if not is_final(message.status):
            return
        task = asyncio.ensure_future(self.redactor.redact_message(message.id))
        self._redactions.add(task)
        task.add_done_callback(self._redaction_done)

    def _redaction_done(self, task: asyncio.Task[None]) -> None:
        self._redactions.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("could not wipe an OTP message's text: %s", task.exception())

    def sweep(self) -> None:
        """Forget expired plaintexts and stale counters (called periodically)."""
        now = self.clock()
        for otp_id in [i for i, live in self._live.items() if live.expires_at <= now]:
            self._forget(otp_id)
        self.limiter.sweep(now)

    async def _pending_for(self, slot: tuple[str, str], now: float) -> OtpRecord | None:
        """The verification this node sent to (key id, E.164), if the store says it is still
        pending."""
        otp_id = self._active.get(slot)
        if otp_id is None:
            return None
        record = await self.store.get_otp(otp_id)
        if record is None or current_status(record, now) is not OtpStatus.PENDING:
            self._forget(otp_id)
            return None
        return record

    def _forget(self, otp_id: str) -> None:
        live = self._live.pop(otp_id, None)
        if live is not None and live.expires_at <= self.clock():
            self.stats.expired += 1  # its time ran out while this node held its code
        if live is not None and self._active.get(live.slot) == otp_id:
            del self._active[live.slot]


class _Holds:
    """One asyncio lock per key, kept only while someone holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[object, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: object) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (None, 0))
        lock = lock or asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)
