"""SMPP in, end to end: an ESME submits through Tandem's customer SMPP server to the SMSC
simulator and waits for every delivery receipt to come back to it.

Usage: .venv/bin/python bench/smpp_in.py [--messages 100000] [--window 100] [--asyncio]
                                         [--link-window 100] [--link-sessions 1] [--profile]
                                         [--receipt-mode same-write|timer|delayed|before-resp]
                                         [--stages] [--no-raw] [--scrape 0] [--metrics on|off]
                                         [--store sqlite|postgresql] [--dsn DSN] [--count-db]

Processes (all on 127.0.0.1): the SMSC simulator (`tandem sim smsc`; each receipt in the same
write as its submit_sm_resp by default, `--receipt-mode` for the others), Tandem
(this script with `--serve`: the Gateway with its durable SQLite store (WAL,
synchronous=NORMAL), one SMPP link to the simulator and the customer SMPP server), and this one,
the ESME: smpp.aio's SmppClient bound as transceiver with a window of 100, submitting one
single-part message per submit_sm with registered_delivery=1 and answering every deliver_sm.
Tandem and the ESME run on uvloop unless `--asyncio`.

Figures: submits/s (until the last submit_sm_resp) and end-to-end msgs/s (until the last
receipt), and the CPU time the Tandem process used per message (loop and store threads): on a
busy machine it says what one core buys when wall-clock figures cannot. The simulator's and the
ESME's CPU and the load average say how much of the 2 cores the bench itself took.
Zero loss means: every submit answered ESME_ROK with a distinct id, and exactly one
DELIVRD receipt per id. `--profile` writes a cProfile of the Tandem process and prints its top.

First, unless `--no-raw`, the raw pipe: the same ESME (same window, same count) bound straight
to the simulator, no gateway between; Tandem's end-to-end rate is then also given as a share of
it. `--stages` prints where Tandem's messages waited (gateway.stages). `--scrape S` has a
process of its own GET Tandem's /metrics every S seconds while the ESME runs; `--metrics off`
turns the exporter and its latency histograms off (bench/scrape.py). `--store postgresql` gives
Tandem a PostgreSQL store (a schema of the run's own at `--dsn`, dropped after) instead of
SQLite; `--count-db` relays its connections through bench/pgwire.py and prints statements and
round trips per message (bench/pgstore.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, bench/ would come first on sys.path and its routing.py would shadow the
# `routing` package: put the repository root there instead.
_HERE = Path(__file__).resolve().parent
ROOT = _HERE.parent
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from bench import pgstore, scrape, stage_report
from bench.cpu import cpu_seconds
from bench.customer_server import running_gateway, stop_signal
from bench.esme import SubmitAnswers, bench_submit
from bench.processes import free_port, stop, wait_for_file, wait_for_port

PYTHON = sys.executable
SYSTEM_ID = "bench"
PASSWORD = "bench1"


def tandem_config(
    data_dir: Path,
    sim_port: int,
    args: argparse.Namespace,
    metrics_port: int,
    store: pgstore.StoreRun,
) -> str:
    from gateway.accounts import hash_password

    return f"""
