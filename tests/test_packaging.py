"""Installing Tandem as `make run` does (`pip install -e .`) prints no deprecation warnings:
the build backend reads pyproject.toml in its current form."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_editable_install_prints_no_deprecation_warning() -> None:
    # --dry-run still builds the project's metadata in an isolated build environment (the
    # setuptools pyproject.toml asks for), which is where the warnings come from.
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "-e", str(ROOT)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "deprecat" not in output.lower(), output
