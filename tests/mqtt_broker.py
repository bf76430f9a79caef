"""A real Mosquitto broker for the event tests, and an independent subscriber.

`broker_port()`: the project's broker at 127.0.0.1:1883; where Mosquitto is installed but not
running, it is started (as `make services` / `.ci/services.sh` would); otherwise the calling test
skips and says why. `PrivateBroker`: a Mosquitto of the test's own on a free port, for tests that
stop and start the broker or need a TLS listener. `Subscriber`: `mosquitto_sub` (libmosquitto,
not the paho/aiomqtt code under test) printing every message under a topic prefix; paho-mqtt
where mosquitto_sub is not installed.

Holds no tests.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.waiting import wait_for_sync

HOST = "127.0.0.1"
PORT = 1883


def port_open(port: int, host: str = HOST) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def broker_port() -> int:
    """The shared broker's port, starting Mosquitto where it is installed and not running."""
    if port_open(PORT):
        return PORT
    binary = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None
    )
    if binary is None:
        pytest.skip(
            "no MQTT broker at 127.0.0.1:1883 and Mosquitto is not installed "
            "(`make services` installs it on Debian as root)"
        )
    config = "/etc/mosquitto/mosquitto.conf"
    argv = [binary, "-d", *(["-c", config] if os.path.exists(config) else ["-p", str(PORT)])]
    subprocess.run(argv, check=False, capture_output=True)
    deadline = time.monotonic() + 10
    while not port_open(PORT):
        if time.monotonic() > deadline:
            pytest.skip(f"Mosquitto is installed but did not start on {HOST}:{PORT} ({argv})")
        time.sleep(0.1)
    return PORT


def mosquitto_binary() -> str:
    binary = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None
    )
    if binary is None:
        pytest.skip("Mosquitto is not installed: this test runs a broker of its own")
    return binary


@dataclass(frozen=True)
class TlsListener:
    """A TLS listener of a private broker: its port and the server's certificate files."""

    port: int
    cert_file: Path
    key_file: Path


@dataclass
class PrivateBroker:
    """A Mosquitto of one test's own, on a free port (plain TCP), and on `tls.port` with TLS
    where `tls` is given; `stop()` and `start()` again at will."""

    port: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = None
    tls: TlsListener | None = None

    def start(self) -> PrivateBroker:
        config = self.workdir / "mosquitto.conf"
        lines = [f"listener {self.port} {HOST}", "allow_anonymous true", "persistence false"]
        if self.tls is not None:
            lines += [
                f"listener {self.tls.port} {HOST}",
                f"certfile {self.tls.cert_file}",
                f"keyfile {self.tls.key_file}",
            ]
        if os.geteuid() == 0:
            lines.append("user root")  # it would switch to `mosquitto`, who cannot read them
        config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        log = (self.workdir / "mosquitto.log").open("ab")
        self.process = subprocess.Popen(
            [mosquitto_binary(), "-c", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        ports = [self.port] + ([self.tls.port] if self.tls is not None else [])
        process = self.process

        def listening() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"mosquitto ended at start: {self.log_tail()}")
            return all(port_open(port) for port in ports)

        wait_for_sync(
            listening,
            lambda: f"mosquitto on ports {ports}: {self.log_tail()}",
            interval=0.05,
        )
        return self

    def log_tail(self) -> str:
        return (self.workdir / "mosquitto.log").read_text(errors="replace")[-2000:]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None


@dataclass
class Subscriber:
    """Everything published under `prefix` while it runs, as (topic, payload, retained)."""

    port: int
    prefix: str
    messages: list[tuple[str, str]] = field(default_factory=list)
    _process: subprocess.Popen[str] | None = None
    _thread: threading.Thread | None = None
    _paho: object | None = None

    def start(self) -> Subscriber:
        command = shutil.which("mosquitto_sub")
        if command is not None:
            self._process = subprocess.Popen(
                [command, "-h", HOST, "-p", str(self.port), "-q", "1", "-v",
                 "-t", f"{self.prefix}#", "-i", f"sub-{uuid.uuid4().hex[:12]}"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            )  # fmt: skip
            self._thread = threading.Thread(target=self._read_lines, daemon=True)
            self._thread.start()
        else:
            self._start_paho()
        self._wait_subscribed()
        return self

    def _read_lines(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            topic, _, payload = line.rstrip("\n").partition(" ")
            self.messages.append((topic, payload))

    def _start_paho(self) -> None:
        import paho.mqtt.client as paho

        client = paho.Client(paho.CallbackAPIVersion.VERSION2)
        client.on_message = lambda _c, _u, msg: self.messages.append(
            (msg.topic, msg.payload.decode())
        )
        client.on_connect = lambda c, *_: c.subscribe(f"{self.prefix}#", qos=1)
        client.connect(HOST, self.port)
        client.loop_start()
        self._paho = client

    def _wait_subscribed(self) -> None:
        """Publish probes until one comes back: the subscription is in place."""
        probe = f"{self.prefix}probe"

        def probed() -> bool:
            if self.on(probe):
                return True
            publish(self.port, probe, "probe")
            return False

        wait_for_sync(probed, "the subscriber to get its probe", interval=0.1)

    def on(self, topic: str) -> list[str]:
        return [payload for t, payload in list(self.messages) if t == topic]

    def topics(self) -> list[str]:
        return [t for t, _ in list(self.messages)]

    def wait(self, condition: Callable[[], bool], what: str) -> None:
        """`wait_for_sync` naming the last messages received when it times out."""
        wait_for_sync(condition, lambda: f"{what}; got {self.messages[-20:]}", interval=0.02)

    def stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()
        if self._paho is not None:
            self._paho.loop_stop()  # type: ignore[attr-defined]
            self._paho.disconnect()  # type: ignore[attr-defined]


def publish(port: int, topic: str, payload: str, *, retain: bool = False) -> None:
    """One message, from outside the code under test."""
    command = shutil.which("mosquitto_pub")
    if command is not None:
        argv = [command, "-h", HOST, "-p", str(port), "-t", topic, "-m", payload, "-q", "1"]
        subprocess.run([*argv, *(["-r"] if retain else [])], check=False, timeout=10)
        return
    import paho.mqtt.publish as paho_publish

    paho_publish.single(topic, payload, qos=1, retain=retain, hostname=HOST, port=port)


def unique_prefix() -> str:
    """Tests share the broker with others: each uses a topic tree of its own."""
    return f"tandem-test-{uuid.uuid4().hex[:12]}/"
