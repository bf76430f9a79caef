"""HTTP status callbacks: the JSON body, its signature, and when to retry.

Owns `callback_body`, `sign`, `verify`, `SIGNATURE_HEADER` and `RetrySchedule`. Must never send a
request or read a clock: the gateway posts the body with the signature header and asks
`RetrySchedule.next_attempt` when to try again.

Signature
---------
Header `X-Tandem-Signature: t=<unix seconds>,v1=<hex>` where hex is
HMAC-SHA256(secret, "<t>." + body). The timestamp is inside the signed bytes, so a captured
request cannot be replayed later with a fresh `t`; receivers reject a `t` outside their tolerance.
Several `v1=` entries may appear (one per secret while a secret is being rotated).
"""

from __future__ import annotations

import hmac
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from json.encoder import encode_basestring

from dlr.status import MessageStatus, is_final

SIGNATURE_HEADER = "X-Tandem-Signature"
SIGNATURE_SCHEME = "v1"
DEFAULT_TOLERANCE_SECONDS = 300.0


_second_text: tuple[int, str] = (-1, "")  # the last whole second formatted, and its text


def _iso(unix_time: float) -> str:
    """`datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")`, reusing the text of
    the last whole second: receipts come in bursts, and formatting a datetime cost more than
    the rest of the body."""
    global _second_text
    # Round to microseconds as fromtimestamp does (half to even on the fraction), then truncate
    # to milliseconds as isoformat does.
    fraction, whole = math.modf(unix_time)
    micros = round(fraction * 1e6)
    second = int(whole)
    if micros >= 1_000_000:
        second, micros = second + 1, micros - 1_000_000
    elif micros < 0:
        second, micros = second - 1, micros + 1_000_000
    cached_second, text = _second_text
    if cached_second != second:
        text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _second_text = (second, text)
    return f"{text}.{micros // 1000:03d}+00:00"


@dataclass(slots=True, frozen=True)
class CallbackSegment:
    index: int
    status: str
    carrier_id: str | None = None
    error: str | None = None


def callback_body(
    *,
    message_id: str,
    status: MessageStatus,
    status_at: float,
    to: str | None = None,
    reference: str | None = None,
    error: str | None = None,
    network_error: str | None = None,
    segments: Sequence[CallbackSegment] = (),
) -> bytes:
    """The JSON posted to the customer's callback URL (UTF-8, compact, keys sorted).

    `status_at` is Unix time; it is sent as ISO 8601 UTC. `reference` is the customer's own
    reference from the submit request.
    """
    # Written out rather than json.dumps(sort_keys=True): the same bytes (keys in sorted order,
    # strings escaped by the json module's own encoder) at a quarter of the cost.
    out = []
    if error is not None:
        out.append('"error":' + encode_basestring(error))
    out.append('"final":true' if is_final(status) else '"final":false')
    out.append('"message_id":' + encode_basestring(message_id))
    if network_error is not None:
        out.append('"network_error":' + encode_basestring(network_error))
    if reference is not None:
        out.append('"reference":' + encode_basestring(reference))
    if segments:
        out.append('"segments":[' + ",".join(map(_segment_json, segments)) + "]")
    out.append('"status":' + encode_basestring(status.value))
    out.append('"status_at":"' + _iso(status_at) + '"')
    if to is not None:
        out.append('"to":' + encode_basestring(to))
    return ("{" + ",".join(out) + "}").encode()


def _segment_json(segment: CallbackSegment) -> str:
    out = []
    if segment.carrier_id is not None:
        out.append('"carrier_id":' + encode_basestring(segment.carrier_id))
    if segment.error is not None:
        out.append('"error":' + encode_basestring(segment.error))
    out.append('"index":' + int.__repr__(segment.index))
    out.append('"status":' + encode_basestring(segment.status))
    return "{" + ",".join(out) + "}"


def _key(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def _digest(secret: str | bytes, body: bytes, timestamp: int) -> str:
    signed = b"%d.%b" % (timestamp, body)
    # hmac.digest with the digest's name takes OpenSSL's one-shot path (no HMAC object).
    return hmac.digest(_key(secret), signed, "sha256").hex()


def sign(secret: str | bytes, body: bytes, timestamp: int) -> str:
    """The `X-Tandem-Signature` header value for `body` sent at `timestamp` (Unix seconds)."""
    return f"t={timestamp},{SIGNATURE_SCHEME}={_digest(secret, body, timestamp)}"


def verify(
    secrets: str | bytes | Iterable[str | bytes],
    body: bytes,
    header: str,
    now: float,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
) -> bool:
    """True when `header` signs `body` with one of `secrets` and its `t` is within tolerance."""
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isascii() and value.isdigit():
            timestamp = int(value)
        elif name == SIGNATURE_SCHEME:
            signatures.append(value)
    if timestamp is None or not signatures or abs(now - timestamp) > tolerance:
        return False
    keys = [secrets] if isinstance(secrets, str | bytes) else list(secrets)
    expected = [_digest(secret, body, timestamp) for secret in keys]
    # compare_digest on every pair: no early exit that would leak which one matched.
    matched = False
    for candidate in signatures:
        for digest in expected:
            matched |= hmac.compare_digest(candidate.encode(), digest.encode())
    return matched


def is_retryable(http_status: int | None) -> bool:
    """Retry on no answer (None), 408, 425, 429 and 5xx; any other answer is final."""
    if http_status is None:
        return True
    return http_status in (408, 425, 429) or 500 <= http_status <= 599


@dataclass(slots=True, frozen=True)
class RetrySchedule:
    """Exponential backoff: first retry after `initial_delay`, multiplied by `factor` each time,
    at most `max_delay` apart, and no attempt later than `give_up_after` after the first one.
    """

    initial_delay: float = 5.0
    factor: float = 2.0
    max_delay: float = 1800.0
    give_up_after: float = 86_400.0

    def delay(self, attempt: int) -> float:
        """Delay after failed attempt number `attempt` (1 = the first attempt)."""
        if attempt < 1:
            raise ValueError("attempt counts from 1")
        # Cap the exponent first: factor ** attempt overflows a float long before max_delay.
        exponent = min(attempt - 1, 64)
        return min(self.initial_delay * self.factor**exponent, self.max_delay)

    def next_attempt(self, attempt: int, first_attempt_at: float, now: float) -> float | None:
        """When to make attempt `attempt + 1` after attempt `attempt` failed at `now`; None
        to give up."""
        at = now + self.delay(attempt)
        if at - first_attempt_at > self.give_up_after:
            return None
        return at
