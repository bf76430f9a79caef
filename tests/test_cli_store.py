"""Command line tools that work on the daemon's state (`tandem keys`, `tandem accounts`) find the
store the daemon uses, or say they cannot: run from another directory, a relative data_dir (the
built-in default's `data`) does not silently become a new, empty store there. Every command
names the store it worked on. Real `tandem` processes in real directories; and `tandem inbound`
works on the store the config names, a SQLite file or PostgreSQL."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from gateway.cli import main
from tests.daemon_processes import TANDEM
from tests.store_backends import BACKENDS, POSTGRES_DSN, store_factory


def tandem(cwd: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TANDEM, *argv], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def daemon_directory(tmp_path: Path) -> Path:
    """A directory where `tandem run` ran on the built-in default: its store is data/tandem.db."""
    home = tmp_path / "daemon"
    home.mkdir()
    config = tmp_path / "absolute.toml"
    config.write_text(f'data_dir = "{home / "data"}"\n', encoding="utf-8")
    made = tandem(tmp_path, "keys", "create", "-c", str(config), "--name", "first")
    assert made.returncode == 0, made.stderr
    return home


def test_keys_create_elsewhere_names_the_missing_store_and_creates_none(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = tandem(elsewhere, "keys", "create", "--name", "demo")
    assert result.returncode == 2
    store = elsewhere / "data" / "tandem.db"
    assert f"no store at {store}" in result.stderr
    assert "tdm_" not in result.stdout  # no key that the daemon would refuse
    assert not (elsewhere / "data").exists()
    for command in (("keys", "list"), ("keys", "revoke", "demo")):
        result = tandem(elsewhere, *command)
        assert result.returncode == 2 and f"no store at {store}" in result.stderr


def test_keys_commands_name_the_store_they_work_on(tmp_path: Path) -> None:
    home = daemon_directory(tmp_path)
    store = home / "data" / "tandem.db"
    made = tandem(home, "keys", "create", "--name", "demo")
    assert made.returncode == 0, made.stderr
    assert f"store: {store}" in made.stderr.splitlines()
    listed = tandem(home, "keys", "list")
    assert listed.returncode == 0 and f"store: {store}" in listed.stderr.splitlines()
    assert "demo" in listed.stdout and "first" in listed.stdout
    revoked = tandem(home, "keys", "revoke", "demo")
    assert revoked.returncode == 0 and f"store: {store}" in revoked.stderr.splitlines()


def test_an_absolute_data_dir_works_from_any_directory(tmp_path: Path) -> None:
    home = daemon_directory(tmp_path)
    config = tmp_path / "absolute.toml"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    listed = tandem(elsewhere, "keys", "list", "-c", str(config))
    assert listed.returncode == 0, listed.stderr
    assert f"store: {home / 'data' / 'tandem.db'}" in listed.stderr.splitlines()
    assert "first" in listed.stdout
    assert not (elsewhere / "data").exists()


def test_accounts_add_elsewhere_names_the_missing_data_directory(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = tandem(elsewhere, "accounts", "add", "acme", "--password", "secret12")
    assert result.returncode == 2
    assert f"no data directory at {elsewhere / 'data'}" in result.stderr
    assert not (elsewhere / "data").exists()
    home = daemon_directory(tmp_path)
    added = tandem(home, "accounts", "add", "acme", "--password", "secret12")
    assert added.returncode == 0, added.stderr
    assert f"added acme to {home / 'data' / 'accounts.toml'}" in added.stdout


@pytest.mark.parametrize("backend", BACKENDS)
async def test_inbound_block_works_on_the_store_the_config_names(
    backend: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "data"
    async for make in store_factory(backend, data_dir):
        section = ""
        if backend == "postgresql":
            section = (
                f'[store]\nbackend = "postgresql"\ndsn = "{POSTGRES_DSN}"\n'
                f'database_schema = "{make.schema("tandem.db")}"\n'
            )
        config = tmp_path / "tandem.toml"
        config.write_text(f'data_dir = "{data_dir}"\n{section}', encoding="utf-8")
        store = make()
        await store.open()  # the daemon's store, as the daemon made it
        await store.close()
        argv = ["inbound", "block", "-c", str(config), "+447700900123", "--reason", "spam"]
        # The command runs its own event loop: off this test's loop, on a thread.
        assert await asyncio.to_thread(main, argv) == 0
        assert ("postgresql schema" in capsys.readouterr().err) == (backend == "postgresql")
        store = make()
        await store.open()
        try:
            assert [number for number, _, _ in await store.inbound_blocked()] == ["447700900123"]
        finally:
            await store.close()
