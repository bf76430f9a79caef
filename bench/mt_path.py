"""The MT path end to end: N accepted messages -> durable store -> queue -> SMPP link -> SMSC
simulator (its own process) -> receipts back -> delivered.

Usage: .venv/bin/python bench/mt_path.py [--messages 100000] [--accept intake|http]
           [--concurrency 64] [--batch 1] [--window 100] [--sessions 1] [--dlr-delay 0]
           [--rate 0] [--loop uvloop|asyncio] [--record]
           [--receipt-mode same-write|timer|delayed|before-resp] [--stages]
           [--modem-pool 0] [--modem-rate 30] [--scrape 0] [--metrics on|off]
           [--mqtt mqtt://127.0.0.1:1883] [--store sqlite|postgresql] [--dsn DSN] [--count-db]

Accept side, two options:
  intake  the gateway runs in this process and `concurrency` tasks call `gateway.intake.accept`
          with `batch` requests each (the door every channel uses: numbers, routes, parts,
          durable store, dispatch), so the figure is the daemon's path without HTTP parsing.
  http    the gateway runs as `tandem run` in its own process and `concurrency` connections
          POST /v1/messages (one recipient each) with aiohttp.
Either way the daemon has a SQLite store (WAL, synchronous=NORMAL), or with `--store postgresql`
a PostgreSQL one (a schema of the run's own at `--dsn`, dropped after; `--count-db` relays its
connections through bench/pgwire.py and prints statements and round trips per message), one
SMPP link with
`sessions` binds of `window`, no tps cap; the simulator answers every submit and sends the
receipt as `--receipt-mode` says: in the same write as the submit_sm_resp (the default, as
SMSCs that answer fast do), or after `dlr-delay` seconds on its timer (timer), plus jitter
(delayed), or just before the submit_sm_resp (before-resp). `--stages` prints where messages
waited (gateway.stages). `--rate R` paces the intake callers to R messages/s in all:
without it intake can outrun the link, the queue absorbs the difference, and the latency
figures then measure time spent queued.

A bind keeps at most `window` messages the store has not recorded yet (the crash-duplicate
bound), so one bind's rate is about window / (answer + commit time); `--sessions 2` doubles it.

`--modem-pool N` (intake only) runs N GSM modem links beside the SMPP link, each on an emulated
modem of its own (`tandem sim modem` processes, on ptys, so their CPU is not the daemon's), in
one `strategy = "even"` route for +254, and keeps them busy at `--modem-rate` parts a minute
each (a fast real modem's pace) for the whole run: what a modem pool costs the SMPP path. Every
figure below counts the SMPP link's messages only.

`--scrape S` has a process of its own GET the daemon's /metrics every S seconds for the whole
run (`[metrics] listen`, no token); `--metrics off` turns the exporter and its latency
histograms off (bench/scrape.py). The scraper's CPU is not counted as the gateway's.

`--mqtt URL` adds an `[mqtt]` event sink on that broker (its own topic prefix): every status
the gateway records goes out as an event, so the run shows what publishing costs the path;
(intake mode) the sink's counters are printed at the end.

Figures: accepted/s; submitted messages/s sustained (N over first accept -> last submit_sm_resp
recorded); p50/p99 accept-to-submit latency (message created by the intake -> its submit_sm_resp
recorded, from the store's own timestamps); time until every receipt was applied. Loss check:
the simulator's count of accepted submits (and with --record, each text exactly once) and the
final status of every message in the store.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# bench/http.py would shadow the standard library's `http` (aiohttp imports http.cookies).
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from bench import pgstore, scrape, stage_report
from bench.cpu import cpu_seconds
from bench.processes import free_port, simulator_link_toml, start, stop

PYTHON = sys.executable
TANDEM = (PYTHON, "-m", "gateway.cli")
TEXT = "Bench {index:07d}: your parcel arrives today between 10:00 and 12:00."
POLL_SECONDS = 0.25
UNLIMITED = ("--rps", "1e6", "--mps", "1e6")


def destination(index: int) -> str:
    return f"+447911{index % 1_000_000:06d}"


def write_config(
    workdir: Path,
    args: argparse.Namespace,
    smsc_port: int,
    http_port: int,
    metrics_port: int,
    store: pgstore.StoreRun,
) -> Path:
    path = workdir / "tandem.toml"
    link = simulator_link_toml(smsc_port, args.window, args.sessions)
    extras = f"{modem_pool_toml(workdir, args)}{scrape.config_section(args, metrics_port)}"
    path.write_text(
        f"""
