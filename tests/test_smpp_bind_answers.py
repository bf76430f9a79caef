"""What a refused SMPP bind is told: by default nothing that says whether the account exists.

smpplib is the customer over real sockets. A wrong password, an unknown system_id and a bind from
an address the account does not allow are all answered ESME_RBINDFAIL after the same argon2 check
(unknown ids are checked against a dummy hash); the log keeps the reason. `distinct_bind_failures`
gives the spec's ESME_RINVPASWD / ESME_RINVSYSID back.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from smpp.constants import CommandStatus
from tests.test_smpp_server_smpplib import Esme, in_thread
from tests.test_smpp_server_support import (
    PASSWORD,
    Tandem,
    account,
    start_tandem,
    stop_tandem,
)

ACCOUNTS = [account("alice"), account("elsewhere", allowed_networks=["10.0.0.0/8"])]
REFUSED = [("alice", "wrong1"), ("nobody", "wrong2"), ("elsewhere", "wrong3")]


async def bind_status(tandem: Tandem, system_id: str, password: str) -> int:
    esme = Esme(tandem.port)
    try:
        return int(await in_thread(esme.bind, "transmitter", system_id, password))
    finally:
        await in_thread(esme.close)


@pytest.fixture
async def tandem(tmp_path: Path) -> AsyncIterator[Tandem]:
    running = await start_tandem(tmp_path, ACCOUNTS)
    yield running
    await stop_tandem(running)


async def test_wrong_password_unknown_system_id_and_foreign_address_get_one_answer_one_check(
    tandem: Tandem, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tandem.smpp_server")
    statuses = [await bind_status(tandem, system_id, password) for system_id, password in REFUSED]
    assert statuses == [CommandStatus.ESME_RBINDFAIL] * 3
    # Each of them cost one argon2 verification: the unknown id against the dummy hash.
    assert tandem.server.binds.verifier.stats.verified == 3
    assert tandem.server.stats.bind_failures == 3
    log = caplog.text
    for reason in ("wrong password", "unknown system_id", "address not allowed"):
        assert reason in log
    for _, password in REFUSED:
        assert password not in log
    assert await bind_status(tandem, "alice", PASSWORD) == CommandStatus.ESME_ROK


async def test_distinct_bind_failures_keep_the_spec_statuses_for_operators_who_want_them(
    tmp_path: Path,
) -> None:
    tandem = await start_tandem(tmp_path, ACCOUNTS, smpp_server={"distinct_bind_failures": True})
    try:
        assert await bind_status(tandem, "alice", "wrong") == CommandStatus.ESME_RINVPASWD
        assert await bind_status(tandem, "nobody", "wrong") == CommandStatus.ESME_RINVSYSID
        assert await bind_status(tandem, "elsewhere", PASSWORD) == CommandStatus.ESME_RBINDFAIL
        # The unknown id is still checked against the dummy hash; the foreign address is told
        # at once (the distinction is what the operator asked for).
        assert tandem.server.binds.verifier.stats.verified == 2
    finally:
        await stop_tandem(tandem)
