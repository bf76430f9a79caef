"""Per-key rate limits of the HTTP API: requests per second and messages per second.

Owns `TokenBucket` and `KeyLimits` (one pair of buckets per API key). Sans-IO: callers pass
`now` (monotonic seconds) and get back how long to wait, which becomes `Retry-After`.

Never does: sleep or queue requests. Over the limit, a request is refused (429) at once.

A bucket holds up to one second of its rate (at least one token). A request that needs more
tokens than the bucket can ever hold (a batch of 1,000 recipients on a 50 messages/s key) is let
through when the bucket is full and leaves it in debt, so batches pay for themselves by making
the next requests wait instead of being impossible.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class TokenBucket:
    rate: float  # tokens per second
    capacity: float
    tokens: float = -1.0  # -1: full on first use
    updated_at: float = 0.0

    @classmethod
    def per_second(cls, rate: float) -> TokenBucket:
        return cls(rate=rate, capacity=max(1.0, rate))

    def take(self, amount: float, now: float) -> float:
        """Take `amount` tokens: 0.0 when taken, else the seconds until it would succeed."""
        if self.tokens < 0 and self.updated_at == 0.0:
            self.tokens = self.capacity
        else:
            elapsed = max(0.0, now - self.updated_at)
            self.tokens = min(self.capacity, self.tokens + elapsed * self.rate)
        self.updated_at = now
        needed = min(amount, self.capacity)
        if self.tokens + 1e-9 >= needed:
            self.tokens -= amount
            return 0.0
        return (needed - self.tokens) / self.rate


@dataclass(slots=True)
class KeyLimits:
    """The buckets of every key, created on first use with the key's rates."""

    _buckets: dict[str, tuple[TokenBucket, TokenBucket]] = field(default_factory=dict)

    def _pair(
        self, key_id: str, requests_per_second: float, messages_per_second: float
    ) -> tuple[TokenBucket, TokenBucket]:
        pair = self._buckets.get(key_id)
        if (
            pair is None
            or pair[0].rate != requests_per_second
            or pair[1].rate != messages_per_second
        ):
            pair = (
                TokenBucket.per_second(requests_per_second),
                TokenBucket.per_second(messages_per_second),
            )
            self._buckets[key_id] = pair
        return pair

    def request(self, key_id: str, rps: float, mps: float, now: float) -> float:
        """One request: 0.0 or the seconds to wait."""
        return self._pair(key_id, rps, mps)[0].take(1, now)

    def messages(self, key_id: str, rps: float, mps: float, count: int, now: float) -> float:
        """`count` messages about to be sent: 0.0 or the seconds to wait."""
        return self._pair(key_id, rps, mps)[1].take(count, now)
