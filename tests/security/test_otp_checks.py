"""OTP limits hold under concurrent checks: hundreds of checks at once, on the node that sent the
code and on nodes that never saw it (a restart, or another daemon on the same store), count at
most `max_checks`, approve at most once, and a cancel or an approval is final.

The verification is sent through a running daemon (real store, its writer process, the SMSC
simulator); "another node" is a new `OtpService` on the same store, with nothing in memory.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from gateway.keys import ApiKey
from gateway.otp import CheckOutcome, OtpRefusal, OtpService, OtpStatus
from gateway.store.base import OtpRecord
from gateway.store.sqlite import SqliteMessageStore
from tests.test_http_harness import Daemon, running_daemon

UK = "+447911123456"
CODE = "482915"
WRONG = [f"{n:06d}" for n in range(100_000, 100_400)]


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    async with running_daemon(
        tmp_path, key_settings={"requests_per_second": 1e6, "messages_per_second": 1e6}
    ) as running:
        yield running


def another_node(daemon: Daemon) -> OtpService:
    """An `OtpService` that never saw the verification: after a restart, or on another node."""
    gateway = daemon.gateway
    return OtpService(
        gateway.config.otp,
        intake=gateway.intake,
        numbers=gateway.numbers,
        store=gateway.message_store,  # type: ignore[arg-type]
        hasher=daemon.api.otp.hasher,
        redactor=gateway.message_store,  # type: ignore[arg-type]
    )


async def api_key(daemon: Daemon) -> ApiKey:
    key = await daemon.api.keys.authenticate(daemon.key.secret)
    assert key is not None
    return key


async def stored(daemon: Daemon, otp_id: str) -> OtpRecord:
    record = await daemon.gateway.message_store.get_otp(otp_id)  # type: ignore[attr-defined]
    assert record is not None
    return record


async def check_all(
    services: Sequence[OtpService], key: ApiKey, otp_id: str, codes: Sequence[str]
) -> list[CheckOutcome | OtpRefusal]:
    """Every code checked at once, spread over the services in turn."""

    async def one(service: OtpService, code: str) -> CheckOutcome | OtpRefusal:
        try:
            return (await service.check(key, otp_id, code))[1]
        except OtpRefusal as refusal:
            return refusal

    return await asyncio.gather(
        *(one(services[i % len(services)], code) for i, code in enumerate(codes))
    )


def counted(outcomes: Sequence[Any]) -> list[CheckOutcome]:
    """The checks that used an attempt (the outcome says it changed the verification)."""
    return [o for o in outcomes if isinstance(o, CheckOutcome) and o.changed]


def approvals(outcomes: Sequence[Any]) -> int:
    return sum(o.status is OtpStatus.APPROVED for o in counted(outcomes))


@pytest.mark.parametrize("nodes", [0, 1, 4], ids=["sender", "restarted", "four-nodes"])
async def test_hundreds_of_concurrent_wrong_checks_count_at_most_max_checks(
    daemon: Daemon, nodes: int
) -> None:
    key = await api_key(daemon)
    sent = await daemon.api.otp.send(key, to=UK, code=CODE)
    services = [another_node(daemon) for _ in range(nodes)] or [daemon.api.otp]

    outcomes = await check_all(services, key, sent.record.id, WRONG[:300])

    assert len(counted(outcomes)) == 5  # [otp] max_checks
    assert sum(o.status is OtpStatus.PENDING for o in counted(outcomes)) == 4
    assert sorted(o.attempts_left for o in counted(outcomes)) == [0, 1, 2, 3, 4]
    record = await stored(daemon, sent.record.id)
    assert (record.status, record.checks) == ("max_attempts_reached", 5)
    # The right code is too late now, on any node.
    late = await check_all([*services, another_node(daemon)], key, sent.record.id, [CODE] * 10)
    assert counted(late) == []
    assert {o.status for o in late} == {OtpStatus.MAX_ATTEMPTS_REACHED}  # type: ignore[union-attr]


@pytest.mark.parametrize("nodes", [0, 1, 4], ids=["sender", "restarted", "four-nodes"])
async def test_the_right_code_among_concurrent_wrong_ones_approves_once(
    daemon: Daemon, nodes: int
) -> None:
    key = await api_key(daemon)
    sent = await daemon.api.otp.send(key, to=UK, code=CODE)
    services = [another_node(daemon) for _ in range(nodes)] or [daemon.api.otp]
    codes = [CODE] * 40 + WRONG[:160]
    random.Random(19).shuffle(codes)

    outcomes = await check_all(services, key, sent.record.id, codes)

    assert approvals(outcomes) <= 1
    assert len(counted(outcomes)) <= 5
    record = await stored(daemon, sent.record.id)
    assert record.checks <= 5 and record.status in ("approved", "max_attempts_reached")
    assert (record.status == "approved") == (approvals(outcomes) == 1)
    again = await check_all([*services, another_node(daemon)], key, sent.record.id, [CODE] * 20)
    assert approvals(again) == 0 and counted(again) == []
    assert (await stored(daemon, sent.record.id)).status == record.status


async def test_an_approved_code_cannot_be_approved_again_after_a_resend(daemon: Daemon) -> None:
    """The node that sent the code still remembers it pending while another node approves it;
    its re-send must not bring the verification back to pending."""
    key = await api_key(daemon)
    sender = daemon.api.otp
    sent = await sender.send(key, to=UK, code=CODE)
    elsewhere = another_node(daemon)
    _, first = await elsewhere.check(key, sent.record.id, CODE)
    assert (first.status, first.changed) == (OtpStatus.APPROVED, True)

    await asyncio.gather(*(sender.send(key, to=UK) for _ in range(3)))

    outcomes = await check_all([sender, elsewhere], key, sent.record.id, [CODE] * 50)
    assert approvals(outcomes) == 0
    record = await stored(daemon, sent.record.id)
    assert (record.status, record.checks) == ("approved", 1)


@pytest.mark.parametrize("nodes", [0, 1, 4], ids=["sender", "restarted", "four-nodes"])
async def test_a_cancel_raced_by_wrong_checks_is_final(tmp_path: Path, nodes: int) -> None:
    async with running_daemon(tmp_path, otp={"max_checks": 100}) as daemon:
        key = await api_key(daemon)
        sent = await daemon.api.otp.send(key, to=UK, code=CODE)
        services = [another_node(daemon) for _ in range(nodes)] or [daemon.api.otp]
        otp_id = sent.record.id

        checks = check_all(services, key, otp_id, WRONG[:40])
        canceled, outcomes = await asyncio.gather(services[-1].cancel(key, otp_id), checks)

        assert canceled.status == "canceled"
        assert len(counted(outcomes)) < 40  # some checks came after the cancel
        after = await check_all([*services, another_node(daemon)], key, otp_id, [CODE] * 20)
        assert counted(after) == []
        assert {o.status for o in after} == {OtpStatus.CANCELED}  # type: ignore[union-attr]
        assert (await stored(daemon, otp_id)).status == "canceled"
        with pytest.raises(OtpRefusal) as again:
            await another_node(daemon).cancel(key, otp_id)
        assert again.value.http_status == 409


async def test_hundreds_of_concurrent_http_checks_count_at_most_max_checks(
    daemon: Daemon,
) -> None:
    _, otp, _ = await daemon.call("POST", "/v1/otp", {"to": UK, "code": CODE})
    path = f"/v1/otp/{otp['id']}/check"
    codes = [CODE] * 20 + WRONG[:280]
    random.Random(7).shuffle(codes)

    answers = await asyncio.gather(*(daemon.call("POST", path, {"code": c}) for c in codes))

    approved = [a for a in answers if a[0] == 200 and a[1]["status"] == "approved"]
    pending = [a for a in answers if a[0] == 200 and a[1]["status"] == "pending"]
    assert len(approved) <= 1 and len(approved) + len(pending) <= 5
    record = await stored(daemon, otp["id"])
    assert record.checks <= 5 and record.status != "pending"
    _, view, _ = await daemon.call("GET", f"/v1/otp/{otp['id']}")
    assert view["status"] == record.status


async def test_two_stores_on_one_file_count_at_most_max_checks(tmp_path: Path) -> None:
    """Two writers on one database (two daemons sharing it): still one decision per check."""
    stores = [SqliteMessageStore(tmp_path / "tandem.db") for _ in range(2)]
    for store in stores:
        await store.open()
    try:
        record = OtpRecord("otp_1", "key_1", UK, "pending", "right", 6, 1.0, 1e10, 5)
        await stores[0].create_otp(record)
        hashes = ["right"] * 20 + [f"wrong{n}" for n in range(280)]
        random.Random(3).shuffle(hashes)
        changes = await asyncio.gather(
            *(
                stores[i % 2].check_otp("otp_1", key_id="key_1", code_hash=h, now=10.0)
                for i, h in enumerate(hashes)
            )
        )
        used = [c for c in changes if c is not None and c.changed]
        assert len(used) <= 5 and sum(c.record.status == "approved" for c in used) <= 1
        final = await stores[1].get_otp("otp_1")
        assert final is not None and final.checks == len(used)
        assert final.status in ("approved", "max_attempts_reached")
    finally:
        for store in stores:
            await store.close()
