"""What the end-to-end benches share about the SMSC's receipt timing and the stage table.

`add_arguments` gives a bench `--receipt-mode` (the simulator's `receipt_mode`; the benches
default to same-write, as SMSCs that answer fast behave) and `--stages` (record per-stage
latency in the gateway, `gateway.stages`, and print the table after the run).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gateway import stages

RECEIPT_MODES = ("same-write", "timer", "delayed", "before-resp")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--receipt-mode",
        choices=RECEIPT_MODES,
        default="same-write",
        help="when the simulator sends each receipt (default: in the same write as its "
        "submit_sm_resp)",
    )
    parser.add_argument(
        "--stages", action="store_true", help="record per-stage latency; print the table"
    )


def simulator_arguments(args: argparse.Namespace) -> list[str]:
    """The `tandem sim smsc` options for the chosen receipt mode."""
    return ["--receipt-mode", args.receipt_mode]


def config_line(args: argparse.Namespace) -> str:
    """The top-level config line that switches stage recording on or off."""
    return f"stage_times = {'true' if args.stages else 'false'}\n"


def print_in_process() -> None:
    """The table of this process's recorder (a gateway run in the bench's own process)."""
    recorder = stages.recording()
    if recorder is not None:
        print("  stages (per message; ms)")
        print(indent(stages.table(recorder.snapshot())))


def print_from_daemon(http_port: int, data_dir: Path) -> None:
    """The table a daemon's `GET /admin/stages` answers (with the admin token it keeps in
    `data_dir`)."""
    import urllib.request  # not at the top: run as a script, bench/http.py shadows `http`

    token = (data_dir / "admin.token").read_text(encoding="ascii").strip()
    request = urllib.request.Request(
        f"http://127.0.0.1:{http_port}/admin/stages", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        document = json.loads(response.read())
    if document.get("recording"):
        print("  stages (per message; ms)")
        print(indent(stages.table(document["stages"])))


def table(snapshot: dict[str, dict[str, object]]) -> str:
    """A stage table (gateway.stages), indented for a bench report."""
    return indent(stages.table(snapshot))


def indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())
