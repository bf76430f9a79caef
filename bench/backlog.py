"""A backlog of a million messages: the daemon's memory while they wait, its start-up with
them pending, and the drain once the carrier is back.

Usage: .venv/bin/python bench/backlog.py [--messages 1000000] [--window 100] [--skip-restart]

Processes (all on 127.0.0.1): Tandem (this script with `--serve`: the Gateway with its durable
SQLite store (WAL, synchronous=NORMAL, the writer in its own process), the customer SMPP server
and one SMPP link of window 100 to a port where nothing listens yet), and this one, the ESME
(smpp.aio's SmppClient, window 100, one single-part submit_sm each, registered_delivery=0).
The link's queue_limit is set above the message count, so nothing is refused.

Phases:
1. intake with the carrier down: every submit is stored and queued; the daemon's resident
   memory (VmRSS of the daemon process; the store writer's process is shown apart) is printed
   every tenth of the way, with the growth per queued message;
2. restart with the backlog pending (SIGTERM, then the same data directory): seconds from the
   process start until the Gateway has started (every pending message queued), and its memory;
3. the SMSC simulator starts (`tandem sim smsc`): the link binds and the backlog drains; the
   daemon's memory during the drain and the drain rate.
The daemon writes its queue size and memory to a status file twice a second.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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

from bench.cpu import cpu_seconds
from bench.customer_server import running_gateway, stop_signal
from bench.esme import SubmitAnswers, bench_submit
from bench.processes import free_port, stop, wait_for_file

PYTHON = sys.executable
SYSTEM_ID = "bench"
PASSWORD = "bench1"
LINK = "sim"
SIMULATOR = (PYTHON, "-m", "gateway.cli", "sim", "smsc")


def tandem_config(data_dir: Path, sim_port: int, args: argparse.Namespace) -> str:
    from gateway.accounts import hash_password
    from gateway.config import SmppLinkConfig, TandemConfig

    # Older versions of the daemon have neither key: the bench runs against them too.
    limit = (
        f"queue_limit = {max(2 * (args.messages + args.prefill), 10_000_000)}\n"
        if "queue_limit" in SmppLinkConfig.model_fields
        else ""
    )
    queue = "[queue]\nin_memory = 10000\n" if "queue" in TandemConfig.model_fields else ""
    return f"""
data_dir = "{data_dir}"
[store]
synchronous = "NORMAL"
writer = "process"
[smpp_server]
enabled = false    # started by this script
host = "127.0.0.1"
port = 0
[http]
enabled = false
{queue}
[[links]]
type = "smpp"
name = "{LINK}"
host = "127.0.0.1"
port = {sim_port}
system_id = "tandem"
window = {args.link_window}
submit_id_format = "hex"
dlr_id_format = "hex"
reconnect_initial = 0.5
reconnect_max = 1.0
{limit}
[[routes]]
name = "all"
priority = 100
targets = ["{LINK}"]
[[accounts]]
system_id = "{SYSTEM_ID}"
password_hash = "{hash_password(PASSWORD)}"
window = {args.window}
"""


# --- memory of processes ------------------------------------------------------------------------


def status_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def descendants(pid: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def memory(pid: int) -> str:
    """The daemon's RSS, and the largest RSS under it (the store writer process: mostly
    SQLite's page cache, anonymous, and its memory-mapped file)."""
    daemon = status_kb(pid, "VmRSS") / 1024
    writer = max(descendants(pid), key=lambda child: status_kb(child, "VmRSS"), default=0)
    anon, mapped = status_kb(writer, "RssAnon") / 1024, status_kb(writer, "RssFile") / 1024
    return f"daemon RSS {daemon:6.1f} MB (writer process {anon:5.1f} MB + file {mapped:5.1f} MB)"


def rss_mb(pid: int) -> float:
    return status_kb(pid, "VmRSS") / 1024


# --- the Tandem process -------------------------------------------------------------------------