data_dir = "{workdir / "data"}"
{stage_report.config_line(args)}[store]
{store.toml()}synchronous = "NORMAL"
writer = "{args.store_writer}"
[smpp_server]
enabled = false
[http]
enabled = {"true" if args.accept == "http" else "false"}
host = "127.0.0.1"
port = {http_port}
[simulator]
enabled = false
{link}{extras}{mqtt_toml(args)}""",
        encoding="utf-8",
    )
    return path


def mqtt_toml(args: argparse.Namespace) -> str:
    if not args.mqtt:
        return ""
    return (
        f'\n[mqtt]\nurl = "{args.mqtt}"\ntopic_prefix = "bench-{os.getpid()}/"\n'
        f'client_id = "bench-{os.getpid()}"\nbuffer = {args.mqtt_buffer}\n'
    )


def modem_device(workdir: Path, number: int) -> Path:
    return workdir / f"modem{number}"


def modem_pool_toml(workdir: Path, args: argparse.Namespace) -> str:
    if not args.modem_pool:
        return ""
    names = [f"sim-{number}" for number in range(args.modem_pool)]
    links = "".join(
        f"""
[[links]]
type = "modem"
name = "{name}"
device = "{modem_device(workdir, number)}"
messages_per_minute = {args.modem_rate}
"""
        for number, name in enumerate(names)
    )
    return (
        links
        + f"""
[[routes]]
name = "kenya"
priority = 10
prefixes = ["+254"]
strategy = "even"
targets = {json.dumps(names)}
"""
    )


def start_modem_emulators(workdir: Path, count: int) -> list[subprocess.Popen[bytes]]:
    emulators = [
        start(
            [
                *TANDEM,
                "sim",
                "modem",
                "--link",
                str(modem_device(workdir, n)),
                "--report-delay",
                "1",
            ],
            workdir / f"modem{n}.log",
            cwd=ROOT,
        )
        for n in range(count)
    ]
    deadline = time.monotonic() + 30
    while not all(modem_device(workdir, n).exists() for n in range(count)):
        if time.monotonic() > deadline:
            raise SystemExit("mt_path: the modem emulators did not start")
        time.sleep(0.05)
    return emulators


# Background tasks of the accept side (the modem pool's traffic), stopped with the gateway.
BACKGROUND: list[asyncio.Task[None]] = []
MODEM_SENT = [0]


class StoreWatch:
    """Read-only looks into the daemon's store: its SQLite file (WAL lets a second reader in),
    or its PostgreSQL schema."""

    def __init__(self, database: Path, store: pgstore.StoreRun) -> None:
        self.database = database
        self.store = store

    def _query(self, sql: str) -> list[Any]:
        if self.store.postgresql:
            return self.store.query(sql)
        with sqlite3.connect(f"file:{self.database}?mode=ro", uri=True, timeout=30) as db:
            return db.execute(sql).fetchall()

    # Only the SMPP link's messages count (a modem pool may run beside it: --modem-pool).
    def count_by_status(self) -> Counter[str]:
        return Counter(
            dict(
                self._query(
                    "SELECT status, count(*) FROM messages WHERE destination LIKE '447911%' "
                    "GROUP BY status"
                )
            )
        )

    def modem_statuses(self) -> Counter[str]:
        return Counter(
            dict(
                self._query(
                    "SELECT status, count(*) FROM messages WHERE destination LIKE '254%' "
                    "GROUP BY status"
                )
            )
        )

    def submitted(self) -> int:
        rows = self._query(
            "SELECT count(*) FROM segments WHERE submitted_at IS NOT NULL AND link = 'sim'"
        )
        return int(rows[0][0])

    def timings(self) -> tuple[float, float, list[float]]:
        """(first accept, last submit, accept-to-submit latencies) over every message."""
        rows = self._query(
            "SELECT m.created_at, s.submitted_at FROM messages m JOIN segments s "
            "ON s.message_id = m.id AND s.idx = 0 WHERE s.submitted_at IS NOT NULL "
            "AND s.link = 'sim'"
        )
        first = min(created for created, _ in rows)
        last = max(submitted for _, submitted in rows)
        return first, last, [submitted - created for created, submitted in rows]


async def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll `condition` (run in a thread: it reads SQLite) until true; returns the time."""
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(condition):
        if time.monotonic() > deadline:
            raise SystemExit(f"mt_path: timed out waiting for {what}")
        await asyncio.sleep(POLL_SECONDS)
    return time.time()


