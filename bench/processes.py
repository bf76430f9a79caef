"""What the benches do with the processes they start: a free port, waiting for a port or a
file a child writes, starting a child with its output in a log, stopping it; and the carrier
link and catch-all route their daemons' configs share.

Plain standard library: it imports nothing of Tandem, so a bench can use it against an older
checkout of the daemon (PYTHONPATH pointing there) too.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, timeout: float = 15.0) -> None:
    """Until something accepts connections on 127.0.0.1:`port`; exits the bench after
    `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def wait_for_file(path: Path, process: subprocess.Popen[bytes], timeout: float = 30.0) -> str:
    """The text `process` writes to `path` (a ready file: its port, say) once it is there;
    exits the bench when the process ends first or after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not path.exists() or not path.read_text():
        if process.poll() is not None:
            raise SystemExit(f"process {process.args!r} exited with {process.returncode}")
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {path}")
        time.sleep(0.02)
    return path.read_text()


def start(argv: list[str], log: Path, **popen: Any) -> subprocess.Popen[bytes]:
    """Start `argv` with its stdout and stderr in `log`."""
    handle = open(log, "wb")  # noqa: SIM115 - lives as long as the process
    return subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, **popen)


def stop(process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """SIGTERM, and SIGKILL if it has not exited within `timeout` seconds."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def simulator_link_toml(smsc_port: int, window: int, sessions: int = 1) -> str:
    """The `[[links]]` block of an SMPP link named "sim" to the bench's simulator, and a route
    that sends everything to it (hex ids, as the simulator writes them)."""
    return f"""[[links]]
type = "smpp"
name = "sim"
host = "127.0.0.1"
port = {smsc_port}
system_id = "tandem"
password = "secret"
window = {window}
sessions = {sessions}
submit_id_format = "hex"
dlr_id_format = "hex"
[[routes]]
name = "everything"
priority = 100
targets = ["sim"]
"""
