"""A daemon that cannot start ends: exit code 1, one line naming the section, the address and the
reason (no traceback), and no process left behind (the store's writer process, the fork server
it came from). One test per listener, each with a real `tandem run` whose port is taken.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon_processes import ROOT, TANDEM, free_port
from tests.waiting import wait_for_sync

# Generous for a loaded machine; before the fix the daemon did not end at all.
EXIT_WITHIN = 30.0
# A log line: "2026-01-01 10:00:00,000 INFO tandem: ...".
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ [A-Z]+ ")


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port on 127.0.0.1 something else listens on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def write_config(
    workdir: Path,
    *,
    http_port: int,
    smpp_port: int,
    simulator_port: int,
    smpp_extra: str = "",
) -> Path:
    path = workdir / "tandem.toml"
    path.write_text(
        f"""
data_dir = "{workdir / "data"}"
[store]
writer = "process"
[smpp_server]
host = "127.0.0.1"
port = {smpp_port}
{smpp_extra}
[http]
host = "127.0.0.1"
port = {http_port}
[simulator]
enabled = true
port = {simulator_port}
[[links]]
type = "smpp"
name = "simulator"
host = "127.0.0.1"
port = {simulator_port}
system_id = "tandem"
[[routes]]
name = "all"
priority = 1
targets = ["simulator"]
""",
        encoding="utf-8",
    )
    return path


def processes_in_session(session: int) -> list[str]:
    """The live processes of session `session` (a daemon started in a session of its own,
    and whatever it started, which keep it): `pid command` each."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        state, sid = fields[0], int(fields[3])
        if sid == session and state != "Z":
            found.append(f"{entry.name} {cmdline.strip()}")
    return found


def run_failing_daemon(config: Path) -> tuple[int, list[str], float]:
    """Run `tandem run -c config` in a session of its own until it ends; its exit code, its
    stderr lines, and how long it ran. Fails the test if it does not end or leaves a
    process of its session behind."""
    started = time.monotonic()
    daemon = subprocess.Popen(
        [*TANDEM, "run", "-c", str(config)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _, stderr = daemon.communicate(timeout=EXIT_WITHIN)
    except subprocess.TimeoutExpired:
        os.killpg(daemon.pid, signal.SIGKILL)
        daemon.communicate()
        pytest.fail(f"tandem run did not end within {EXIT_WITHIN} s of a failed start")
    elapsed = time.monotonic() - started
    # A writer process ends once its socket closes: give it the moment that takes.
    try:
        wait_for_sync(
            lambda: not processes_in_session(daemon.pid),
            lambda: f"the session's processes to end ({processes_in_session(daemon.pid)} left)",
            interval=0.05,
        )
    finally:
        if processes_in_session(daemon.pid):
            os.killpg(daemon.pid, signal.SIGKILL)
    return daemon.returncode, stderr.splitlines(), elapsed


def assert_one_line(lines: list[str], expected: str) -> None:
    assert not any("Traceback" in line for line in lines), "\n".join(lines)
    said = [line for line in lines if not LOG_LINE.match(line)]
    assert said == [expected], "\n".join(lines)


def test_busy_http_port_ends_the_daemon_with_one_line(tmp_path: Path, busy_port: int) -> None:
    config = write_config(
        tmp_path, http_port=busy_port, smpp_port=free_port(), simulator_port=free_port()
    )
    code, lines, elapsed = run_failing_daemon(config)
    assert code == 1
    assert_one_line(
        lines, f"tandem: cannot start [http] 127.0.0.1:{busy_port}: address already in use"
    )
    print(f"busy HTTP port: ended after {elapsed:.2f} s")


def test_busy_smpp_server_port_ends_the_daemon_with_one_line(
    tmp_path: Path, busy_port: int
) -> None:
    config = write_config(
        tmp_path, http_port=free_port(), smpp_port=busy_port, simulator_port=free_port()
    )
    code, lines, elapsed = run_failing_daemon(config)
    assert code == 1
    assert_one_line(
        lines, f"tandem: cannot start [smpp_server] 127.0.0.1:{busy_port}: address already in use"
    )
    print(f"busy SMPP port: ended after {elapsed:.2f} s")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_busy_smpp_tls_port_ends_the_daemon_with_one_line(tmp_path: Path, busy_port: int) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    config = write_config(
        tmp_path,
        http_port=free_port(),
        smpp_port=free_port(),
        simulator_port=free_port(),
        smpp_extra=f'tls_port = {busy_port}\ntls_cert_file = "{cert}"\ntls_key_file = "{key}"',
    )
    code, lines, elapsed = run_failing_daemon(config)
    assert code == 1
    assert_one_line(
        lines,
        f"tandem: cannot start [smpp_server] 127.0.0.1:{busy_port} (TLS): address already in use",
    )
    print(f"busy SMPP TLS port: ended after {elapsed:.2f} s")


def test_busy_simulator_port_ends_the_daemon_with_one_line(tmp_path: Path, busy_port: int) -> None:
    config = write_config(
        tmp_path, http_port=free_port(), smpp_port=free_port(), simulator_port=busy_port
    )
    code, lines, elapsed = run_failing_daemon(config)
    assert code == 1
    assert_one_line(
        lines, f"tandem: cannot start [simulator] 127.0.0.1:{busy_port}: address already in use"
    )
    print(f"busy simulator port: ended after {elapsed:.2f} s")


def test_unreadable_tls_certificate_ends_the_daemon_with_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    port = free_port()
    config = write_config(
        tmp_path,
        http_port=free_port(),
        smpp_port=free_port(),
        simulator_port=free_port(),
        smpp_extra=f'tls_port = {port}\ntls_cert_file = "{missing}"\ntls_key_file = "{missing}"',
    )
    code, lines, _ = run_failing_daemon(config)
    assert code == 1
    assert_one_line(
        lines,
        f"tandem: cannot start [smpp_server] 127.0.0.1:{port} (TLS): no such file or directory",
    )


def test_a_data_dir_that_cannot_be_made_ends_the_daemon_with_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory", encoding="utf-8")
    config = write_config(
        tmp_path, http_port=free_port(), smpp_port=free_port(), simulator_port=free_port()
    )
    data_dir = blocker / "data"
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace(str(tmp_path / "data"), str(data_dir)), encoding="utf-8")
    code, lines, _ = run_failing_daemon(config)
    assert code == 1
    assert_one_line(
        lines, f"tandem: cannot start [data_dir] {data_dir}: not a directory: {data_dir}"
    )