# --- accept side ------------------------------------------------------------------------------


async def accept_in_process(
    args: argparse.Namespace, config_path: Path, store: pgstore.StoreRun
) -> tuple[float, Any]:
    """The gateway in this process; `concurrency` tasks feed `gateway.intake.accept`."""
    from gateway.app import Gateway, tune_interpreter_for_daemon
    from gateway.config import load_config
    from gateway.intake import MessageRequest
    from gateway.links import LinkState
    from gateway.messages import Channel

    gateway = Gateway(load_config(config_path))
    await gateway.start()
    tune_interpreter_for_daemon()  # as `tandem run` does after start-up
    deadline = time.monotonic() + 10
    while any(link.state is not LinkState.UP for link in gateway.links.values()):
        if time.monotonic() > deadline:
            raise SystemExit("mt_path: the links did not come up")
        await asyncio.sleep(0.01)
    if args.modem_pool:
        BACKGROUND.append(asyncio.create_task(modem_traffic(gateway, args)))
    indexes = iter(range(args.messages))
    store.traffic_starts()
    started = time.perf_counter()
    # --rate paces the offered load (all callers together); 0 offers as fast as intake takes.
    interval = args.batch / args.rate if args.rate else 0.0
    next_slot = [started]

    async def caller() -> None:
        while True:
            if interval:
                slot = next_slot[0]
                next_slot[0] = slot + interval
                delay = slot - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            batch = [
                MessageRequest(
                    account="bench",
                    channel=Channel.HTTP,
                    to=destination(index),
                    sender="Bench",
                    text=TEXT.format(index=index),
                )
                # range first: zip stops on it without drawing one index too many
                for _, index in zip(range(args.batch), indexes, strict=False)
            ]
            if not batch:
                return
            await gateway.intake.accept(batch)

    await asyncio.gather(*(caller() for _ in range(args.concurrency)))
    return time.perf_counter() - started, gateway


async def modem_traffic(gateway: Any, args: argparse.Namespace) -> None:
    """The pool's own traffic for the whole run: `modem_rate` parts a minute per modem."""
    from gateway.intake import MessageRequest
    from gateway.messages import Channel

    interval = 60.0 / (args.modem_rate * args.modem_pool)
    while True:
        number = MODEM_SENT[0]
        MODEM_SENT[0] += 1
        request = MessageRequest(
            account="bench",
            channel=Channel.HTTP,
            to=f"+254712{number % 1_000_000:06d}",
            sender="Bench",
            text=f"Clinic reminder {number}: your appointment is tomorrow at 09:00.",
        )
        await gateway.intake.accept([request])
        await asyncio.sleep(interval)


async def accept_over_http(
    args: argparse.Namespace, http_port: int, key: str, store: pgstore.StoreRun
) -> float:
    import aiohttp

    url = f"http://127.0.0.1:{http_port}/v1/messages"
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    indexes = iter(range(args.messages))
    failures: Counter[str] = Counter()
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        deadline = time.monotonic() + 20
        while True:  # the daemon is starting
            try:
                async with session.get(f"http://127.0.0.1:{http_port}/openapi.json") as response:
                    await response.read()
                    break
            except aiohttp.ClientError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # the SMPP bind comes up

        async def caller() -> None:
            for index in indexes:
                body = json.dumps(
                    {"to": destination(index), "from": "Bench", "text": TEXT.format(index=index)}
                )
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    if response.status != 202:
                        failures[str(response.status)] += 1

        store.traffic_starts()
        started = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(args.concurrency)))
        elapsed = time.perf_counter() - started
    if failures:
        print(f"mt_path: requests refused: {dict(failures)}")
    return elapsed


# --- the run ----------------------------------------------------------------------------------


def simulator_accepted(log: Path) -> int:
    found = re.findall(r"\baccepted=(\d+)", log.read_text(encoding="utf-8", errors="replace"))
    return int(found[-1]) if found else -1