data_dir = "{data_dir}"
{stage_report.config_line(args)}[store]
{store.toml()}synchronous = "NORMAL"
writer = "{args.store_writer}"
[smpp_server]
enabled = false    # started by this script
host = "127.0.0.1"
port = 0
[http]
enabled = false
[[links]]
type = "smpp"
name = "sim"
host = "127.0.0.1"
port = {sim_port}
system_id = "tandem"
window = {args.link_window}
sessions = {args.link_sessions}
submit_id_format = "hex"
dlr_id_format = "hex"
[[routes]]
name = "all"
priority = 100
targets = ["sim"]
[[accounts]]
system_id = "{SYSTEM_ID}"
password_hash = "{hash_password(PASSWORD)}"
window = {max(args.window, 1)}
{scrape.config_section(args, metrics_port)}"""


# --- the Tandem process -------------------------------------------------------------------------


async def serve(config_path: Path, ready_file: Path) -> None:
    async with running_gateway(config_path) as (gateway, server):
        cpu_at_start = cpu_seconds(os.getpid())  # with the store writer process under it
        loop_cpu_at_start = sum(os.times()[:2])  # this process alone: the event loop
        ready_file.write_text(str(server.port))
        await stop_signal().wait()
        # CPU seconds of the process and its store writer while it served the run.
        cpu_file = ready_file.with_suffix(".cpu")
        loop_cpu = sum(os.times()[:2]) - loop_cpu_at_start
        cpu_file.write_text(f"{cpu_seconds(os.getpid()) - cpu_at_start:.3f} {loop_cpu:.3f}")
        from gateway import stages

        recorder = stages.recording()
        if recorder is not None and gateway.config.stage_times:  # not the exporter's own
            ready_file.with_suffix(".stages").write_text(json.dumps(recorder.snapshot()))
    print(f"server stats: {server.stats}", file=sys.stderr)


def run_serve(args: argparse.Namespace) -> None:
    main = serve(Path(args.serve), Path(args.ready_file))
    profiler = None
    if args.profile_to:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    try:
        if args.asyncio:
            asyncio.run(main)
        else:
            import uvloop

            uvloop.run(main)
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.profile_to)


# --- the ESME -----------------------------------------------------------------------------------


async def esme(port: int, args: argparse.Namespace) -> tuple[bool, float]:
    from smpp.aio import SmppClient
    from smpp.constants import Tag
    from smpp.pdu import DeliverSm, Pdu
    from smpp.session import SessionConfig

    total = args.messages
    answers = SubmitAnswers(keep_ids=True)
    receipts: dict[str, bytes] = {}
    duplicate_receipts = 0
    done = asyncio.Event()

    def on_request(pdu: Pdu) -> Pdu:
        nonlocal duplicate_receipts
        if isinstance(pdu, DeliverSm) and pdu.esm_class & 0x04:
            receipt_id = str(pdu.tlvs.get(Tag.RECEIPTED_MESSAGE_ID, ""))
            if receipt_id in receipts:
                duplicate_receipts += 1
            receipts[receipt_id] = pdu.short_message
            if len(receipts) >= total:
                done.set()
        return pdu.response()

    config = SessionConfig(window=args.window, response_timeout=60.0)
    client = SmppClient(config, request_handler=on_request)
    await client.connect("127.0.0.1", port)
    await client.bind("transceiver", SYSTEM_ID, PASSWORD)
    started = time.perf_counter()
    for n in range(total):
        await client.wait_for_window()
        submit = bench_submit(n, b"Bench message %d" % n, registered_delivery=1)
        client.send_request_nowait(submit).add_done_callback(answers)
    await answers.wait_for(total)
    submitted_in = answers.last_at - started
    ids, refused = answers.ids, answers.refused
    try:
        await asyncio.wait_for(done.wait(), args.receipt_timeout)
    except TimeoutError:
        pass
    finished_in = time.perf_counter() - started
    await client.unbind()

    delivered = sum(b"stat:DELIVRD" in text for text in receipts.values())
    lost = total - len(ids.intersection(receipts))
    print(f"messages            {total}")
    print(f"submit_sm accepted  {len(ids)} (refused: {refused or 'none'})")
    print(f"submits/s           {total / submitted_in:,.0f}  ({submitted_in:.2f} s)")
    print(f"receipts            {len(receipts)} ({delivered} DELIVRD, {duplicate_receipts} dup)")
    print(f"end to end msgs/s   {total / finished_in:,.0f}  ({finished_in:.2f} s)")
    print(f"lost                {lost}")
    return lost == 0 and not refused and len(ids) == total, total / finished_in


def run_esme(port: int, args: argparse.Namespace) -> tuple[bool, float]:
    if args.asyncio:
        return asyncio.run(esme(port, args))
    import uvloop

    return uvloop.run(esme(port, args))


# --- orchestration ------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--link-window", type=int, default=100)
    parser.add_argument(
        "--store-writer",
        choices=("process", "thread", "inline"),
        default="process",
        help="where the store writer runs (the daemon default: process)",
    )
    parser.add_argument("--link-sessions", type=int, default=1)
    parser.add_argument("--receipt-timeout", type=float, default=120.0)
    parser.add_argument("--asyncio", action="store_true", help="plain asyncio, not uvloop")
    parser.add_argument("--profile", action="store_true", help="cProfile the Tandem process")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--ready-file", help=argparse.SUPPRESS)
    parser.add_argument("--profile-to", help=argparse.SUPPRESS)
    parser.add_argument(
        "--no-raw", dest="raw", action="store_false", help="skip the raw pipe measurement"
    )
    stage_report.add_arguments(parser)
    scrape.add_arguments(parser)
    pgstore.add_arguments(parser)
    args = parser.parse_args()
    if args.serve:
        run_serve(args)
        return 0

    work = Path(tempfile.mkdtemp(prefix="tandem-bench-smpp-in-"))
    sim_port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    sim_log = open(work / "simulator.log", "wb")  # noqa: SIM115
    simulator = subprocess.Popen(
        [
            *(PYTHON, "-m", "gateway.cli", "sim", "smsc", "--port", str(sim_port)),
            *("--dlr-delay", "0", *stage_report.simulator_arguments(args)),
        ],
        stdout=sim_log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=ROOT,
    )
    config_path = work / "tandem.toml"
    metrics_port = free_port()
    scraper = scrape.Scraper(args, metrics_port, work / "scraper.log")
    scraped = ""
    store = pgstore.StoreRun(args, work)
    config_path.write_text(tandem_config(work / "data", sim_port, args, metrics_port, store))
    ready = work / "ready"
    profile_path = work / "tandem.prof"
    command = [PYTHON, __file__, "--serve", str(config_path), "--ready-file", str(ready)]
    if args.asyncio:
        command.append("--asyncio")
    if args.profile:
        command += ["--profile-to", str(profile_path)]
    tandem_log = open(work / "tandem.log", "wb")  # noqa: SIM115
    tandem = None
    raw_rate = 0.0
    try:
        wait_for_port(sim_port)
        loop_name = "asyncio" if args.asyncio else "uvloop"
        print(
            f"receipts {args.receipt_mode}; loop {loop_name}; store {store.describe()}; "
            f"logs in {work}"
        )
        if args.raw:
            print(f"-- raw pipe: the ESME (window {args.window}) bound to the simulator itself")
            raw_ok, raw_rate = run_esme(sim_port, args)
            if not raw_ok:
                print("raw pipe: LOSS")
            print("-- through Tandem")
        tandem = subprocess.Popen(
            command, stdout=tandem_log, stderr=subprocess.STDOUT, env=env, cwd=ROOT
        )
        # A loaded host starting Tandem (on PostgreSQL: migrating a new schema) may take a while.
        port = int(wait_for_file(ready, tandem, timeout=120.0))
        scraper.start()
        children: tuple[int, ...] = (simulator.pid, tandem.pid)
        if scraper.pid is not None:
            children += (scraper.pid,)
        others_at_start = (
            cpu_seconds(simulator.pid),
            cpu_seconds(os.getpid(), exclude=children),
        )
        print(f"ESME window {args.window}; link window {args.link_window} x "
              f"{args.link_sessions} session(s)")  # fmt: skip
        store.traffic_starts()
        ok, rate = run_esme(port, args)
        store.traffic_ends()
        if store.per_message(args.messages):
            print(f"database            {store.per_message(args.messages)}")
        if raw_rate:
            print(f"share of raw pipe   {rate / raw_rate:.0%} ({rate:,.0f} of {raw_rate:,.0f})")
        simulator_cpu = cpu_seconds(simulator.pid) - others_at_start[0]
        esme_cpu = cpu_seconds(os.getpid(), exclude=children) - others_at_start[1]
        print(
            f"other CPU           simulator {simulator_cpu:.1f} s, ESME {esme_cpu:.1f} s; "
            f"load average {os.getloadavg()[0]:.2f}"
        )
    finally:
        scraped = scraper.stop()
        if tandem is not None:
            stop(tandem)
        stop(simulator)
        store.close()
    print(f"metrics             {scrape.describe(args)}" + (f" ({scraped})" if scraped else ""))
    cpu_file = ready.with_suffix(".cpu")
    if cpu_file.exists():
        cpu, loop_cpu = (float(field) for field in cpu_file.read_text().split())
        print(
            f"Tandem CPU          {cpu:.1f} s = {cpu / args.messages * 1e6:,.0f} us per message "
            f"(~{args.messages / cpu:,.0f} msgs/s per core); event loop process "
            f"{loop_cpu / args.messages * 1e6:,.0f} us, store writer and the rest "
            f"{(cpu - loop_cpu) / args.messages * 1e6:,.0f} us"
        )
    stages_file = ready.with_suffix(".stages")
    if stages_file.exists():
        print(f"where messages waited in Tandem (load average {os.getloadavg()[0]:.2f}):")
        print(stage_report.table(json.loads(stages_file.read_text())))
    if args.profile and profile_path.exists():
        import pstats

        print("\nTandem process, top 25 by own time:")
        pstats.Stats(str(profile_path)).sort_stats("tottime").print_stats(25)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
