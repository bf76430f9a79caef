"""systemd: the notify protocol over a real AF_UNIX datagram socket (a path and an abstract
name), a real `tandem run` that says READY=1, STATUS=, WATCHDOG=1 and STOPPING=1 to it and ends
0 on SIGTERM, watchdog pings that stop when the event loop stops turning, and the unit file as
`systemd-analyze` judges it (verify clean, security exposure at most 2.5)."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.sd_notify import Notifier, ServiceHeartbeat, notify_address, watchdog_interval
from tests.daemon_processes import ROOT, TANDEM, free_port, link_toml, write_config

UNIT = ROOT / "systemd" / "tandem.service"
SYSUSERS = ROOT / "systemd" / "tandem.sysusers"
MAX_EXPOSURE = 2.5


class Listener:
    """What systemd does with $NOTIFY_SOCKET: a datagram socket that collects what it gets."""

    def __init__(self, address: str | bytes) -> None:
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(address)
        self.socket.settimeout(0.2)
        self.received: list[tuple[float, dict[str, str]]] = []

    def collect(self, until: float) -> None:
        while time.monotonic() < until:
            try:
                datagram = self.socket.recv(4096)
            except TimeoutError:
                continue
            fields = dict(line.split("=", 1) for line in datagram.decode().splitlines() if line)
            self.received.append((time.monotonic(), fields))

    def wait_for(self, key: str, value: str | None = None, timeout: float = 30.0) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for _, fields in self.received[seen:]:
                if key in fields and (value is None or fields[key] == value):
                    return fields
            seen = len(self.received)
            if time.monotonic() > deadline:
                raise AssertionError(f"no {key}={value} in {self.received[-10:]}")
            self.collect(time.monotonic() + 0.2)

    def close(self) -> None:
        self.socket.close()


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[Listener]:
    socket_path = tmp_path / "notify.sock"
    listening = Listener(str(socket_path))
    yield listening
    listening.close()


def test_notify_reaches_a_socket_at_a_path(listener: Listener, tmp_path: Path) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "notify.sock")})
    assert notifier.ready("2/3 links up")
    listener.collect(time.monotonic() + 0.3)
    fields = listener.received[0][1]
    assert fields["READY"] == "1" and fields["STATUS"] == "2/3 links up"
    assert fields["MAINPID"] == str(os.getpid())
    notifier.close()


def test_notify_reaches_an_abstract_socket() -> None:
    name = f"tandem-test-{os.getpid()}-{time.monotonic_ns()}"
    listening = Listener(b"\0" + name.encode())
    try:
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name})
        assert notifier.stopping("bye")
        listening.collect(time.monotonic() + 0.3)
        assert listening.received[0][1] == {"STOPPING": "1", "STATUS": "bye"}
    finally:
        listening.close()


def test_without_systemd_notifications_are_no_ops() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    assert not notifier.ready("x") and not notifier.watchdog()


def test_a_vanished_socket_is_counted_not_raised(tmp_path: Path) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert not notifier.watchdog()
    assert notifier.stats.failed == 1


def test_addresses_and_watchdog_settings_are_read_as_sd_notify_says() -> None:
    assert notify_address("/run/systemd/notify") == "/run/systemd/notify"
    assert notify_address("@abstract") == b"\0abstract"
    assert notify_address("") is None and notify_address("vsock:2:3") is None
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}, 42) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "42"}, 42) == 30.0
    # Meant for another process (a parent that exec'd us without clearing it): not ours.
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "7"}, 42) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}, 42) is None
    assert watchdog_interval({}, 42) is None


async def test_watchdog_pings_stop_while_the_event_loop_is_stuck(
    listener: Listener, tmp_path: Path
) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "notify.sock")})
    heartbeat = ServiceHeartbeat(notifier, lambda: "ok", watchdog=0.2)  # a ping every 0.1 s
    heartbeat.start()
    await asyncio.sleep(0.5)
    time.sleep(1.5)  # the loop is stuck: no ping may go out meanwhile
    await asyncio.sleep(0.5)
    await heartbeat.stop()
    listener.collect(time.monotonic() + 0.3)
    notifier.close()
    pings = [at for at, fields in listener.received if fields.get("WATCHDOG") == "1"]
    # Receive times are when the test read them; the reads happen after the loop ran, so
    # count them: a few before the stall and a few after, and the stall's gap
    # shows as the count: 2 s of pings every 0.1 s would be ~20 without it.
    assert 4 <= len(pings) <= 14, len(pings)
    assert [fields for _, fields in listener.received if "STATUS" in fields] == [{"STATUS": "ok"}]


def test_the_daemon_tells_systemd_ready_status_watchdog_and_stopping(
    listener: Listener, tmp_path: Path
) -> None:
    smsc_port, http_port = free_port(), free_port()
    smsc = subprocess.Popen(
        [*TANDEM, "sim", "smsc", "--port", str(smsc_port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    config = write_config(
        tmp_path,
        http_port,
        [link_toml("carrier", smsc_port)],
        '[[routes]]\nname = "all"\npriority = 1\ntargets = ["carrier"]\n',
    )
    environment = {
        **os.environ,
        "NOTIFY_SOCKET": str(tmp_path / "notify.sock"),
        "WATCHDOG_USEC": "1000000",
    }
    log = (tmp_path / "daemon.log").open("wb")
    daemon = subprocess.Popen(
        [*TANDEM, "run", "-c", str(config)], cwd=ROOT, env=environment, stdout=log, stderr=log
    )
    try:
        ready = listener.wait_for("READY", "1")
        assert ready["MAINPID"] == str(daemon.pid)
        assert re.fullmatch(r"\d/1 links up, 0 customer binds, 0 queued", ready["STATUS"])
        listener.wait_for("STATUS", "1/1 links up, 0 customer binds, 0 queued")
        listener.wait_for("WATCHDOG", "1")
        count_before = len(listener.received)
        listener.collect(time.monotonic() + 1.5)  # a ping every 0.5 s
        pings = sum(
            1 for _, fields in listener.received[count_before:] if fields.get("WATCHDOG") == "1"
        )
        assert pings >= 2
        daemon.send_signal(signal.SIGTERM)
        stopping = listener.wait_for("STOPPING", "1")
        assert stopping["STATUS"].startswith("stopping")
        assert daemon.wait(30) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        smsc.terminate()
        smsc.wait()
        log.close()
    output = (tmp_path / "daemon.log").read_text()
    assert "Traceback" not in output, output[-3000:]
    assert "stopped" in output


# --- the unit file --------------------------------------------------------------------------


def unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def test_the_unit_is_a_notify_service_with_a_watchdog_a_user_and_dialout() -> None:
    settings = unit_settings()
    assert settings["Type"] == ["notify"]
    assert float(settings["WatchdogSec"][0]) > 0
    assert settings["Restart"] == ["on-failure"]
    assert settings["SupplementaryGroups"] == ["dialout"]
    user = settings["User"][0]
    assert re.search(rf"^u {user} ", SYSUSERS.read_text(), re.MULTILINE)
    assert settings["ExecStart"] == ["/usr/local/bin/tandem run --config /etc/tandem/tandem.toml"]
    assert settings["WorkingDirectory"] == ["/var/lib/tandem"]
    # The stop must fit the drain a stop waits for (the default [shutdown] drain_seconds).
    from gateway.config import ShutdownConfig

    assert float(settings["TimeoutStopSec"][0]) > ShutdownConfig().drain_seconds + 10


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.skip("systemd-analyze is not installed (Debian: the systemd package)")
    return found


def test_systemd_analyze_verify_is_clean(tmp_path: Path) -> None:
    analyze = systemd_analyze()
    # verify checks that ExecStart's program exists: point it at this checkout's tandem.
    tandem = shutil.which("tandem") or str(Path(sys.executable).with_name("tandem"))
    if not Path(tandem).exists():
        pytest.skip("no installed `tandem` script to stand in for /usr/local/bin/tandem")
    unit = tmp_path / "tandem.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/tandem", tandem))
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout + result.stderr == "", result.stderr


def test_systemd_analyze_security_exposure_is_at_most_2_5() -> None:
    analyze = systemd_analyze()
    result = subprocess.run(
        [analyze, "security", "--offline=true", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
    )
    found = re.search(r"Overall exposure level for tandem.service: (\d+\.\d+)", result.stdout)
    assert found, result.stdout[-2000:] + result.stderr
    assert float(found.group(1)) <= MAX_EXPOSURE, result.stdout
