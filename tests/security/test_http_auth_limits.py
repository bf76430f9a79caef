"""Unknown bearer values are limited per client address: past a burst, 429 with Retry-After and
no key lookup; a key the daemon knows keeps working from the same address; memory is bounded."""

from __future__ import annotations

from pathlib import Path

from gateway.http.auth_limits import FailedAuthLimits, client_group
from gateway.http.client_address import ClientAddresses
from tests.test_http_harness import Daemon, running_daemon

NOW = 1000.0


async def test_unknown_keys_from_one_address_get_429_after_the_burst(tmp_path: Path) -> None:
    async with running_daemon(
        tmp_path, http={"auth_failures_burst": 5, "auth_failures_per_second": 0.5}
    ) as daemon:
        # A real customer on the same address, its key already known to the daemon.
        status, _, _ = await daemon.call("GET", "/v1/messages/00000000000000000000")
        assert status == 404
        answers = []
        for attempt in range(8):
            status, body, headers = await daemon.call(
                "GET", "/v1/messages/00000000000000000000", key=f"tdm_guess{attempt}"
            )
            answers.append((status, body["code"], headers.get("Retry-After")))
        assert answers[:5] == [(401, "invalid_key", None)] * 5
        for status, code, retry_after in answers[5:]:
            assert (status, code) == (429, "rate_limited")
            assert retry_after is not None and int(retry_after) >= 1
        stats = daemon.api.stats.failed_auth
        assert stats.failures == 5  # the refused ones were never looked up
        assert stats.refused == 3
        status, _, _ = await daemon.call("GET", "/v1/messages/00000000000000000000")
        assert status == 404  # the known key still passes


def test_the_bucket_refills_at_the_configured_rate() -> None:
    limits = FailedAuthLimits(per_second=0.5, burst=2)
    limits.failed("192.0.2.1", NOW)
    limits.failed("192.0.2.1", NOW)
    assert limits.wait("192.0.2.1", NOW) == 2.0
    assert limits.wait("192.0.2.1", NOW + 1.0) == 1.0
    assert limits.wait("192.0.2.1", NOW + 2.0) == 0.0
    assert limits.wait("192.0.2.2", NOW) == 0.0  # another address is not held back


def test_an_ipv6_client_counts_by_its_64_and_a_mapped_ipv4_as_itself() -> None:
    assert client_group("2001:db8:1:2::1") == client_group("2001:db8:1:2:ffff::9")
    assert client_group("2001:db8:1:2::1") != client_group("2001:db8:1:3::1")
    assert client_group("::ffff:192.0.2.7") == "192.0.2.7"
    limits = FailedAuthLimits(per_second=1.0, burst=1)
    limits.failed("2001:db8:1:2::1", NOW)
    assert limits.wait("2001:db8:1:2::abcd", NOW) > 0


def test_memory_is_bounded_by_max_addresses() -> None:
    limits = FailedAuthLimits(per_second=1.0, burst=3, max_addresses=100)
    for n in range(10_000):
        limits.failed(f"10.{n // 65536}.{n // 256 % 256}.{n % 256}", NOW)
    assert limits.stats.addresses == 100
    assert limits.stats.dropped == 9_900
    assert limits.stats.failures == 10_000


async def guesses(daemon: Daemon, forwarded_for: str, count: int) -> list[int]:
    statuses = []
    for attempt in range(count):
        status, _, _ = await daemon.call(
            "GET",
            "/v1/messages/00000000000000000000",
            key=f"tdm_guess{attempt}",
            headers={"X-Forwarded-For": forwarded_for},
        )
        statuses.append(status)
    return statuses


async def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_limit(
    tmp_path: Path,
) -> None:
    async with running_daemon(
        tmp_path,
        http={
            "auth_failures_burst": 3,
            "auth_failures_per_second": 0.1,
            "trusted_proxies": ["127.0.0.1"],
        },
    ) as daemon:
        assert await guesses(daemon, "198.51.100.1", 4) == [401, 401, 401, 429]
        assert await guesses(daemon, "198.51.100.2", 1) == [401]  # another client: looked up


async def test_x_forwarded_for_from_an_untrusted_peer_is_ignored(tmp_path: Path) -> None:
    async with running_daemon(
        tmp_path, http={"auth_failures_burst": 3, "auth_failures_per_second": 0.1}
    ) as daemon:
        assert await guesses(daemon, "198.51.100.1", 3) == [401, 401, 401]
        assert await guesses(daemon, "198.51.100.2", 1) == [429]  # same peer, whatever it says


def test_the_client_is_the_rightmost_forwarded_address_that_is_not_a_trusted_proxy() -> None:
    addresses = ClientAddresses(["127.0.0.1", "10.0.0.0/8"])
    chain = "6.6.6.6, 198.51.100.7, 10.0.0.2"  # the first one was written by the client
    assert addresses.of("127.0.0.1", chain) == "198.51.100.7"
    assert addresses.of("192.0.2.1", chain) == "192.0.2.1"  # not from a trusted proxy
    assert addresses.of("127.0.0.1", "198.51.100.7, garbage") == "127.0.0.1"
    assert addresses.of("127.0.0.1", None) == "127.0.0.1"
    assert ClientAddresses().of("127.0.0.1", chain) == "127.0.0.1"
