"""What the README shows works: it starts with the two commands, `make run CONFIG=...` runs
that file, every TOML block it shows (and `gateway/default.toml`) passes `tandem check-config`,
and its UK example number is a UK network's."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import default_config_text

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
TOML_BLOCKS = re.findall(r"^```toml\n(.*?)^```", README, flags=re.MULTILINE | re.DOTALL)


def test_readme_starts_with_the_two_commands_and_says_how_to_give_a_config() -> None:
    first_block = README.split("```sh\n", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in first_block.splitlines()]
    assert README.startswith("# Tandem\n\n```sh\n")
    assert commands == ["make run", "make test"]
    assert "`make run CONFIG=path/to/tandem.toml`" in README


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_run_passes_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "mine.toml"
    planned = subprocess.run(
        ["make", "-n", "run", f"CONFIG={config}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert f".venv/bin/tandem run --config {config}" in planned
    planned = subprocess.run(
        ["make", "-n", "run"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert ".venv/bin/tandem run" in [line.strip() for line in planned]


def test_readme_shows_toml() -> None:
    assert TOML_BLOCKS, "the README shows no ```toml block"


@pytest.mark.parametrize("index", range(len(TOML_BLOCKS)))
def test_every_toml_block_of_the_readme_passes_check_config(
    index: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / f"readme-{index}.toml"
    path.write_text(TOML_BLOCKS[index], encoding="utf-8")
    assert main(["check-config", str(path)]) == 0, capsys.readouterr().err


def test_the_default_config_passes_check_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "default.toml"
    path.write_text(default_config_text(), encoding="utf-8")
    assert main(["check-config", str(path)]) == 0, capsys.readouterr().err


def test_the_readme_uk_number_is_a_uk_network(capsys: pytest.CaptureFixture[str]) -> None:
    numbers = set(re.findall(r"\+44\d{10}", README))
    assert numbers
    for number in sorted(numbers):
        main(["route", "explain", number])
        shown = capsys.readouterr().out
        assert re.search(r"^country:\s+GB\b", shown, flags=re.MULTILINE), shown
        assert re.search(r"^mno:\s+Three\b", shown, flags=re.MULTILINE), shown


def test_the_route_explain_the_readme_shows_is_what_it_prints(
    capsys: pytest.CaptureFixture[str],
) -> None:
    shown = README.split("```text\ninput:", 1)[1].split("```", 1)[0]
    number = shown.split()[0]
    main(["route", "explain", number])
    printed = capsys.readouterr().out
    # Up to the targets: what follows depends on whether a daemon is running.
    assert ("input:" + shown).split("targets:")[0] == printed.split("targets:")[0]