def recorded_texts(record: Path) -> Counter[str]:
    counts: Counter[str] = Counter()
    with record.open(encoding="utf-8") as lines:
        for line in lines:
            entry = json.loads(line)
            if entry["status"] == 0:
                counts[entry["text"]] += 1
    return counts


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def bench(args: argparse.Namespace, workdir: Path) -> bool:
    smsc_port, http_port = free_port(), free_port()
    record = workdir / "smsc.record"
    sim_argv = [
        *TANDEM,
        "sim",
        "smsc",
        "--port",
        str(smsc_port),
        "--dlr-delay",
        str(args.dlr_delay),
        *stage_report.simulator_arguments(args),
    ]
    if args.record:
        sim_argv += ["--record", str(record)]
    smsc = start(sim_argv, workdir / "smsc.log", cwd=ROOT)
    emulators = start_modem_emulators(workdir, args.modem_pool) if args.modem_pool else []
    metrics_port = free_port()
    scraper = scrape.Scraper(args, metrics_port, workdir / "scraper.log")
    scraper.start()  # its first scrapes fail until the daemon listens: counted, not fatal
    others = (smsc.pid, *(emulator.pid for emulator in emulators))
    if scraper.pid is not None:
        others += (scraper.pid,)
    store = pgstore.StoreRun(args, workdir)
    config = write_config(workdir, args, smsc_port, http_port, metrics_port, store)
    watch = StoreWatch(workdir / "data" / "tandem.db", store)
    daemon: subprocess.Popen[bytes] | None = None
    gateway: Any = None
    n = args.messages
    gateway_pid = os.getpid()
    cpu_at_start = {"gateway": 0.0, "smsc": 0.0}
    cpu_at_end = dict(cpu_at_start)
    try:
        time.sleep(0.5)  # the simulator binds its port
        if args.accept == "intake":
            cpu_at_start = {
                "gateway": cpu_seconds(gateway_pid, exclude=others),
                "smsc": cpu_seconds(smsc.pid),
            }
            accept_seconds, gateway = await accept_in_process(args, config, store)
        else:
            created = subprocess.run(
                [*TANDEM, "keys", "create", "-c", str(config), "--name", "bench", *UNLIMITED],
                check=True,
                capture_output=True,
                text=True,
                cwd=ROOT,
            ).stdout
            key = created.split("key:", 1)[1].split()[0]
            runner = (
                "import sys, asyncio\n"
                "from gateway.app import serve\n"
                "from gateway.config import load_config\n"
                "config = load_config(sys.argv[2])\n"
                "if sys.argv[1] == 'uvloop':\n"
                "    import uvloop\n"
                "    sys.exit(uvloop.run(serve(config)))\n"
                "sys.exit(asyncio.run(serve(config)))\n"
            )
            daemon = start(
                [PYTHON, "-c", runner, args.loop, str(config)], workdir / "tandem.log", cwd=ROOT
            )
            gateway_pid = daemon.pid
            cpu_at_start = {
                "gateway": cpu_seconds(gateway_pid, exclude=others),
                "smsc": cpu_seconds(smsc.pid),
            }
            accept_seconds = await accept_over_http(args, http_port, key, store)
        await wait_for(lambda: watch.submitted() >= n, args.timeout, "every submit")
        await wait_for(
            lambda: watch.count_by_status().get("delivered", 0) >= n, args.timeout, "receipts"
        )
        cpu_at_end = {
            "gateway": cpu_seconds(gateway_pid, exclude=others),
            "smsc": cpu_seconds(smsc.pid),
        }
        store.traffic_ends()
        first, last, latencies = await asyncio.to_thread(watch.timings)
        delivered_after = time.time() - first
        statuses = await asyncio.to_thread(watch.count_by_status)
        modem_statuses = await asyncio.to_thread(watch.modem_statuses)
        if args.stages and daemon is not None:
            await asyncio.to_thread(stage_report.print_from_daemon, http_port, workdir / "data")
    finally:
        scraped = scraper.stop()
        for task in BACKGROUND:
            task.cancel()
        if gateway is not None:
            events_before_stop = {n: str(s) for n, s in gateway.events.stats().items()}
            await gateway.stop()
            for name, stats in events_before_stop.items():
                print(f"  events      {name} at the end of the run: {stats}")
        for emulator in emulators:
            stop(emulator)
        if daemon is not None:
            stop(daemon)
        stop(smsc)
        store.close()
    at_smsc = simulator_accepted(workdir / "smsc.log")
    submit_rate = n / (last - first)
    p50, p99 = percentile(latencies, 0.50) * 1000, percentile(latencies, 0.99) * 1000
    print(
        f"mt_path: {n} messages, accept={args.accept} (concurrency {args.concurrency}"
        + (f", batch {args.batch}" if args.accept == "intake" else "")
        + f"), link window {args.window} x {args.sessions} session(s), receipts "
        + (
            f"{args.receipt_mode}"
            if args.receipt_mode in ("same-write", "before-resp")
            else f"{args.receipt_mode} (dlr delay {args.dlr_delay} s)"
        )
        + f", {args.loop}, store {store.describe()}"
        + (
            f"; beside {args.modem_pool} modem links ({args.modem_rate:g} parts/min each, "
            f"{MODEM_SENT[0]} messages to them)"
            if args.modem_pool
            else ""
        )
    )
    print(f"  metrics     {scrape.describe(args)}" + (f" ({scraped})" if scraped else ""))
    if store.per_message(n):
        print(f"  database    {store.per_message(n)}")
    print(f"  accepted    {n} in {accept_seconds:6.2f} s = {n / accept_seconds:>8,.0f} msg/s")
    print(
        f"  submitted   {len(latencies)} in {last - first:6.2f} s = {submit_rate:>8,.0f} msg/s "
        "(first accept -> last submit_sm_resp recorded)"
    )
    print(f"  latency     accept->submit p50 {p50:7.1f} ms  p99 {p99:7.1f} ms")
    print(f"  receipts    every message final after {delivered_after:6.2f} s: {dict(statuses)}")
    gateway_cpu = cpu_at_end["gateway"] - cpu_at_start["gateway"]
    smsc_cpu = cpu_at_end["smsc"] - cpu_at_start["smsc"]
    where = (
        "this process and its store writer: gateway + load"
        if args.accept == "intake"
        else "daemon and its store writer"
    )
    print(
        f"  cpu         gateway {gateway_cpu:6.2f} s ({where}) = "
        f"{gateway_cpu / n * 1e6:5.0f} us/msg"
        f" = {n / gateway_cpu:>7,.0f} msg per CPU-s | simulator {smsc_cpu:6.2f} s"
        f" | load average {os.getloadavg()[0]:.2f}"
    )
    lost = n - statuses.get("delivered", 0)
    checks = [f"simulator accepted {at_smsc} submits ({at_smsc - n:+d} vs messages)"]
    if args.record:
        texts = recorded_texts(record)
        missing = sum(1 for i in range(n) if texts[TEXT.format(index=i)] == 0)
        duplicated = sum(count - 1 for count in texts.values() if count > 1)
        checks.append(f"record: {missing} texts missing, {duplicated} duplicates")
        lost = max(lost, missing)
    ok = lost == 0 and at_smsc >= n
    print(f"  loss check  {'; '.join(checks)} -> {'ZERO LOSS' if ok else 'LOSS'}")
    if args.modem_pool:
        print(f"  modem pool  {MODEM_SENT[0]} messages to +254: {dict(modem_statuses)}")
    if args.stages and gateway is not None:
        stage_report.print_in_process()
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--accept", choices=("intake", "http"), default="intake")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--batch", type=int, default=1, help="requests per intake.accept call")
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument(
        "--store-writer",
        choices=("process", "thread", "inline"),
        default="process",
        help="where the store writer runs (the daemon default: process)",
    )
    parser.add_argument("--sessions", type=int, default=1)
    parser.add_argument("--dlr-delay", type=float, default=0.0)
    parser.add_argument(
        "--rate", type=float, default=0.0, help="offered messages/s (intake only; 0: no pacing)"
    )
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--record", action="store_true", help="check every text at the SMSC")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--mqtt", default="", help="publish events to this broker (mqtt://...)")
    parser.add_argument("--mqtt-buffer", type=int, default=10_000, help="[mqtt] buffer")
    parser.add_argument(
        "--modem-pool", type=int, default=0, help="GSM modem links beside the SMPP link"
    )
    parser.add_argument(
        "--modem-rate", type=float, default=30.0, help="parts a minute per modem (pool traffic)"
    )
    stage_report.add_arguments(parser)
    scrape.add_arguments(parser)
    pgstore.add_arguments(parser)
    args = parser.parse_args()
    if args.modem_pool and args.accept != "intake":
        parser.error("--modem-pool needs --accept intake")
    with tempfile.TemporaryDirectory(prefix="tandem-mt-") as directory:
        if args.loop == "uvloop":
            import uvloop

            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                ok = runner.run(bench(args, Path(directory)))
        else:
            ok = asyncio.run(bench(args, Path(directory)))
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
