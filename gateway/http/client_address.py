"""Which address a request comes from, when reverse proxies stand in front of the API.

Owns `ClientAddresses`: with no trusted proxies (the default), a request's client is its TCP
peer and `X-Forwarded-For` is ignored (anyone can write it). With `[http] trusted_proxies`, a
request whose peer is one of them is from the rightmost `X-Forwarded-For` entry that is not a
trusted proxy itself (each proxy appends the address it was reached from, so entries to the left
of that one were written by the client and prove nothing).

Used where the API counts per client (`gateway.http.auth_limits`). Never does: grant anything
by address: the admin paths and the API need their tokens whoever asks.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


class ClientAddresses:
    def __init__(self, trusted_proxies: Iterable[str] = ()) -> None:
        self.trusted: tuple[Network, ...] = tuple(
            ipaddress.ip_network(entry, strict=False) for entry in trusted_proxies
        )

    def _is_trusted(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return any(address in network for network in self.trusted)

    def of(self, peer: str | None, forwarded_for: str | None) -> str | None:
        """The client of a request from TCP peer `peer` with this `X-Forwarded-For` value."""
        if not self.trusted or not forwarded_for or peer is None:
            return peer
        peer_address = _address(peer)
        if peer_address is None or not self._is_trusted(peer_address):
            return peer
        for entry in reversed(forwarded_for.split(",")):
            address = _address(entry)
            if address is None:
                return peer  # a hop we cannot read: count the proxy, not a guess
            if not self._is_trusted(address):
                return str(address)
        return peer
