"""Failed authentications per client address: unknown bearer values cannot be tried for free.

Owns `FailedAuthLimits`: one token bucket per client address (an IPv6 client counts by its /64,
which one host usually holds whole), taken from by every bearer value the key store did not
know. An address whose bucket is empty is answered 429 with `Retry-After` before its next
value costs a SHA-256 and a store read. Keys the key ring already knows pass without it (also
when their cache entry is due a re-read), so a customer behind the same address as an attacker
keeps working once its key has been seen.

Memory is bounded: at most `max_addresses` buckets, the least recently used one is dropped
first (forgetting an address only forgives it early). Sans-IO: callers pass `now`.

Never does: look at the bearer value itself, or log it.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from dataclasses import dataclass

from gateway.http.limits import TokenBucket

IPV6_PREFIX = 64


@dataclass(slots=True)
class FailedAuthStats:
    failures: int = 0  # bearer values the store did not know
    refused: int = 0  # answered 429 without a lookup
    addresses: int = 0  # buckets held now
    dropped: int = 0  # buckets dropped at max_addresses


def client_group(address: str | None) -> str:
    """The key an address is counted under: itself for IPv4, its /64 for IPv6."""
    if not address:
        return ""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_PREFIX), strict=False))
    return str(ip)


class FailedAuthLimits:
    def __init__(
        self,
        per_second: float,
        burst: int,
        *,
        max_addresses: int = 10_000,
        stats: FailedAuthStats | None = None,
    ) -> None:
        self.per_second = per_second
        self.burst = burst
        self.max_addresses = max_addresses
        self.stats = stats if stats is not None else FailedAuthStats()
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def wait(self, address: str | None, now: float) -> float:
        """0.0 when `address` may have a bearer value looked up, else the seconds to wait."""
        bucket = self._buckets.get(client_group(address))
        if bucket is None:
            return 0.0
        elapsed = max(0.0, now - bucket.updated_at)
        tokens = min(bucket.capacity, bucket.tokens + elapsed * bucket.rate)
        if tokens >= 1.0 - 1e-9:
            return 0.0
        self.stats.refused += 1
        return (1.0 - tokens) / bucket.rate

    def failed(self, address: str | None, now: float) -> None:
        """A bearer value from `address` was unknown (or revoked)."""
        self.stats.failures += 1
        group = client_group(address)
        bucket = self._buckets.get(group)
        if bucket is None:
            bucket = TokenBucket(rate=self.per_second, capacity=float(self.burst))
            self._buckets[group] = bucket
            while len(self._buckets) > self.max_addresses:
                self._buckets.popitem(last=False)
                self.stats.dropped += 1
        else:
            self._buckets.move_to_end(group)
        bucket.take(1, now)
        self.stats.addresses = len(self._buckets)
