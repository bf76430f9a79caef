"""`Idempotency-Key` for POSTs that send: a retried request gets the first answer, nothing new.

Owns `Idempotency`, which wraps a handler's work: for the same API key and idempotency key within
`[http] idempotency_seconds` (24 h), the same request (method, path and JSON body, compared after
parsing so key order and spacing do not matter) returns the stored first answer with
`Idempotent-Replayed: true`; a different request is refused with 422 `idempotency_key_reused`;
a request arriving while the first is still being handled waits for its answer (or gets 409
`idempotency_key_in_use` when its body differs).

Only successful answers (2xx) are kept: a refused request sent nothing, so repeating it is safe
and may succeed later (after a rate limit, say). The answer is stored after the message is
accepted; a crash between the two can let one retry send again (at-least-once).

Never does: authentication, parsing, sending, purging (answers past `idempotency_seconds` leave
the store with `[retention]`, gateway.store.retention).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gateway.http.problems import Problem
from gateway.store.base import IdempotencyRecord, IdempotencyStore

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255


@dataclass(slots=True, frozen=True)
class Answer:
    status: int
    body: bytes
    replayed: bool = False


def fingerprint(method: str, path: str, body: bytes) -> str:
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    except (ValueError, UnicodeDecodeError):
        canonical = body
    return hashlib.sha256(f"{method} {path}\n".encode() + canonical).hexdigest()


class Idempotency:
    def __init__(
        self,
        store: IdempotencyStore,
        *,
        keep_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.keep_seconds = keep_seconds
        self.clock = clock
        self._in_flight: dict[tuple[str, str], tuple[str, asyncio.Future[Answer]]] = {}

    @staticmethod
    def validate_key(value: str) -> None:
        if (
            not value
            or len(value) > MAX_KEY_LENGTH
            or not value.isascii()
            or not value.isprintable()
        ):
            raise Problem(
                400,
                "invalid_idempotency_key",
                f"{HEADER} must be 1 to {MAX_KEY_LENGTH} printable ASCII characters.",
                field=HEADER,
            )

    async def run(
        self,
        key_id: str,
        idempotency_key: str,
        request_fingerprint: str,
        work: Callable[[], Awaitable[Answer]],
    ) -> Answer:
        slot = (key_id, idempotency_key)
        running = self._in_flight.get(slot)
        if running is not None:
            if running[0] != request_fingerprint:
                raise Problem(
                    409,
                    "idempotency_key_in_use",
                    "A different request with this Idempotency-Key is still being handled.",
                    field=HEADER,
                )
            first = await asyncio.shield(running[1])
            return Answer(first.status, first.body, replayed=True)
        # Claim the slot before the first await, so concurrent twins wait for this answer.
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._in_flight[slot] = (request_fingerprint, future)
        try:
            answer = await self._answer(key_id, idempotency_key, request_fingerprint, work)
            future.set_result(answer)
            return answer
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody waits
            raise
        finally:
            del self._in_flight[slot]

    async def _answer(
        self,
        key_id: str,
        idempotency_key: str,
        request_fingerprint: str,
        work: Callable[[], Awaitable[Answer]],
    ) -> Answer:
        now = self.clock()
        stored = await self.store.find_idempotency(
            key_id, idempotency_key, newer_than=now - self.keep_seconds
        )
        if stored is not None:
            if stored.fingerprint != request_fingerprint:
                raise Problem(
                    422,
                    "idempotency_key_reused",
                    "This Idempotency-Key was used for a different request within "
                    f"{self.keep_seconds / 3600:.0f} hours.",
                    field=HEADER,
                )
            return Answer(stored.status, stored.body, replayed=True)
        answer = await work()
        if 200 <= answer.status < 300:
            await self.store.save_idempotency(
                IdempotencyRecord(
                    key_id=key_id,
                    idempotency_key=idempotency_key,
                    fingerprint=request_fingerprint,
                    status=answer.status,
                    body=answer.body,
                    created_at=now,
                )
            )
        return answer
