"""Bind checks under attack: the argon2 queue is bounded, failures are counted per account as
well as per address, and a credential verified recently skips the queue (and any ban).

The server tests use smpplib as the customer over real sockets on 127.0.0.1, so every client
shares one address: exactly the case of a customer behind the same NAT as an attacker.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.accounts import BindGuard, hash_password
from gateway.smpp_binds import CredentialCache, PasswordVerifier, VerifierBusy
from smpp.constants import CommandStatus
from tests.test_smpp_server_smpplib import Esme, in_thread
from tests.test_smpp_server_support import (
    PASSWORD,
    PASSWORD_HASH,
    Tandem,
    account,
    start_tandem,
    stop_tandem,
)
from tests.waiting import wait_for


async def bind_status(tandem: Tandem, system_id: str, password: str) -> int:
    esme = Esme(tandem.port)
    try:
        return int(await in_thread(esme.bind, "transmitter", system_id, password))
    finally:
        await in_thread(esme.close)


@pytest.fixture
async def tandem(tmp_path: Path) -> AsyncIterator[Tandem]:
    running = await start_tandem(tmp_path, [account("alice"), account("bob")])
    yield running
    await stop_tandem(running)


# --- the verification queue ---------------------------------------------------------------------


async def test_verifications_beyond_the_bound_are_refused_at_once_not_queued() -> None:
    release = threading.Event()
    started: list[str] = []

    def slow_verify(password_hash: str, password: str) -> bool:
        started.append(password)
        release.wait(10)
        return password == "good"

    verifier = PasswordVerifier(threads=1, max_pending=2, verify=slow_verify)
    try:
        first = asyncio.ensure_future(verifier.verify("$argon2id$x", "good"))
        second = asyncio.ensure_future(verifier.verify("$argon2id$x", "bad"))
        await wait_for(lambda: verifier.pending == 2, what="two checks pending")
        with pytest.raises(VerifierBusy):
            await verifier.verify("$argon2id$x", "third")
        assert verifier.stats.refused_busy == 1
        release.set()
        assert await first is True
        assert await second is False
        assert "third" not in started  # refused before it reached a thread
        assert verifier.pending == 0
    finally:
        release.set()
        verifier.shutdown()


async def test_a_check_that_would_wait_past_its_budget_is_refused_at_once() -> None:
    release = threading.Event()

    def slow_verify(password_hash: str, password: str) -> bool:
        release.wait(10)
        return False

    # One check takes about a second here, one thread: a second check would wait two.
    verifier = PasswordVerifier(
        threads=1, wait_budget=1.5, seconds_per_check=1.0, verify=slow_verify
    )
    try:
        first = asyncio.ensure_future(verifier.verify(None, "x", "192.0.2.1"))
        await wait_for(lambda: verifier.pending == 1, what="one check pending")
        assert verifier.expected_wait() == 2.0
        with pytest.raises(VerifierBusy):
            await verifier.verify(None, "x", "198.51.100.7")
        release.set()
        assert await first is False
        assert verifier.stats.refused_busy == 1
    finally:
        release.set()
        verifier.shutdown()


async def test_one_client_address_cannot_fill_the_queue_alone() -> None:
    release = threading.Event()

    def slow_verify(password_hash: str, password: str) -> bool:
        release.wait(10)
        return False

    verifier = PasswordVerifier(
        threads=1, max_pending=10, max_pending_per_client=2, verify=slow_verify
    )
    try:
        mine = [asyncio.ensure_future(verifier.verify(None, "x", "192.0.2.1")) for _ in range(2)]
        await wait_for(lambda: verifier.pending == 2, what="two checks pending")
        with pytest.raises(VerifierBusy):
            await verifier.verify(None, "x", "192.0.2.1")
        other = asyncio.ensure_future(verifier.verify(None, "x", "198.51.100.7"))
        await wait_for(lambda: verifier.pending == 3, what="another address's check queued")
        release.set()
        assert await asyncio.gather(*mine, other) == [False, False, False]
        assert verifier.stats.refused_busy == 1
    finally:
        release.set()
        verifier.shutdown()


async def test_a_bind_beyond_the_full_queue_is_refused_promptly_and_counted(
    tandem: Tandem,
) -> None:
    tandem.server.binds.verifier.max_pending = 0  # as full as a flood leaves it
    assert await bind_status(tandem, "alice", PASSWORD) == CommandStatus.ESME_RBINDFAIL
    assert tandem.server.stats.bind_refused_busy == 1
    assert tandem.server.binds.verifier.stats.verified == 0
    # Not a credential failure: nothing counted against the address or the account.
    assert tandem.server.guard.stats.failures == 0


async def test_a_credential_verified_recently_binds_without_the_queue(tandem: Tandem) -> None:
    assert await bind_status(tandem, "alice", PASSWORD) == CommandStatus.ESME_ROK
    assert tandem.server.binds.verifier.stats.verified == 1
    tandem.server.binds.verifier.max_pending = 0  # the queue is full of someone's flood
    assert await bind_status(tandem, "alice", PASSWORD) == CommandStatus.ESME_ROK
    assert tandem.server.stats.binds_cached == 1
    assert tandem.server.binds.verifier.stats.verified == 1  # no second argon2
    # Only that credential: a wrong password for the same account still needs the queue.
    assert await bind_status(tandem, "alice", "wrong") == CommandStatus.ESME_RBINDFAIL
    assert tandem.server.stats.bind_refused_busy == 1


# --- failures per account and per address -------------------------------------------------------


async def test_a_client_sharing_an_attackers_address_still_binds_to_its_own_account(
    tandem: Tandem,
) -> None:
    tandem.server.guard = BindGuard(free_failures=0, base_delay=0.01, ban_after=3)
    for _ in range(3):  # someone at 127.0.0.1 guessing alice's password
        assert await bind_status(tandem, "alice", "guess") == CommandStatus.ESME_RBINDFAIL
    assert tandem.server.guard.stats.bans == 1
    # alice is refused from this address even with the right password: it is being guessed.
    assert await bind_status(tandem, "alice", PASSWORD) == CommandStatus.ESME_RBINDFAIL
    assert tandem.server.stats.bind_refused_banned == 1
    # bob, behind the same address, binds as before.
    assert await bind_status(tandem, "bob", PASSWORD) == CommandStatus.ESME_ROK


async def test_an_address_spraying_accounts_is_banned_but_a_recent_credential_gets_through(
    tandem: Tandem,
) -> None:
    assert await bind_status(tandem, "alice", PASSWORD) == CommandStatus.ESME_ROK  # verified
    tandem.server.guard = BindGuard(
        free_failures=0, base_delay=0.01, address_free_failures=0, address_ban_after=3
    )
    for name in ("a1", "a2", "a3"):
        assert await bind_status(tandem, name, "x") == CommandStatus.ESME_RBINDFAIL
    assert await bind_status(tandem, "bob", PASSWORD) == CommandStatus.ESME_RBINDFAIL  # banned
    assert await bind_status(tandem, "alice", PASSWORD) == CommandStatus.ESME_ROK  # cached


def test_failures_against_one_account_from_many_addresses_slow_it_down_but_never_lock_it() -> None:
    guard = BindGuard(account_free_failures=2, base_delay=1.0, max_delay=4.0, ban_after=3)
    delays = [guard.failed(f"198.51.100.{n}", "alice", float(n)) for n in range(5)]
    assert delays == [0.0, 0.0, 1.0, 2.0, 4.0]  # one failure per address: only the account
    assert not any(guard.banned(f"198.51.100.{n}", "alice", 5.0) for n in range(10))
    assert guard.failed("198.51.100.99", "bob", 5.0) == 0.0  # other accounts: untouched


def test_a_successful_bind_does_not_wipe_the_failures_of_its_address_or_account() -> None:
    guard = BindGuard(free_failures=10, address_free_failures=2, account_free_failures=10)
    for n in range(2):
        guard.failed("192.0.2.1", f"victim{n}", float(n))
    guard.succeeded("192.0.2.1", "attacker")  # the attacker's own account binds fine
    assert guard.failed("192.0.2.1", "victim3", 3.0) > 0.0


# --- the cache ------------------------------------------------------------------------------------


def test_the_credential_cache_keeps_a_keyed_hash_never_the_password() -> None:
    cache = CredentialCache(ttl=60.0)
    other = CredentialCache(ttl=60.0)
    cache.remember("alice", PASSWORD, PASSWORD_HASH, 0.0)
    other.remember("alice", PASSWORD, PASSWORD_HASH, 0.0)
    assert cache.holds("alice", PASSWORD, PASSWORD_HASH, 1.0)
    assert not cache.holds("alice", "wrong", PASSWORD_HASH, 1.0)
    assert not cache.holds("bob", PASSWORD, PASSWORD_HASH, 1.0)
    kept = repr(cache._entries).encode() + b"".join(d for d, _ in cache._entries.values())
    assert PASSWORD.encode() not in kept
    assert cache._entries["alice"][0] != other._entries["alice"][0]  # keyed per process
    assert not cache.holds("alice", PASSWORD, PASSWORD_HASH, 61.0)  # only recently verified
    assert len(cache) == 0


def test_a_password_change_misses_the_cache() -> None:
    cache = CredentialCache()
    cache.remember("alice", PASSWORD, PASSWORD_HASH, 0.0)
    assert not cache.holds("alice", PASSWORD, hash_password(PASSWORD), 1.0)
