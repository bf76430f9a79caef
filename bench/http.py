"""HTTP API throughput, end to end: POST /v1/messages through to the SMSC simulator, with every
receipt callback received; OTP send+check pairs; optionally the same load against Kannel.

Usage: .venv/bin/python bench/http.py [--requests 20000] [--concurrency 64] [--otp-pairs 5000]
                                      [--kannel] [--rounds 1] [--uvloop]
                                      [--receipt-mode same-write|timer|delayed|before-resp]
                                      [--stages]

Processes (all on 127.0.0.1): the SMSC simulator (`tandem sim smsc`; each receipt in the same
write as its submit_sm_resp by default, `--receipt-mode` for the others), the
gateway under test, the customer's callback receiver (`bench.callback_sink`, one per run, the
same for both gateways) and this one (the load generator). Tandem runs as
`tandem run` with a generated config: durable SQLite store (WAL, synchronous=NORMAL), one SMPP
bind with a window of 100, no tps cap; `--uvloop` runs the same daemon on uvloop instead.
Kannel (Debian's `kannel` 1.4.5: bearerbox + smsbox) gets the same simulator, one bind with
100 pending submits, a spool message store, and the same requests as sendsms GETs with a
dlr-url pointing at the sink.

Each request sends one message to one recipient with a callback URL. Figures: accepted/s (the
request phase), p50/p99 request latency, and the time until the last final receipt callback
arrived. Every message must be delivered and every callback received, or the run says so.
`--rounds N` runs both gateways N times, taking turns (Tandem first in odd rounds, Kannel
first in even ones), each round with a fresh daemon and store; `--stages` prints where
Tandem's messages waited (gateway.stages, read from the daemon's GET /admin/stages).
"""

from __future__ import annotations

import sys
from pathlib import Path

# This script is named like the standard library's `http` package; run as a script, its folder
# comes first on sys.path and would shadow it (aiohttp imports http.cookies). Drop the folder.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != _HERE]

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import stage_report
from bench.cpu import cpu_seconds
from bench.processes import free_port, simulator_link_toml, start, stop, wait_for_port

PYTHON = sys.executable
KEYS_CREATE = (PYTHON, "-m", "gateway.cli", "keys", "create")
SIM_SMSC = (PYTHON, "-m", "gateway.cli", "sim", "smsc")
TEXT = "Your parcel 4711 arrives today between 10:00 and 12:00."


def number(index: int, prefix: str = "447911") -> str:
    return f"{prefix}{index:06d}"


class CallbackSink:
    """The customer's callback endpoint for one run: `bench.callback_sink` in a process of its
    own (a receiver in this process would share the load generator's loop), the same for
    both gateways."""

    def __init__(self, workdir: Path, kind: str, expected: int, secret: str | None = None) -> None:
        self.port = free_port()
        argv = [PYTHON, "-m", "bench.callback_sink", "--kind", kind, "--port", str(self.port)]
        argv += ["--expected", str(expected)] + (["--secret", secret] if secret else [])
        self.process = start(argv, workdir / "sink.log", cwd=ROOT)
        wait_for_port(self.port)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def cpu(self) -> float:
        return cpu_seconds(self.process.pid)

    async def stats(self) -> dict[str, Any]:
        async with (
            aiohttp.ClientSession() as session,
            session.get(self.url("/stats")) as response,
        ):
            document: dict[str, Any] = await response.json()
            return document

    async def wait_done(self, timeout: float) -> dict[str, Any]:
        """Its counts once every expected final callback arrived (`done_at` set: when the last
        one did, on the clock of time.perf_counter()), or after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            stats = await self.stats()
            if stats["done_at"] is not None or time.monotonic() > deadline:
                return stats
            await asyncio.sleep(0.02)

    def stop(self) -> None:
        stop(self.process, timeout=15.0)


@dataclass
class Result:
    name: str
    requests: int
    accepted: int
    request_seconds: float
    latencies: list[float]
    callbacks_seconds: float
    delivered: int
    callbacks: int
    errors: dict[str, int]
    cpu: float = 0.0  # CPU seconds the gateway's processes used for the run
    load_cpu: float = 0.0  # CPU seconds the load generator and the callback sink used

    def report(self) -> str:
        p50 = statistics.median(self.latencies) * 1000
        p99 = statistics.quantiles(self.latencies, n=100)[98] * 1000
        rate = self.accepted / self.request_seconds
        complete = "all delivered" if self.delivered == self.requests else "INCOMPLETE"
        return (
            f"{self.name:<8} {self.accepted:>6}/{self.requests} accepted in "
            f"{self.request_seconds:6.2f} s = {rate:>7,.0f} accepted/s | p50 {p50:6.1f} ms "
            f"p99 {p99:6.1f} ms | last callback after {self.callbacks_seconds:6.2f} s "
            f"(end to end {self.requests / self.callbacks_seconds:,.0f} msgs/s) | "
            f"{self.delivered} delivered, {self.callbacks} callbacks ({complete})"
            + (f" | errors {self.errors}" if self.errors else "")
            + f"\n{'':<8} gateway CPU {self.cpu:6.2f} s = {self.requests / self.cpu:>7,.0f} "
            "messages per gateway CPU-second (request to final callback) | load generator "
            f"and sink CPU {self.load_cpu:6.2f} s"
        )

    @property
    def complete(self) -> bool:
        """Every message delivered, every final callback received, no request refused."""
        return (
            self.delivered == self.requests
            and self.callbacks >= self.requests
            and self.accepted == self.requests
        )

    @property
    def rate(self) -> float:
        return self.accepted / self.request_seconds


async def drive(
    requests: int,
    concurrency: int,
    send: Callable[[aiohttp.ClientSession, int], Awaitable[int]],
) -> tuple[float, list[float], dict[str, int]]:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    cursor = iter(range(requests))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            for index in cursor:
                started = time.perf_counter()
                try:
                    status = await send(session, index)
                except aiohttp.ClientError as exc:
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                    continue
                latencies.append(time.perf_counter() - started)
                if status >= 300:
                    errors[str(status)] = errors.get(str(status), 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started, latencies, errors


async def wait_ready(url: str, ready: Callable[[int, str], bool], timeout: float = 60.0) -> None:
    """Poll `url` until `ready(status, text)`: the clock of a run starts once the gateway is
    bound to the SMSC, for both gateways alike, not after a fixed sleep that a loaded machine
    may outlast (a bind still under way would count against whichever gateway it hit)."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(url) as response:
                    if ready(response.status, await response.text()):
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"{url} did not say ready within {timeout:.0f} s")
            await asyncio.sleep(0.1)


