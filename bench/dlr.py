"""Receipts through the whole daemon: N submits with immediate receipts, every one correlated.

Usage: .venv/bin/python bench/dlr.py [--messages 100000] [--window 100] [--sessions 1]
                                     [--batch 500] [--loop uvloop|asyncio]

Processes (on 127.0.0.1): the SMSC simulator (`tandem sim smsc --dlr-delay 0`, answers in hex,
receipts in decimal: the usual carrier mismatch, so every receipt goes through id
canonicalisation) in its own process, and this one, which runs the real `Gateway` (durable
SQLite store in a temporary directory, synchronous=NORMAL, one SMPP link, no tps cap) on uvloop
and feeds it as `intake.accept` does, in batches: store durably, then queue. The intake's own
checks (number normalisation, operator, route) run before the clock starts; their rate is printed
separately.

Figures: how many receipts were correlated (every message must end delivered, checked in the
store itself after the run), correlated receipts per second over the run (first submit to last
delivered message) and over the receipt window alone (first to last receipt applied), submits
per second, and the CPU seconds of the gateway process. The run fails (exit 1) unless every
message ended delivered.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import uvloop

from dlr.status import MessageStatus
from gateway.app import Gateway
from gateway.config import TandemConfig
from gateway.intake import MessageRequest
from gateway.links.base import LinkState
from gateway.messages import Channel, Message
from gateway.store.base import StatusChange

TEXT = "Your parcel 4711 arrives today between 10:00 and 12:00."
GIVE_UP_AFTER = 900.0  # seconds without completion: report what was reached


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def number(index: int) -> str:
    return f"+4479111{index % 100_000:05d}"


class DeliveredCounter:
    """Status listener: counts messages that reached DELIVERED, with first and last times."""

    def __init__(self) -> None:
        self.delivered = 0
        self.other_finals = 0
        self.first_at: float | None = None
        self.last_at = 0.0

    def message_status_changed(self, message: Message, change: StatusChange) -> None:
        status = message.status
        if status is MessageStatus.DELIVERED:
            now = time.perf_counter()
            if self.first_at is None:
                self.first_at = now
            self.last_at = now
            self.delivered += 1
        elif status is not MessageStatus.SUBMITTED:
            self.other_finals += 1


def gateway_config(data_dir: Path, smsc_port: int, window: int, sessions: int) -> TandemConfig:
    return TandemConfig.model_validate(
        {
            "data_dir": str(data_dir),
            "store": {"synchronous": "NORMAL"},
            "smpp_server": {"enabled": False},
            "http": {"enabled": False},
            "dlr": {"hold_seconds": 120.0},
            "links": [
                {
                    "type": "smpp",
                    "name": "sim",
                    "host": "127.0.0.1",
                    "port": smsc_port,
                    "system_id": "tandem",
                    "window": window,
                    "sessions": sessions,
                    "submit_id_format": "hex",
                    "dlr_id_format": "dec",
                }
            ],
            "routes": [{"name": "everything", "priority": 100, "targets": ["sim"]}],
        }
    )


async def wait_bound(gateway: Gateway, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not any(link.state is LinkState.UP for link in gateway.links.values()):
        if time.monotonic() > deadline:
            raise SystemExit("the link did not bind to the simulator")
        await asyncio.sleep(0.05)


def cpu_seconds(pid: int) -> float:
    """User+system CPU time of a process so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run(args: argparse.Namespace, data_dir: Path, smsc_port: int, smsc_pid: int) -> int:
    gateway = Gateway(gateway_config(data_dir, smsc_port, args.window, args.sessions))
    counter = DeliveredCounter()
    gateway.status_listeners.append(counter)
    await gateway.start()
    try:
        await wait_bound(gateway)
        total = args.messages
        # The intake's checks (number normalisation, operator, route) run before the clock
        # starts: they are the intake's cost, not the receipt path's; their rate is printed.
        checks_started = time.perf_counter()
        prepared = [
            gateway.intake.prepare(
                MessageRequest(
                    account="bench",
                    channel=Channel.HTTP,
                    to=number(index),
                    sender="Bench",
                    text=TEXT,
                )
            )
            for index in range(total)
        ]
        checks = time.perf_counter() - checks_started
        store, dispatch = gateway.message_store, gateway.dispatcher
        cpu_started = time.process_time()
        loop_cpu_started = time.thread_time()
        smsc_cpu_started = cpu_seconds(smsc_pid)
        started = time.perf_counter()
        for first in range(0, total, args.batch):
            batch = [item.message for item in prepared[first : first + args.batch]]
            # What intake.accept does after its checks: store durably, then queue.
            await store.accept(batch)
            for message in batch:
                dispatch.enqueue(message)
            # Let the link and the receipts run between batches, as concurrent clients would.
            await asyncio.sleep(0)
        accepted_at = time.perf_counter()
        deadline = time.monotonic() + GIVE_UP_AFTER
        next_report = time.monotonic() + 5.0
        while counter.delivered + counter.other_finals < total and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            if time.monotonic() >= next_report:
                next_report += 5.0
                print(f"  ... {counter.delivered:,} delivered", flush=True)
        finished = time.perf_counter()
        cpu = time.process_time() - cpu_started
        loop_cpu = time.thread_time() - loop_cpu_started
        smsc_cpu = cpu_seconds(smsc_pid) - smsc_cpu_started
        stats = gateway.stats
        held = gateway.correlator.stats
    finally:
        await gateway.stop()

    with sqlite3.connect(f"file:{gateway.config.store_path}?mode=ro", uri=True) as db:
        by_status = dict(db.execute("SELECT status, count(*) FROM messages GROUP BY status"))
        segments = db.execute(
            "SELECT count(*) FROM segments WHERE status = 'delivered' AND carrier_id IS NOT NULL"
        ).fetchone()[0]
    delivered = by_status.get("delivered", 0)
    elapsed = finished - started
    window = counter.last_at - (counter.first_at or counter.last_at)
    print(f"messages: {total:,}  (window {args.window} x {args.sessions} session(s), {args.loop})")
    print(f"store: {dict(sorted(by_status.items()))}")
    print(f"delivered segments with a carrier id: {segments:,}")
    print(
        f"receipts: {stats.receipts:,} received, {stats.receipts_held:,} held early, "
        f"{stats.receipts_unmatched:,} unmatched, {stats.receipts_unparseable:,} unreadable "
        f"(correlator: {held.applied_after_hold:,} after hold, "
        f"{held.applied_from_memory:,} from memory)"
    )
    print(f"correlated: {delivered:,} of {total:,} messages delivered")
    intake = accepted_at - started
    print(f"intake checks (before the clock): {total / checks:,.0f}/s")
    print(f"messages stored and queued in {intake:.2f} s: {total / intake:,.0f}/s")
    print(
        f"correlated DLRs/s over the run (first submit to last delivery, {elapsed:.2f} s): "
        f"{delivered / elapsed:,.0f}"
    )
    if window > 0:
        print(
            f"correlated DLRs/s over the receipt window ({window:.2f} s): {delivered / window:,.0f}"
        )
    print(
        f"gateway process CPU: {cpu:.2f} s ({delivered / cpu:,.0f} correlated DLRs per CPU second)"
    )
    print(
        f"  of which the event loop thread: {loop_cpu:.2f} s ({loop_cpu / total * 1e6:,.0f} us per "
        f"message), store and other threads: {cpu - loop_cpu:.2f} s "
        f"({(cpu - loop_cpu) / total * 1e6:,.0f} us per message)"
    )
    print(
        f"simulator process CPU: {smsc_cpu:.2f} s; machine load average: {os.getloadavg()[0]:.1f}"
    )
    if delivered != total:
        print("FAILED: not every message ended delivered")
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--sessions", type=int, default=1)
    parser.add_argument("--batch", type=int, default=500, help="messages per intake.accept call")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    args = parser.parse_args()
    smsc_port = free_port()
    with tempfile.TemporaryDirectory(prefix="tandem-bench-dlr-") as workdir:
        log = open(Path(workdir) / "smsc.log", "wb")  # noqa: SIM115 - lives as long as the process
        simulator = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gateway.cli",
                "sim",
                "smsc",
                "--host",
                "127.0.0.1",
                "--port",
                str(smsc_port),
                "--dlr-delay",
                "0",
                "--id-format",
                "hex",
                "--dlr-id-format",
                "dec",
            ],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 20
            while True:
                with socket.socket() as probe:
                    if probe.connect_ex(("127.0.0.1", smsc_port)) == 0:
                        break
                if simulator.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the simulator did not start")
                time.sleep(0.05)
            loop_factory = uvloop.new_event_loop if args.loop == "uvloop" else None
            with asyncio.Runner(loop_factory=loop_factory) as runner:
                return runner.run(run(args, Path(workdir) / "data", smsc_port, simulator.pid))
        finally:
            simulator.send_signal(signal.SIGTERM)
            try:
                simulator.wait(15)
            except subprocess.TimeoutExpired:
                simulator.kill()
                simulator.wait()
            log.close()
            if os.environ.get("TANDEM_BENCH_SHOW_SMSC"):
                print((Path(workdir) / "smsc.log").read_text())


if __name__ == "__main__":
    sys.exit(main())
