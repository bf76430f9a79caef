"""Real processes for the daemon-level tests: `tandem sim smsc` and `tandem run` as separate
processes on 127.0.0.1, a generated config file, an API key made with `tandem keys create`,
and a reader for the simulator's `--record` file.

Imported by `test_crash_recovery`, `test_failover`, `test_route_explain_live` and the store
tests that watch its writer process (holds no tests).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import aiohttp

from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
TANDEM = (PYTHON, "-m", "gateway.cli")
# A daemon started as a process on a loaded machine (imports, a store migrating, the writer
# process forked) took over 60 s to answer in full-suite runs; a start that comes costs no more.
DAEMON_START = 120.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Process:
    """One child process with its output in a log file."""

    argv: Sequence[str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None
    _log_handle: IO[bytes] | None = None

    def start(self) -> Process:
        self._log_handle = open(self.log, "ab")  # noqa: SIM115 - closed in wait()
        self.popen = subprocess.Popen(
            list(self.argv), stdout=self._log_handle, stderr=subprocess.STDOUT, cwd=ROOT
        )
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self) -> None:
        """kill -9: no shutdown code runs."""
        if self.running():
            os.kill(self.pid, signal.SIGKILL)
        self.wait()

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL if it does not end in time."""
        if self.running():
            assert self.popen is not None
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
        self.wait()

    def wait(self) -> None:
        if self.popen is not None:
            self.popen.wait()
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def simulator(
    workdir: Path, name: str, port: int, *, dlr_delay: float = 0.2, extra: Sequence[str] = ()
) -> Process:
    record = workdir / f"{name}.record"
    argv = [
        *TANDEM,
        "sim",
        "smsc",
        "--port",
        str(port),
        "--record",
        str(record),
        "--dlr-delay",
        str(dlr_delay),
        *extra,
    ]
    return Process(argv, workdir / f"{name}.log")


def daemon(workdir: Path, config: Path, name: str = "tandem") -> Process:
    return Process([*TANDEM, "run", "-c", str(config)], workdir / f"{name}.log")


def link_toml(name: str, port: int, *, window: int = 10, sessions: int = 1, **extra: Any) -> str:
    lines = [
        "[[links]]",
        'type = "smpp"',
        f'name = "{name}"',
        'host = "127.0.0.1"',
        f"port = {port}",
        'system_id = "tandem"',
        'password = "secret"',
        f"window = {window}",
        f"sessions = {sessions}",
        'submit_id_format = "hex"',
        'dlr_id_format = "hex"',
        "reconnect_initial = 0.1",
        "reconnect_max = 0.5",
        "response_timeout = 2.0",
    ]
    lines += [f"{key} = {json.dumps(value)}" for key, value in extra.items()]
    return "\n".join(lines) + "\n"


def write_config(
    workdir: Path, http_port: int, links: Sequence[str], routes: str, *, extra: str = ""
) -> Path:
    """A daemon config: store in `workdir/data`, HTTP on `http_port`, no SMPP server, no
    built-in simulator; `links` are `link_toml` blocks, `routes` TOML `[[routes]]` blocks."""
    path = workdir / "tandem.toml"
    path.write_text(
        f"""
data_dir = "{workdir / "data"}"
{extra}
[smpp_server]
enabled = false
[http]
host = "127.0.0.1"
port = {http_port}
[simulator]
enabled = false
{"".join(links)}
{routes}
""",
        encoding="utf-8",
    )
    return path


def create_key(config: Path, name: str = "tests") -> str:
    created = subprocess.run(
        [
            *TANDEM,
            "keys",
            "create",
            "-c",
            str(config),
            "--name",
            name,
            "--rps",
            "1e6",
            "--mps",
            "1e6",
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    ).stdout
    return created.split("key:", 1)[1].split()[0]


async def wait_http(url: str, timeout: float = DAEMON_START) -> None:
    """Until `url` answers (any status): the daemon is up."""
    async with aiohttp.ClientSession() as session:

        async def answers() -> bool:
            try:
                async with session.get(url) as response:
                    await response.read()
                    return True
            except aiohttp.ClientError:
                return False

        await wait_for(answers, f"{url} to answer", timeout=timeout, interval=0.05)


def accepted_texts(record: Path) -> Counter[str]:
    """How many times the simulator accepted (status 0) each text. A line cut short by a killed
    simulator is skipped."""
    counts: Counter[str] = Counter()
    if not record.exists():
        return counts
    with record.open(encoding="utf-8") as lines:
        for line in lines:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if entry["status"] == 0:
                counts[entry["text"]] += 1
    return counts


def process_gone(pid: int) -> bool:
    """The process has ended (reaped, or a zombie waiting for its parent to reap it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


async def process_ends(pid: int, *, within: float) -> bool:
    """Whether the process ends within `within` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while not process_gone(pid):
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True
