"""`tandem optouts` as a separate process on a real store: add, list, remove, a CSV import
that reports what it took and refused by line and is idempotent, an export that imports back
into an empty store as the same list, and a running daemon picking up what the CLI changed."""

from __future__ import annotations

import asyncio
import csv
import subprocess
from collections.abc import Iterable
from pathlib import Path

from gateway.store.base import OptOutScope
from tests.daemon_processes import ROOT, TANDEM
from tests.test_http_harness import running_daemon
from tests.waiting import wait_for

GROUPS = '[[sender_groups]]\nname = "brand"\nsenders = ["Shop", "12345"]\n'


def config_file(tmp_path: Path, data_dir: Path | None = None) -> Path:
    path = tmp_path / "tandem.toml"
    path.write_text(f'data_dir = "{data_dir or tmp_path / "data"}"\n{GROUPS}', encoding="utf-8")
    return path


def tandem(config: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TANDEM, "optouts", *argv, "--config", str(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def key_columns(rows: Iterable[dict[str, str]]) -> list[tuple[str, ...]]:
    return [(r["number"], r["scope"], r["sender"], r["group"], r["reason"]) for r in rows]


def test_add_list_and_remove(tmp_path: Path) -> None:
    config = config_file(tmp_path)
    added = tandem(config, "add", "+447911123456", "--sender", "12345", "--reason", "phoned")
    assert added.returncode == 0, added.stderr
    assert "+447911123456: opted out (sender 12345)" in added.stdout
    again = tandem(config, "add", "447911123456", "--sender", "12345")
    assert "already in force" in again.stdout
    assert tandem(config, "add", "+447911123456", "--group", "brand").returncode == 0
    refused = tandem(config, "add", "+447911123456", "--group", "nope")
    assert refused.returncode == 2 and "no sender group is named 'nope'" in refused.stderr
    bad = tandem(config, "add", "12", "--all")
    assert bad.returncode == 2 and "optouts add: 12:" in bad.stderr
    listed = tandem(config, "list", "--number", "+447911123456")
    lines = listed.stdout.splitlines()[1:]
    assert [line.split()[1:3] for line in lines] == [["group", "brand"], ["sender", "12345"]]
    removed = tandem(config, "remove", "+447911123456", "--group", "brand")
    assert removed.stdout.strip() == "+447911123456: removed (group brand)"
    removed = tandem(config, "remove", "+447911123456")
    assert removed.stdout.strip() == "+447911123456: removed (sender 12345)"
    none = tandem(config, "remove", "+447911123456")
    assert none.returncode == 1 and "no such opt-out" in none.stderr


def test_csv_import_reports_by_line_is_idempotent_and_round_trips(tmp_path: Path) -> None:
    config = config_file(tmp_path)
    source = tmp_path / "in.csv"
    source.write_text(
        "number,scope,sender,group,reason\n"
        "+447911123456,,12345,,web form\n"  # line 2: sender scope from the sender
        "447911123457,group,,brand,\n"  # line 3
        "+447911123458,,,,\n"  # line 4: all senders
        "12,,,,\n"  # line 5: not a number
        "+447911123459,group,,nope,\n"  # line 6: no such group
        "+447911123460,sender,,,\n"  # line 7: no sender
        "+447911123461,often,,,\n",  # line 8: no such scope
        encoding="utf-8",
    )
    first = tandem(config, "import", str(source))
    assert first.returncode == 1  # some rows refused
    assert "taken: 3 (3 new, 0 already in force); refused: 4" in first.stdout
    refused_lines = [line.split(":")[1] for line in first.stderr.splitlines() if "refused" in line]
    assert refused_lines == ["5", "6", "7", "8"]
    second = tandem(config, "import", str(source))
    assert "taken: 3 (0 new, 3 already in force); refused: 4" in second.stdout

    exported = tmp_path / "out.csv"
    result = tandem(config, "export", str(exported))
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(exported.open(encoding="utf-8")))
    assert [(r["number"], r["scope"], r["sender"], r["group"], r["reason"]) for r in rows] == [
        ("+447911123456", "sender", "12345", "", "web form"),
        ("+447911123457", "group", "", "brand", ""),
        ("+447911123458", "all", "", "", ""),
    ]
    assert {r["via"] for r in rows} == {"import"}

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    other = config_file(elsewhere)
    back = tandem(other, "import", str(exported))
    assert back.returncode == 0, back.stderr
    assert "taken: 3 (3 new" in back.stdout
    again = elsewhere / "again.csv"
    tandem(other, "export", str(again))
    assert key_columns(csv.DictReader(again.open(encoding="utf-8"))) == key_columns(rows)


async def test_a_running_daemon_applies_what_the_cli_changed(tmp_path: Path) -> None:
    async with running_daemon(
        tmp_path,
        extra={
            "optouts": {"sync_seconds": 0.05},
            "sender_groups": [{"name": "brand", "senders": ["Shop", "12345"]}],
        },
    ) as daemon:
        (tmp_path / "cli").mkdir()
        config = config_file(tmp_path / "cli", tmp_path / "data")
        registry = daemon.gateway.optouts
        result = await asyncio.to_thread(tandem, config, "add", "+447911123456", "--sender", "Shop")
        assert result.returncode == 0, result.stderr
        await wait_for(lambda: registry.blocks("447911123456", "Shop"), "the daemon to see it")
        assert registry.scopes_of("447911123456") == [(OptOutScope.SENDER, "shop")]
        status, problem, _ = await daemon.call(
            "POST", "/v1/messages", {"to": "+447911123456", "from": "Shop", "text": "x"}
        )
        assert status == 403, problem
        result = await asyncio.to_thread(tandem, config, "remove", "+447911123456")
        assert result.returncode == 0, result.stderr
        await wait_for(
            lambda: not registry.blocks("447911123456", "Shop"), "the daemon to see it gone"
        )