async def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(url) as response:
                    await response.read()
                    return
            except aiohttp.ClientError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)


# --- Tandem ---------------------------------------------------------------------------------


def tandem_config(workdir: Path, http_port: int, smsc_port: int, args: argparse.Namespace) -> Path:
    path = workdir / "tandem.toml"
    path.write_text(
        f"""
data_dir = "{workdir / "data"}"
{stage_report.config_line(args)}[store]
synchronous = "NORMAL"
writer = "{args.store_writer}"
[smpp_server]
enabled = false
[http]
host = "127.0.0.1"
port = {http_port}
callback_concurrency = 64
[egress]
allow = ["127.0.0.1"]  # the callback sink of this bench
ports = ["1024-65535"]
[otp]
prefix_max_sends = 0
[simulator]
enabled = false
{simulator_link_toml(smsc_port, 100)}""",
        encoding="utf-8",
    )
    return path


async def bench_tandem(args: argparse.Namespace, workdir: Path, smsc_port: int) -> Result:
    http_port = free_port()
    config = tandem_config(workdir, http_port, smsc_port, args)
    created = subprocess.run(
        [*KEYS_CREATE, "-c", str(config), "--name", "bench", "--rps", "1e6", "--mps", "1e6"],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    ).stdout
    key = created.split("key:", 1)[1].split()[0]
    secret = created.split("callback secret:", 1)[1].split()[0]
    if os.environ.get("TANDEM_BENCH_DAEMON"):  # e.g. a profiling wrapper
        argv = [PYTHON, os.environ["TANDEM_BENCH_DAEMON"], str(config)]
    elif args.uvloop:
        runner = (
            "import sys, uvloop; from gateway.app import serve; from gateway.config import "
            "load_config; sys.exit(uvloop.run(serve(load_config(sys.argv[1]))))"
        )
        argv = [PYTHON, "-c", runner, str(config)]
    else:
        argv = [PYTHON, "-m", "gateway.cli", "run", "-c", str(config)]
    sink = CallbackSink(workdir, "tandem", args.requests, secret)
    daemon = start(argv, workdir / "tandem.log", cwd=ROOT)
    base = f"http://127.0.0.1:{http_port}"
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    callback_url = sink.url("/tandem")
    try:
        # Ready: the store takes writes and the route's link is bound (gateway.metrics).
        await wait_ready(base + "/readyz", lambda status, _text: status == 200)

        async def send(session: aiohttp.ClientSession, index: int) -> int:
            body = json.dumps(
                {
                    "to": "+" + number(index),
                    "from": "Bench",
                    "text": TEXT,
                    "callback_url": callback_url,
                }
            )
            async with session.post(base + "/v1/messages", data=body, headers=headers) as response:
                await response.read()
                return response.status

        started, cpu_started = time.perf_counter(), cpu_seconds(daemon.pid)
        load_started = time.process_time() + sink.cpu()
        seconds, latencies, errors = await drive(args.requests, args.concurrency, send)
        stats = await sink.wait_done(args.callback_timeout)
        callbacks_seconds = (stats["done_at"] or time.perf_counter()) - started
        cpu = cpu_seconds(daemon.pid) - cpu_started
        result = Result(
            "tandem",
            args.requests,
            len(latencies) - sum(errors.values()),
            seconds,
            latencies,
            callbacks_seconds,
            stats["delivered"],
            stats["callbacks"],
            errors,
            cpu,
            time.process_time() + sink.cpu() - load_started,
        )
        if stats["bad_signatures"]:
            result.errors["bad_signature"] = stats["bad_signatures"]
        if args.stages:
            print(f"tandem   where messages waited (load average {os.getloadavg()[0]:.2f}):")
            await asyncio.to_thread(stage_report.print_from_daemon, http_port, workdir / "data")
        if args.otp_pairs:
            print(await bench_otp(args, base, headers, daemon.pid))
        return result
    finally:
        stop(daemon, timeout=15.0)
        sink.stop()


