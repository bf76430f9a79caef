"""Connections to customers' URLs (receipt callbacks, inbound-message webhooks): the one rule for
where they may lead, applied at every connect.

Owns `EgressPolicy` (which addresses and ports a customer URL may reach, built from `[egress]`;
no I/O), `EgressRefused` (a connection the policy forbids), `open_connection` (asyncio: resolve
the name once, keep the addresses the policy allows, connect to one of those addresses and
never to the name again, so a DNS answer that changes between the check and the connect
cannot slip past it; or a CONNECT tunnel through the operator's proxy), `EgressConnector` and
`EgressResolver` (the same rule for clients built on aiohttp)
and `redact_url` (how a customer URL is written to logs and message history).

The rule: loopback, private, link-local, unique-local, multicast and every other non-global
address is refused unless the operator's `allow` list names its network or the URL's host
name; IPv4 addresses embedded in IPv6 (mapped, 6to4, Teredo, NAT64) are judged as IPv4. Only
the ports of `ports` may be named, allowed hosts included. A refusal names the rule ("refused:
private address"), never what was or would have been listening there.

Never does: send requests, follow redirects (callers treat a 3xx as an answer), or read the
configuration file.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
import ssl
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp.abc import AbstractResolver
from aiohttp.connector import Connection
from aiohttp.resolver import DefaultResolver

from gateway.config import DEFAULT_EGRESS_PORTS, EgressConfig, port_range

if TYPE_CHECKING:
    from aiohttp.abc import ResolveResult  # aiohttp 3.10 and later

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# (host, port) -> getaddrinfo entries; the loop's getaddrinfo unless a caller brings its own.
Resolve = Callable[[str, int], Awaitable[list[tuple[Any, ...]]]]
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

PRIVATE_ADDRESS = "private address"
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_PROXY_ANSWER_LIMIT = 16 * 1024


def _port_ranges(entries: Iterable[int | str]) -> tuple[tuple[int, int], ...]:
    return tuple(r for r in (port_range(p) for p in entries) if r is not None)


class EgressRefused(OSError):
    """A connection the egress policy forbids; `str()` is "refused: <rule>" and names no
    answer. An OSError so that clients (aiohttp's connector among them) report it as a failed
    connection; callers that retry connection failures should treat this one as final."""

    def __init__(self, reason: str) -> None:
        super().__init__(errno.EACCES, f"refused: {reason}")
        self.reason = reason

    def __str__(self) -> str:
        return f"refused: {self.reason}"


def is_internal(address: IpAddress) -> bool:
    """Loopback, private, link-local, unique-local, multicast, reserved or otherwise not a
    public unicast address, including IPv4 ones carried inside IPv6."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded: ipaddress.IPv4Address | None = address.ipv4_mapped or address.sixtofour
        if embedded is None and address.teredo is not None:
            embedded = address.teredo[1]
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return is_internal(embedded)
    return address.is_multicast or not address.is_global


def _literal_address(host: str) -> IpAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        pass
    # The legacy IPv4 forms the system resolver also accepts: 2130706433, 127.1, 0x7f.0.0.1.
    if host and all(c in "0123456789abcdefxABCDEFX." for c in host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


@dataclass(frozen=True, slots=True)
class EgressPolicy:
    """Where a customer URL may lead. The default refuses every internal address and allows
    the default ports of `[egress]`."""

    allowed_networks: tuple[IpNetwork, ...] = ()
    allowed_hosts: frozenset[str] = frozenset()
    ports: tuple[tuple[int, int], ...] = _port_ranges(DEFAULT_EGRESS_PORTS)
    proxy: tuple[str, int] | None = None  # (host, port) of the operator's HTTP proxy
    # url_refusal's answers by URL: a customer sends most messages with the same callback URL,
    # and the answer depends on nothing but the URL and this (immutable) policy.
    _refusals: dict[str, str | None] = field(
        default_factory=dict, init=False, compare=False, hash=False, repr=False
    )

    @classmethod
    def from_config(cls, config: EgressConfig) -> EgressPolicy:
        networks: list[IpNetwork] = []
        hosts: set[str] = set()
        for entry in config.allow:
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                hosts.add(_host_key(entry))
        ports = _port_ranges(config.ports)
        proxy = None
        if config.proxy is not None:
            parts = urllib.parse.urlsplit(config.proxy)
            assert parts.hostname is not None  # the config checked it
            proxy = (parts.hostname, parts.port or 80)
        return cls(tuple(networks), frozenset(hosts), ports, proxy)

    def port_refusal(self, port: int) -> str | None:
        if any(low <= port <= high for low, high in self.ports):
            return None
        return f"port {port} not allowed"

    def address_refusal(self, host: str, address: IpAddress) -> str | None:
        """Why `address`, which `host` (the URL's host) resolved to, may not be reached."""
        if not is_internal(address) or _host_key(host) in self.allowed_hosts:
            return None
        if any(address in network for network in self.allowed_networks):
            return None
        return PRIVATE_ADDRESS

    def url_refusal(self, url: str) -> str | None:
        """What can be told from the URL alone (scheme, port, a literal address), e.g. when a
        customer submits it; names are judged when they are resolved, at every connect."""
        try:
            return self._refusals[url]
        except KeyError:
            pass
        refusal = self._url_refusal(url)
        if len(self._refusals) >= 4096:  # many distinct URLs: start over rather than grow
            self._refusals.clear()
        self._refusals[url] = refusal
        return refusal

    def _url_refusal(self, url: str) -> str | None:
        try:
            parts = urllib.parse.urlsplit(url)
            port = parts.port
        except ValueError:
            return "not a valid URL"
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return "not an http(s) URL"
        refusal = self.port_refusal(port or (443 if parts.scheme == "https" else 80))
        if refusal is not None:
            return refusal
        address = _literal_address(parts.hostname)
        if address is not None:
            return self.address_refusal(parts.hostname, address)
        if _host_key(parts.hostname) == "localhost" and "localhost" not in self.allowed_hosts:
            return PRIVATE_ADDRESS
        return None

    def allowed_addresses(self, host: str, infos: Iterable[Any]) -> list[Any]:
        """The getaddrinfo entries (family, type, proto, canonname, sockaddr) the policy allows;
        raises `EgressRefused` when it allows none of them."""
        allowed: list[Any] = []
        refusal = "no address"
        for info in infos:
            address = ipaddress.ip_address(info[4][0].split("%", 1)[0])
            reason = self.address_refusal(host, address)
            if reason is None:
                allowed.append(info)
            else:
                refusal = reason
        if not allowed:
            raise EgressRefused(refusal)
        return allowed


def _host_key(host: str) -> str:
    return host.lower().rstrip(".")


async def open_connection(
    policy: EgressPolicy,
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
    limit: int = 2**16,
    resolve: Resolve | None = None,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A stream to `host:port` that the policy allows (TLS when `ssl_context` is given,
    verified against `host`); raises `EgressRefused`, or OSError when nothing answered.
    The name is resolved once per call and the connection made to a vetted address."""
    refusal = policy.port_refusal(port)
    if refusal is not None:
        raise EgressRefused(refusal)
    if policy.proxy is not None:
        return await _through_proxy(policy, host, port, ssl_context, limit)
    literal = _literal_address(host)
    infos: list[tuple[Any, ...]]
    if literal is not None:  # nothing to resolve (and no executor thread to wait for)
        family = socket.AF_INET6 if literal.version == 6 else socket.AF_INET
        infos = [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (str(literal), port))]
    elif resolve is None:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    else:
        infos = await resolve(host, port)
    last_error: OSError | None = None
    for family, _, proto, _, sockaddr in policy.allowed_addresses(host, infos):
        try:
            return await asyncio.open_connection(
                sockaddr[0],
                port,
                family=family,
                proto=proto,
                ssl=ssl_context,
                server_hostname=host if ssl_context is not None else None,
                limit=limit,
            )
        except OSError as exc:
            last_error = exc
    assert last_error is not None
    raise last_error


async def _through_proxy(
    policy: EgressPolicy,
    host: str,
    port: int,
    ssl_context: ssl.SSLContext | None,
    limit: int,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    # The proxy resolves the name with its own view of DNS and applies the operator's rules;
    # what can be judged here (a literal address) still is.
    refusal = policy.url_refusal(f"http://{host}:{port}/")
    if refusal is not None:
        raise EgressRefused(refusal)
    assert policy.proxy is not None
    reader, writer = await asyncio.open_connection(*policy.proxy, limit=limit)
    try:
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        writer.write(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode("idna"))
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise ConnectionError("the proxy's answer to CONNECT is too long") from None
        if len(head) > _PROXY_ANSWER_LIMIT:
            raise ConnectionError("the proxy's answer to CONNECT is too long")
        status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        code = status_line.split(" ", 2)[1] if status_line.count(" ") >= 1 else ""
        if not code.startswith("2"):
            raise ConnectionError(f"the proxy refused CONNECT: {status_line[:60]}")
        if ssl_context is not None:
            await writer.start_tls(ssl_context, server_hostname=host)
    except BaseException:
        writer.close()
        raise
    return reader, writer


class EgressResolver(AbstractResolver):
    """An aiohttp resolver that answers only addresses the policy allows (raising
    `EgressRefused` otherwise); aiohttp's connector connects to exactly those, so rebinding
    the name after the check reaches nothing new. aiohttp does not ask the resolver about
    literal addresses: use it through `EgressConnector`, which judges those. Not for use with
    an aiohttp proxy: there the proxy resolves."""

    def __init__(self, policy: EgressPolicy, resolver: AbstractResolver | None = None) -> None:
        self.policy = policy
        self._resolver = resolver or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        refusal = self.policy.port_refusal(port)
        if refusal is not None:
            raise EgressRefused(refusal)
        results = await self._resolver.resolve(host, port, family)
        allowed = [
            r
            for r in results
            if self.policy.address_refusal(host, ipaddress.ip_address(r["host"].split("%")[0]))
            is None
        ]
        if not allowed:
            reasons = {
                self.policy.address_refusal(host, ipaddress.ip_address(r["host"].split("%")[0]))
                for r in results
            }
            raise EgressRefused(next(iter(reasons - {None}), None) or "no address")
        return allowed

    async def close(self) -> None:
        await self._resolver.close()


def redact_url(url: str) -> str:
    """`url` as logs and message history may show it: credentials (userinfo) and the values
    of the query replaced by `***`, the fragment dropped; scheme, host, port and path kept so
    the customer can still tell which URL it was."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<invalid URL>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    query = "&".join(
        f"{name}=***" if equals else "***"
        for name, equals, _ in (item.partition("=") for item in parts.query.split("&") if item)
    )
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, ""))


class EgressConnector(aiohttp.TCPConnector):
    """An aiohttp connector held to the policy: names through `EgressResolver`, and the URL
    itself (port, literal address) judged before each connection. Refusals are
    `aiohttp.ClientConnectorError`s whose `os_error` is the `EgressRefused`."""

    def __init__(
        self, policy: EgressPolicy, resolver: AbstractResolver | None = None, **kwargs: Any
    ) -> None:
        super().__init__(resolver=EgressResolver(policy, resolver), **kwargs)
        self.policy = policy

    async def connect(
        self, req: aiohttp.ClientRequest, traces: list[Any], timeout: aiohttp.ClientTimeout
    ) -> Connection:
        refusal = self.policy.url_refusal(str(req.url))
        if refusal is not None:
            raise aiohttp.ClientConnectorError(req.connection_key, EgressRefused(refusal))
        return await super().connect(req, traces, timeout)
