"""The `tandem` command table: every subcommand listed, its arguments loaded only when it runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli import SUBCOMMANDS, build_parser, main

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "gateway" / "default.toml"
# The modules of the subcommands, and the daemon behind `run`.
COMMAND_MODULES = {entry.arguments.split(":")[0] for entry in SUBCOMMANDS.values()}


def test_tandem_help_lists_every_subcommand_with_its_help(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    listing = capsys.readouterr().out
    for name, entry in SUBCOMMANDS.items():
        assert f"    {name}" in listing
        assert entry.help.split()[0] in listing


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_each_subcommand_help_is_the_one_its_module_builds(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([name, "--help"])
    assert exit_.value.code == 0
    lazily = capsys.readouterr().out
    with pytest.raises(SystemExit):
        build_parser().parse_args([name, "--help"])  # every command's arguments added
    assert lazily == capsys.readouterr().out
    assert lazily.startswith(f"usage: tandem {name} ")


def _modules_loaded_by(argv: list[str]) -> set[str]:
    """The gateway modules a fresh interpreter has loaded once `tandem argv` has run."""
    script = (
        "import json, sys\n"
        "from gateway.cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('gateway'))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    return set(json.loads(result.stdout.splitlines()[-1]))


def test_tandem_help_imports_no_subcommand_module() -> None:
    loaded = _modules_loaded_by(["--help"])
    assert not loaded & COMMAND_MODULES
    assert "gateway.config" not in loaded


def test_check_config_imports_its_own_module_and_no_other_command() -> None:
    loaded = _modules_loaded_by(["check-config", str(DEFAULT_CONFIG)])
    assert loaded & COMMAND_MODULES == {"gateway.run_cli"}
    assert "gateway.app" not in loaded