async def bench_otp(
    args: argparse.Namespace, base: str, headers: dict[str, str], daemon_pid: int
) -> str:
    approved = 0

    async def pair(session: aiohttp.ClientSession, index: int) -> int:
        nonlocal approved
        body = json.dumps({"to": "+" + number(index, "447912"), "code": "482916"})
        async with session.post(base + "/v1/otp", data=body, headers=headers) as response:
            document = await response.json()
            if response.status != 201:
                return response.status
        check = json.dumps({"code": "482916"})
        path = f"{base}/v1/otp/{document['id']}/check"
        async with session.post(path, data=check, headers=headers) as response:
            outcome = await response.json()
            approved += outcome.get("status") == "approved"
            return response.status

    cpu_started = cpu_seconds(daemon_pid)
    seconds, latencies, errors = await drive(args.otp_pairs, args.concurrency, pair)
    cpu = cpu_seconds(daemon_pid) - cpu_started
    p50 = statistics.median(latencies) * 1000
    return (
        f"otp      {approved}/{args.otp_pairs} send+check pairs approved in {seconds:6.2f} s = "
        f"{approved / seconds:>7,.0f} pairs/s | p50 pair {p50:6.1f} ms | "
        f"{approved / cpu:,.0f} pairs per gateway CPU-second"
        + (f" | errors {errors}" if errors else "")
    )


# --- Kannel ---------------------------------------------------------------------------------


def kannel_config(workdir: Path, smsc_port: int) -> tuple[Path, int, int]:
    """One kannel.conf for both boxes, as Kannel expects; its sendsms and admin ports."""
    admin, box, sendsms = free_port(), free_port(), free_port()
    (workdir / "spool").mkdir()
    path = workdir / "kannel.conf"
    path.write_text(
        f"""
group = core
admin-port = {admin}
admin-password = bench
admin-allow-ip = "127.0.0.1"
smsbox-port = {box}
box-allow-ip = "127.0.0.1"
log-level = 2
log-file = "{workdir / "bearerbox.log"}"
dlr-storage = internal
store-type = spool
store-location = "{workdir / "spool"}"

group = smsc
smsc = smpp
smsc-id = sim
host = 127.0.0.1
port = {smsc_port}
transceiver-mode = true
smsc-username = kannel
smsc-password = secret
system-type = "VMA"
max-pending-submits = 100
msg-id-type = 0x03

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = {box}
sendsms-port = {sendsms}
log-level = 2
log-file = "{workdir / "smsbox.log"}"

group = sendsms-user
username = bench
password = bench
max-messages = 10
concatenation = true
""",
        encoding="utf-8",
    )
    return path, sendsms, admin


