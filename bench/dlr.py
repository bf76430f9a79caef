"""Receipts through the whole daemon: N submits with immediate receipts, every one correlated.

Usage: .venv/bin/python bench/dlr.py [--messages 100000] [--window 100] [--sessions 1]
                                     [--batch 500] [--loop uvloop|asyncio] [--burst]
                                     [--gc-threshold N] [--stages]
                                     [--receipt-mode same-write|timer|delayed|before-resp]

Processes (on 127.0.0.1): the SMSC simulator (`tandem sim smsc`, each receipt in the same write
as its submit_sm_resp by default; `--receipt-mode timer` sends it on the simulator's next timer
tick instead, as before), answers in hex,
receipts in decimal: the usual carrier mismatch, so every receipt goes through id
canonicalisation) in its own process, and this one, which runs the real `Gateway` (durable
SQLite store in a temporary directory, synchronous=NORMAL, one SMPP link, no tps cap) on uvloop
and feeds it as `intake.accept` does, in batches: store durably, then queue. The intake's own
checks (number normalisation, operator, route) run before the clock starts; their rate is printed
separately.

Figures: how many receipts were correlated (every message must end delivered, checked in the
store itself after the run), correlated receipts per second over the run (first submit to last
delivered message) and over the receipt window alone (first to last receipt applied), submits
per second, and CPU seconds: the gateway (split into its event loop thread and the rest: the
store writer's process or thread, and other threads) and the simulator's. On a shared machine
the wall-clock rates depend on other load; the CPU figures do not. The run fails (exit 1)
unless every message ended delivered.

`--gc-threshold N` sets the collector's thresholds to (N, 20, 100) in the gateway process, to
compare with Python's default (700, 10, 10): full collections walk every live object, and a
daemon with 100,000 messages queued has many.

`--burst` measures the receipt path alone: a first daemon binds as a transmitter and submits
everything (the SMSC keeps the receipts for the system id), then a second daemon on the same
store binds to receive them; the figures are from its start to the last delivery.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, bench/ would come first on sys.path and its http.py would shadow the
# standard library's `http` (which aiohttp imports): put the repository root there instead.
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

import uvloop

from bench import stage_report
from bench.cpu import cpu_seconds
from bench.processes import free_port
from dlr.status import MessageStatus
from gateway.app import Gateway, tune_interpreter_for_daemon
from gateway.config import TandemConfig
from gateway.intake import MessageRequest
from gateway.links.base import LinkState
from gateway.messages import Channel, Message
from gateway.store.base import StatusChange

TEXT = "Your parcel 4711 arrives today between 10:00 and 12:00."
GIVE_UP_AFTER = 900.0  # seconds without completion: report what was reached


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


def gateway_config(
    data_dir: Path,
    smsc_port: int,
    window: int,
    sessions: int,
    bind: str = "transceiver",
    store_writer: str = "process",
    stage_times: bool = False,
) -> TandemConfig:
    return TandemConfig.model_validate(
        {
            "data_dir": str(data_dir),
            "stage_times": stage_times,
            "store": {"synchronous": "NORMAL", "writer": store_writer},
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
                    "bind": bind,
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


def prepare(gateway: Gateway, total: int) -> tuple[list[Message], float]:
    """The intake's checks (number normalisation, operator, route) for every message, timed
    apart: they are the intake's cost, not the receipt path's."""
    started = time.perf_counter()
    prepared = [
        gateway.intake.prepare(
            MessageRequest(
                account="bench", channel=Channel.HTTP, to=number(index), sender="Bench", text=TEXT
            )
        ).message
        for index in range(total)
    ]
    return prepared, time.perf_counter() - started


async def feed(gateway: Gateway, messages: list[Message], batch: int) -> None:
    """What intake.accept does after its checks: store durably, then queue; batch by batch."""
    store, dispatch = gateway.message_store, gateway.dispatcher
    for first in range(0, len(messages), batch):
        part = messages[first : first + batch]
        await store.accept(part)
        for message in part:
            dispatch.enqueue(message)
        await asyncio.sleep(0)  # let the link and the receipts run, as concurrent clients would


async def wait_until(condition: Callable[[], bool], progress: Callable[[], str]) -> None:
    deadline = time.monotonic() + GIVE_UP_AFTER
    next_report = time.monotonic() + 5.0
    while not condition() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        if time.monotonic() >= next_report:
            next_report += 5.0
            print(f"  ... {progress()}", flush=True)


@dataclass(slots=True)
class Measured:
    """What one timed phase cost: wall seconds, CPU seconds of this process and of its loop
    thread, CPU seconds of the simulator process."""

    wall: float
    cpu: float
    loop_cpu: float
    smsc_cpu: float


class Clock:
    def __init__(self, smsc_pid: int) -> None:
        self.smsc_pid = smsc_pid
        self.wall = time.perf_counter()
        self.cpu = cpu_seconds(os.getpid(), exclude=(smsc_pid,))  # with the store writer
        self.loop_cpu = time.thread_time()
        self.smsc_cpu = cpu_seconds(smsc_pid)

    def measured(self) -> Measured:
        return Measured(
            time.perf_counter() - self.wall,
            cpu_seconds(os.getpid(), exclude=(self.smsc_pid,)) - self.cpu,
            time.thread_time() - self.loop_cpu,
            cpu_seconds(self.smsc_pid) - self.smsc_cpu,
        )


_GC_THRESHOLD: int | None = None  # --gc-threshold: measure other collector settings


def tune_collector() -> None:
    """The daemon's collector settings (`tandem run` applies them after start-up), unless
    --gc-threshold asks for others."""
    if _GC_THRESHOLD is None:
        tune_interpreter_for_daemon()
    else:
        gc.collect()
        gc.freeze()
        gc.set_threshold(_GC_THRESHOLD, 20, 100)


async def run_immediate(
    args: argparse.Namespace, data_dir: Path, smsc_port: int, smsc_pid: int
) -> tuple[Gateway, Measured, DeliveredCounter]:
    """Submits and their immediate receipts flow at the same time through one daemon."""
    gateway = Gateway(
        gateway_config(
            data_dir,
            smsc_port,
            args.window,
            args.sessions,
            store_writer=args.store_writer,
            stage_times=args.stages,
        )
    )
    counter = DeliveredCounter()
    gateway.status_listeners.append(counter)
    await gateway.start()
    tune_collector()
    try:
        await wait_bound(gateway)
        messages, checks = prepare(gateway, args.messages)
        print(f"intake checks (before the clock): {args.messages / checks:,.0f}/s")
        clock = Clock(smsc_pid)
        await feed(gateway, messages, args.batch)
        intake = time.perf_counter() - clock.wall
        print(f"messages stored and queued in {intake:.2f} s: {args.messages / intake:,.0f}/s")
        await wait_until(
            lambda: counter.delivered + counter.other_finals >= args.messages,
            lambda: f"{counter.delivered:,} delivered",
        )
        return gateway, clock.measured(), counter
    finally:
        await gateway.stop()


async def submit_only(
    args: argparse.Namespace, data_dir: Path, smsc_port: int, smsc_pid: int
) -> None:
    """Phase 1 of `--burst`: a daemon bound as a transmitter submits everything, so the SMSC
    keeps every receipt for the system id."""
    sender = Gateway(
        gateway_config(
            data_dir,
            smsc_port,
            args.window,
            args.sessions,
            bind="transmitter",
            store_writer=args.store_writer,
        )
    )
    await sender.start()
    try:
        await wait_bound(sender)
        messages, _ = prepare(sender, args.messages)
        clock = Clock(smsc_pid)
        await feed(sender, messages, args.batch)
        await wait_until(
            lambda: sender.stats.submitted >= args.messages,
            lambda: f"{sender.stats.submitted:,} submitted",
        )
        submitted = clock.measured()
        print(
            f"phase 1: {sender.stats.submitted:,} submitted (receipts kept by the SMSC) in "
            f"{submitted.wall:.2f} s: {args.messages / submitted.wall:,.0f}/s, "
            f"{submitted.cpu:.2f} CPU s"
        )
    finally:
        await sender.stop()


async def run_burst(
    args: argparse.Namespace, data_dir: Path, smsc_port: int, smsc_pid: int
) -> tuple[Gateway, Measured, DeliveredCounter]:
    """The receipt path alone: phase 1 submits everything without receiving; a second daemon on
    the same store then binds to receive every receipt."""
    await submit_only(args, data_dir, smsc_port, smsc_pid)
    gc.collect()  # nothing of the first daemon stays for the second one's collector to walk
    gateway = Gateway(
        gateway_config(
            data_dir, smsc_port, args.window, args.sessions, store_writer=args.store_writer
        )
    )
    counter = DeliveredCounter()
    gateway.status_listeners.append(counter)
    clock = Clock(smsc_pid)
    await gateway.start()
    tune_collector()
    try:
        await wait_until(
            lambda: counter.delivered + counter.other_finals >= args.messages,
            lambda: f"{counter.delivered:,} delivered",
        )
        return gateway, clock.measured(), counter
    finally:
        await gateway.stop()


async def run(args: argparse.Namespace, data_dir: Path, smsc_port: int, smsc_pid: int) -> int:
    phase = run_burst if args.burst else run_immediate
    gateway, measured, counter = await phase(args, data_dir, smsc_port, smsc_pid)
    total = args.messages
    stats = gateway.stats
    held = gateway.correlator.stats
    with sqlite3.connect(f"file:{gateway.config.store_path}?mode=ro", uri=True) as db:
        by_status = dict(db.execute("SELECT status, count(*) FROM messages GROUP BY status"))
        segments = db.execute(
            "SELECT count(*) FROM segments WHERE status = 'delivered' AND carrier_id IS NOT NULL"
        ).fetchone()[0]
    delivered = by_status.get("delivered", 0)
    window = counter.last_at - (counter.first_at or counter.last_at)
    kind = "receipts in a burst after a restart" if args.burst else "immediate receipts"
    print(
        f"messages: {total:,}, {kind} (window {args.window} x {args.sessions} session(s), "
        f"receipts {args.receipt_mode}, {args.loop}, gc thresholds {gc.get_threshold()})"
    )
    print(f"store: {dict(sorted(by_status.items()))}")
    print(f"delivered segments with a carrier id: {segments:,}")
    print(
        f"receipts: {stats.receipts:,} received, {stats.receipts_held:,} held early, "
        f"{stats.receipts_unmatched:,} unmatched, {stats.receipts_unparseable:,} unreadable "
        f"(correlator: {held.applied_after_hold:,} after hold, "
        f"{held.applied_from_memory:,} from memory)"
    )
    print(f"correlated: {delivered:,} of {total:,} messages delivered")
    start_of = "restart" if args.burst else "first submit"
    print(
        f"correlated DLRs/s ({start_of} to last delivery, {measured.wall:.2f} s): "
        f"{delivered / measured.wall:,.0f}"
    )
    if window > 0:
        print(
            f"correlated DLRs/s over the receipt window ({window:.2f} s): {delivered / window:,.0f}"
        )
    cpu, loop_cpu = measured.cpu, measured.loop_cpu
    print(
        f"gateway CPU (with its store writer, {args.store_writer}): {cpu:.2f} s "
        f"({delivered / cpu:,.0f} correlated DLRs per CPU second)"
    )
    print(
        f"  of which the event loop thread: {loop_cpu:.2f} s ({loop_cpu / total * 1e6:,.0f} us per "
        f"message), store writer and other threads: {cpu - loop_cpu:.2f} s "
        f"({(cpu - loop_cpu) / total * 1e6:,.0f} us per message)"
    )
    print(
        f"simulator process CPU: {measured.smsc_cpu:.2f} s; "
        f"machine load average: {os.getloadavg()[0]:.1f}"
    )
    if args.stages:
        stage_report.print_in_process()
    if delivered != total:
        print("FAILED: not every message ended delivered")
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument(
        "--store-writer",
        choices=("process", "thread", "inline"),
        default="process",
        help="where the store writer runs (the daemon default: process)",
    )
    parser.add_argument("--sessions", type=int, default=1)
    parser.add_argument("--batch", type=int, default=500, help="messages per intake.accept call")
    parser.add_argument(
        "--burst",
        action="store_true",
        help="the receipt path alone: submit all first, receive the receipts after a restart",
    )
    parser.add_argument(
        "--gc-threshold",
        type=int,
        default=None,
        help="gc.set_threshold(N, 20, 100) in the gateway (default: the daemon's own settings)",
    )
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    stage_report.add_arguments(parser)
    args = parser.parse_args()
    global _GC_THRESHOLD
    _GC_THRESHOLD = args.gc_threshold
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
                *stage_report.simulator_arguments(args),
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
