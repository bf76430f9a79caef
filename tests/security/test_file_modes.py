"""No other local user can read the data directory: it is 0700 and every file in it (the
database and its -wal and -shm, the key files) 0600, whatever the umask the daemon started
with; an older install's looser modes are tightened; the systemd unit sets the same."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from gateway.otp import CodeHasher
from gateway.private_files import private_data_dir
from gateway.store.sqlite import SqliteMessageStore
from tests.test_http_harness import running_daemon
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
UK = "+447911123456"


@contextmanager
def umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def modes(data: Path) -> dict[str, int]:
    return {p.name: mode(p) for p in sorted(data.iterdir())}


async def send_and_deliver_an_otp(tmp_path: Path) -> dict[str, int]:
    """Run a daemon, send an OTP and wait until it is delivered; the data directory's file
    modes while the daemon runs (the -wal and -shm files exist then)."""
    async with running_daemon(tmp_path) as daemon:
        status, otp, _ = await daemon.call("POST", "/v1/otp", {"to": UK})
        assert status == 201, otp

        async def delivered() -> bool:
            return await daemon.message_status(otp["message_id"]) == "delivered"

        await wait_for(delivered, "the OTP delivered")
        data = daemon.gateway.config.data_dir
        running = {".": mode(data), **modes(data)}
    return running


@pytest.mark.parametrize("mask", [0o000, 0o022, 0o077])
async def test_the_data_dir_is_0700_and_its_files_0600_whatever_the_umask(
    tmp_path: Path, mask: int
) -> None:
    with umask(mask):
        running = await send_and_deliver_an_otp(tmp_path)
    assert {"tandem.db", "tandem.db-wal", "tandem.db-shm", "otp.key"} <= running.keys()
    assert running.pop(".") == 0o700
    assert running == dict.fromkeys(running, 0o600)
    data = tmp_path / "data"
    assert mode(data) == 0o700 and set(modes(data).values()) == {0o600}


async def test_an_older_installs_loose_modes_are_tightened(tmp_path: Path) -> None:
    await send_and_deliver_an_otp(tmp_path)
    data = tmp_path / "data"
    data.chmod(0o755)
    for file in data.iterdir():
        file.chmod(0o644)

    private_data_dir(data)  # what the daemon does first
    # The store and the OTP pepper, opened again as the daemon opens them.
    store = SqliteMessageStore(data / "tandem.db")
    await store.open()
    try:
        await store.purge_idempotency(0.0)  # a write: the -wal and -shm files exist
        CodeHasher.from_file(data / "otp.key")
        running = {".": mode(data), **modes(data)}
    finally:
        await store.close()

    assert {"tandem.db", "tandem.db-wal", "tandem.db-shm", "otp.key"} <= running.keys()
    assert running.pop(".") == 0o700
    assert running == dict.fromkeys(running, 0o600)


def test_the_systemd_unit_keeps_the_state_directory_private() -> None:
    unit = (ROOT / "systemd" / "tandem.service").read_text().splitlines()
    assert "UMask=0077" in unit
    assert "StateDirectoryMode=0700" in unit