async def bench_kannel(args: argparse.Namespace, workdir: Path, smsc_port: int) -> Result:
    bearerbox_bin, smsbox_bin = shutil.which("bearerbox"), shutil.which("smsbox")
    if bearerbox_bin is None or smsbox_bin is None:
        raise SystemExit("kannel is not installed: apt-get update && apt-get install -y kannel")
    config, sendsms_port, admin_port = kannel_config(workdir, smsc_port)
    sink = CallbackSink(workdir, "kannel", args.requests)
    bearerbox = start([bearerbox_bin, str(config)], workdir / "bearerbox.out")
    await asyncio.sleep(1.0)
    smsbox = start([smsbox_bin, str(config)], workdir / "smsbox.out")
    base = f"http://127.0.0.1:{sendsms_port}/cgi-bin/sendsms"
    try:
        await wait_http(f"{base}?username=nobody&password=x")
        # Ready: bearerbox's status page shows the SMSC connection online.
        await wait_ready(
            f"http://127.0.0.1:{admin_port}/status.txt?password=bench",
            lambda status, text: status == 200 and "(online" in text,
        )

        async def send(session: aiohttp.ClientSession, index: int) -> int:
            dlr_url = sink.url(f"/kannel?i={index}&s=%d")
            query = urllib.parse.urlencode(
                {
                    "username": "bench",
                    "password": "bench",
                    "from": "Bench",
                    "to": number(index),
                    "text": TEXT,
                    "dlr-mask": "3",
                    "dlr-url": dlr_url,
                }
            )
            async with session.get(f"{base}?{query}") as response:
                await response.read()
                return response.status

        pids = (bearerbox.pid, smsbox.pid)
        started, cpu_started = time.perf_counter(), cpu_seconds(*pids)
        load_started = time.process_time() + sink.cpu()
        seconds, latencies, errors = await drive(args.requests, args.concurrency, send)
        stats = await sink.wait_done(args.callback_timeout)
        return Result(
            "kannel",
            args.requests,
            len(latencies) - sum(errors.values()),
            seconds,
            latencies,
            (stats["done_at"] or time.perf_counter()) - started,
            stats["delivered"],
            stats["callbacks"],
            errors,
            cpu_seconds(*pids) - cpu_started,
            time.process_time() + sink.cpu() - load_started,
        )
    finally:
        stop(smsbox, timeout=15.0)
        stop(bearerbox, timeout=15.0)
        sink.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--otp-pairs", type=int, default=5_000, help="0: skip the OTP run")
    parser.add_argument("--kannel", action="store_true", help="also run the load against Kannel")
    parser.add_argument("--uvloop", action="store_true", help="run the Tandem daemon on uvloop")
    parser.add_argument("--callback-timeout", type=float, default=300.0)
    parser.add_argument("--keep", action="store_true", help="keep the work directory and logs")
    parser.add_argument(
        "--rounds", type=int, default=1, help="with --kannel: rounds of both, taking turns"
    )
    parser.add_argument(
        "--store-writer",
        choices=("process", "thread", "inline"),
        default="process",
        help="where the daemon's store writer runs (its default: process)",
    )
    stage_report.add_arguments(parser)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="tandem-bench-http-"))
    smsc_port = free_port()
    simulator = start(
        [
            *SIM_SMSC,
            "--host",
            "127.0.0.1",
            "--port",
            str(smsc_port),
            "--dlr-delay",
            "0",
            *stage_report.simulator_arguments(args),
        ],
        workdir / "simulator.log",
        cwd=ROOT,
    )
    print(
        f"http: {args.requests} requests at concurrency {args.concurrency}, receipts "
        f"{args.receipt_mode}, {'uvloop' if args.uvloop else 'asyncio'} daemon"
    )
    ratios: list[float] = []
    try:
        await asyncio.sleep(1.0)
        for round_number in range(1, (args.rounds if args.kannel else 1) + 1):
            order = ["tandem", "kannel"] if args.kannel else ["tandem"]
            if round_number % 2 == 0:
                order.reverse()
            results: dict[str, Result] = {}
            for name in order:
                directory = workdir / f"{name}-{round_number}"
                directory.mkdir()
                run = bench_tandem if name == "tandem" else bench_kannel
                results[name] = await run(args, directory, smsc_port)
                print(results[name].report())
                args.otp_pairs = 0 if name == "tandem" else args.otp_pairs  # OTP once
            if args.kannel:
                tandem, kannel = results["tandem"], results["kannel"]
                ratios.append(kannel.callbacks_seconds / tandem.callbacks_seconds)
                print(
                    f"ratio    round {round_number} ({' then '.join(order)}), tandem/kannel: "
                    f"accepted/s {tandem.rate / kannel.rate:.2f}x, "
                    "end to end (first request to last callback) "
                    f"{ratios[-1]:.2f}x, "
                    f"messages per gateway CPU-second {kannel.cpu / tandem.cpu:.2f}x | "
                    f"load average {os.getloadavg()[0]:.2f} | "
                    + ("both complete" if tandem.complete and kannel.complete else "INCOMPLETE")
                )
        if len(ratios) > 1:
            print(
                f"ratios   end to end over {len(ratios)} rounds: "
                + ", ".join(f"{r:.2f}x" for r in ratios)
                + f" (lowest {min(ratios):.2f}x)"
            )
    finally:
        stop(simulator, timeout=15.0)
        if args.keep:
            print(f"work directory: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONPATH", str(ROOT))
    asyncio.run(main())
