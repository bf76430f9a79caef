"""Installing Tandem as `make run` does (`pip install -e .`) prints no warnings: the build
backend reads pyproject.toml in its current form (no deprecation), and the editable install is a
plain path entry (no notice about the meta path finder it would otherwise use)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_editable_install_prints_no_warning(tmp_path: Path) -> None:
    # Under a prefix of its own, and --ignore-installed so pip leaves the running environment's
    # install alone (it would uninstall it first); the build runs in an isolated environment
    # with the setuptools pyproject.toml asks for.
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--ignore-installed",
         "-e", str(ROOT), "--prefix", str(tmp_path / "prefix")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "deprecat" not in output.lower(), output
    assert "warning" not in output.lower(), output