async def serve(config_path: Path, ready_file: Path) -> None:
    async with running_gateway(config_path) as (gateway, server):
        ready_file.write_text(str(server.port))
        status_file = ready_file.with_suffix(".status")
        stopping = stop_signal()
        refs = getattr(gateway.queue.core, "refs_waiting", lambda: 0)
        while not stopping.is_set():
            queued = sum(gateway.queue.depth().get(LINK, {}).values())
            status = {"queued": queued, "references": refs(), "sent": gateway.stats.submitted}
            status_file.write_text(json.dumps(status))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), 0.5)


def run_serve(args: argparse.Namespace) -> None:
    import uvloop

    uvloop.run(serve(Path(args.serve), Path(args.ready_file)))


# --- the ESME -----------------------------------------------------------------------------------


async def submit_all(port: int, daemon_pid: int, args: argparse.Namespace) -> int:
    from smpp.aio import SmppClient
    from smpp.session import SessionConfig

    total = args.messages
    answers = SubmitAnswers()

    client = SmppClient(SessionConfig(window=args.window, response_timeout=60.0))
    await client.connect("127.0.0.1", port)
    await client.bind("transmitter", SYSTEM_ID, PASSWORD)
    base = rss_mb(daemon_pid)
    print(f"  queued        0: {memory(daemon_pid)}")
    started = time.perf_counter()
    step = max(total // 10, 1)
    for n in range(total):
        await client.wait_for_window()
        text = b"Bulk campaign message number %d, sent while the carrier is down" % n
        submit = bench_submit(n, text, registered_delivery=0)
        client.send_request_nowait(submit).add_done_callback(answers)
        if (n + 1) % step == 0:
            await answers.wait_for(n + 1)
            grown = (rss_mb(daemon_pid) - base) * 1024 / (n + 1) * 1024
            print(f"  queued {n + 1:>8}: {memory(daemon_pid)}, {grown:5.0f} bytes per message")
    await answers.wait_for(total)
    took = time.perf_counter() - started
    await client.unbind()
    accepted, refused = answers.accepted, answers.refused
    print(f"  accepted {accepted} in {took:.1f} s ({total / took:,.0f}/s), refused {refused}")
    return accepted


# --- filling the store directly -----------------------------------------------------------------


async def prefill(config_path: Path, count: int) -> float:
    """Store `count` queued messages as intake would have, without the daemon (faster than
    any intake): the backlog the daemon then finds pending when it starts."""
    from dlr.status import MessageStatus
    from gateway.config import load_config
    from gateway.messages import Channel, Message
    from gateway.store.sqlite import SqliteMessageStore

    config = load_config(config_path)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    store = SqliteMessageStore(config.store_path, writer="thread")
    await store.open()
    started = time.perf_counter()
    try:
        for first in range(0, count, 5000):
            await store.accept(
                [
                    Message(
                        account=SYSTEM_ID,
                        channel=Channel.SMPP,
                        source_addr="Bench",
                        source_ton=5,
                        destination=f"4479112{n % 100000:05d}",
                        body=b"Bulk campaign message number %d, stored ahead of the run" % n,
                        registered_delivery=0,
                        route="all",
                        targets=[LINK],
                        strategy="failover",
                        link=LINK,
                        status=MessageStatus.QUEUED,
                    )
                    for n in range(first, min(first + 5000, count))
                ]
            )
    finally:
        await store.close()
    return time.perf_counter() - started


# --- orchestration ------------------------------------------------------------------------------


def read_status(path: Path) -> dict[str, int]:
    with contextlib.suppress(OSError, ValueError):
        return dict(json.loads(path.read_text()))
    return {}


def start_daemon(
    work: Path, config_path: Path, name: str, env: dict[str, str]
) -> tuple[subprocess.Popen[bytes], Path, float]:
    ready = work / f"{name}.ready"
    log = open(work / f"{name}.log", "wb")  # noqa: SIM115
    started = time.perf_counter()
    process = subprocess.Popen(
        [PYTHON, __file__, "--serve", str(config_path), "--ready-file", str(ready)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=ROOT,
    )
    wait_for_file(ready, process, timeout=600.0)
    took = time.perf_counter() - started
    print(
        f"  daemon started in {took:.1f} s, {cpu_seconds(process.pid):.1f} s of CPU "
        "(with its writer)"
    )
    return process, ready, took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--link-window", type=int, default=100)
    parser.add_argument(
        "--prefill",
        type=int,
        default=0,
        help="messages stored directly (not through intake) before the daemon first starts",
    )
    parser.add_argument(
        "--seed-db",
        help="start from a copy of this SQLite file (a backlog stored by an earlier run)",
    )
    parser.add_argument("--skip-restart", action="store_true", help="drain without restarting")
    parser.add_argument("--skip-drain", action="store_true", help="stop after the restart")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--ready-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        run_serve(args)
        return 0

    import uvloop

    work = Path(tempfile.mkdtemp(prefix="tandem-bench-backlog-"))
    sim_port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    config_path = work / "tandem.toml"
    config_path.write_text(tandem_config(work / "data", sim_port, args))
    print(
        f"{args.prefill} stored ahead + {args.messages} through SMPP intake, link window "
        f"{args.link_window}; logs in {work}"
    )
    processes: list[subprocess.Popen[bytes]] = []
    try:
        if args.seed_db:
            import shutil

            (work / "data").mkdir()
            shutil.copy(args.seed_db, work / "data" / "tandem.db")
            print(f"0. the store starts as a copy of {args.seed_db}")
        if args.prefill:
            took = uvloop.run(prefill(config_path, args.prefill))
            print(f"0. stored {args.prefill} queued messages in {took:.1f} s")
        tandem, ready, took = start_daemon(work, config_path, "tandem", env)
        processes.append(tandem)
        status = read_status(ready.with_suffix(".status"))
        print(f"1. intake with the carrier down (started in {took:.1f} s, queue {status})")
        uvloop.run(submit_all(int(ready.read_text()), tandem.pid, args))
        status_file = ready.with_suffix(".status")
        time.sleep(1.0)
        print(f"  queue: {read_status(status_file)}; {memory(tandem.pid)}")
        if not args.skip_restart:
            stop(tandem, timeout=120.0)
            tandem, ready, took = start_daemon(work, config_path, "tandem-2", env)
            processes.append(tandem)
            status_file = ready.with_suffix(".status")
            time.sleep(1.0)
            print(f"2. restart with the backlog pending: started in {took:.1f} s")
            print(f"  queue: {read_status(status_file)}; {memory(tandem.pid)}")
            print(f"  peak RSS so far (VmHWM) {status_kb(tandem.pid, 'VmHWM') / 1024:.1f} MB")
        if args.skip_drain:
            return 0
        sim_log = open(work / "simulator.log", "wb")  # noqa: SIM115
        simulator = subprocess.Popen(
            [*SIMULATOR, "--port", str(sim_port), "--dlr-delay", "0"],
            stdout=sim_log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
        )
        processes.append(simulator)
        print("3. the carrier is back: draining")
        started = time.perf_counter()
        first = read_status(status_file).get("queued", 0)
        peak = 0.0
        last_print = started
        while True:
            status = read_status(status_file)
            peak = max(peak, rss_mb(tandem.pid))
            now = time.perf_counter()
            if now - last_print >= 30:
                last_print = now
                print(f"  {now - started:5.0f} s: {status}; {memory(tandem.pid)}")
            if status.get("queued", 1) == 0:
                break
            if tandem.poll() is not None:
                raise SystemExit("the daemon exited")
            time.sleep(0.25)
        took = time.perf_counter() - started
        print(
            f"  drained {first} in {took:.1f} s ({first / took:,.0f} msgs/s, from the start of "
            f"the simulator); daemon RSS peak while draining {peak:.1f} MB; "
            f"{memory(tandem.pid)}; load average {os.getloadavg()[0]:.2f}"
        )
    finally:
        for process in reversed(processes):
            stop(process, timeout=120.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
