"""Whole daemons scaled out: the MT path and SMPP in through one Tandem node on SQLite, one node
on PostgreSQL and two nodes on one PostgreSQL, taking turns, every message checked delivered
exactly once, and the database work per message counted.

Usage: .venv/bin/python bench/scaleout.py [--messages 2000] [--rounds 2] [--paths mt,smpp-in]
           [--runs sqlite,pg1,pg2] [--concurrency 64] [--esme-binds 2] [--window 100]
           [--sessions 2] [--dsn postgresql://postgres@127.0.0.1:5432/test] [--no-count]
           [--receipt-mode same-write|timer|delayed|before-resp] [--stages] [--keep]

Processes (all on 127.0.0.1): the SMSC simulator (`tandem sim smsc`, a fresh one per run; each
receipt in the same write as its submit_sm_resp unless `--receipt-mode`), one or two daemons
(`tandem run` with generated configs: each node its own data directory, HTTP port, customer
SMPP port and `[node] name`; SQLite (WAL, synchronous NORMAL) or one PostgreSQL schema of the
run's own at `--dsn`, dropped after), and this one: the load and the customer's side.

- mt: `concurrency` HTTP connections POST /v1/messages (one recipient, a callback URL on this
  process), request n to node n mod nodes; the figure runs from the first request to the last
  final receipt callback.
- smpp-in: `esme-binds` transceiver binds of one account (bind b on node b mod nodes, window
  `window` each), message n on bind n mod binds; from the first submit_sm to the last receipt
  deliver_sm.

The carrier link has `sessions` binds of window `window` in every configuration: a cluster-wide
budget (docs/scale-out.md), so one node binds them all and two nodes one each; a run starts
only once the daemons' /metrics show every session bound and every node with at least one (a
node that never binds stops the bench). The same load, binds and carrier budget in every
configuration: only the nodes and the store differ.

Checked every run: every request answered 202 (every submit_sm ESME_ROK) with a distinct id,
every id given exactly one final callback (receipt) saying delivered, none for an unknown id,
the simulator accepted exactly `messages` submits (a duplicate submit shows there), and it never
saw more than `sessions` carrier binds at once.

CPU per message, from /proc (user + system): each node's process tree (daemon and its store
writer), PostgreSQL's backends serving the nodes' connections (application_name "tandem
<node>"; not its WAL writer or checkpointer), the simulator, and this process (the load
generator, the callback sink or the ESMEs). Ratios are against SQLite in the same round.

Then, unless `--no-count`, one more run per path on one and on two PostgreSQL nodes with every
connection of the daemons relayed through bench/pgwire.py, which counts statements (Execute,
simple Query) and round trips (Sync, simple Query) on the wire: pg_stat_statements is not
loaded on this project's PostgreSQL. The relay costs CPU, so those runs give no rates.

A run takes about 40 s on this project's 2-core machine at load 20, most of it starting the
daemons and splitting the carrier binds: the defaults (2 rounds, 16 runs) take about 10 minutes
there, `--rounds 1 --no-count` about 4. Fewer than ~2,000 messages make SMPP-in runs last a
second or two, too short for their rates to mean much.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# bench/http.py would shadow the standard library's `http` (aiohttp imports http.cookies).
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

import aiohttp
from aiohttp import web

from bench import pgstore, stage_report
from bench.cpu import cpu_seconds
from bench.esme import SubmitAnswers, bench_submit
from bench.processes import free_port, simulator_link_toml, start, stop

PYTHON = sys.executable
TANDEM = (PYTHON, "-m", "gateway.cli")
TEXT = "Bench {index:07d}: your parcel arrives today between 10:00 and 12:00."
SYSTEM_ID = "bench"
PASSWORD = "bench1"
CONFIGURATIONS = {"sqlite": ("sqlite", 1), "pg1": ("postgresql", 1), "pg2": ("postgresql", 2)}
TOP_STATEMENTS = 8
GRACE = 1.0  # seconds after the last receipt for a duplicate to show
LABELS = {"sqlite": "SQLite, 1 node", "pg1": "PostgreSQL, 1 node", "pg2": "PostgreSQL, 2 nodes"}


@dataclass
class Node:
    name: str
    workdir: Path
    http_port: int
    smpp_port: int
    config: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def data(self) -> Path:
        return self.workdir / "data"


@dataclass
class Outcome:
    """One run: its rate, what arrived, and the CPU each part used."""

    path: str
    run: str
    round: int
    messages: int
    seconds: float = 0.0  # first request -> last final receipt
    accept_seconds: float = 0.0  # first request -> last answer (202 / submit_sm_resp)
    ids: int = 0  # distinct ids acknowledged
    refused: dict[str, int] = field(default_factory=dict)
    finals: Counter[str] = field(default_factory=Counter)  # id -> final receipts for it
    not_delivered: int = 0
    unknown: int = 0  # final receipts for ids never acknowledged
    at_smsc: int = -1  # submits the simulator accepted
    most_bound: int = -1  # the most carrier binds the simulator saw at once
    sessions: int = 0  # the link's budget of binds across the nodes
    cpu: dict[str, float] = field(default_factory=dict)
    load: tuple[float, float] = (0.0, 0.0)
    counts: tuple[int, int] = (0, 0)  # statements, round trips (counted runs)
    by_statement: dict[str, int] = field(default_factory=dict)  # counted runs

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0

    @property
    def duplicates(self) -> int:
        return sum(count - 1 for count in self.finals.values() if count > 1)

    @property
    def missing(self) -> int:
        return self.messages - len(self.finals) + self.unknown

    @property
    def exact(self) -> bool:
        return (
            self.ids == self.messages
            and not self.refused
            and self.missing == 0
            and self.duplicates == 0
            and self.not_delivered == 0
            and self.at_smsc == self.messages
            and 0 <= self.most_bound <= self.sessions
        )

    def check(self) -> str:
        if self.exact:
            return "exact"
        problems = [
            f"{self.messages - self.ids} not acknowledged" if self.ids != self.messages else "",
            f"refused {self.refused}" if self.refused else "",
            f"{self.missing} receipts missing" if self.missing else "",
            f"{self.duplicates} duplicate receipts" if self.duplicates else "",
            f"{self.not_delivered} not delivered" if self.not_delivered else "",
            f"SMSC accepted {self.at_smsc}" if self.at_smsc != self.messages else "",
            f"{self.most_bound} carrier binds at once" if self.most_bound > self.sessions else "",
        ]
        return "; ".join(p for p in problems if p)


# --- the daemons ------------------------------------------------------------------------------


def node_config(node: Node, args: argparse.Namespace, smsc_port: int, store_toml: str) -> str:
    from gateway.accounts import hash_password

    return f"""
data_dir = "{node.data}"
{stage_report.config_line(args)}[node]
name = "{node.name}"
[store]
{store_toml}synchronous = "NORMAL"
[smpp_server]
enabled = {"true" if args.path == "smpp-in" else "false"}
host = "127.0.0.1"
port = {node.smpp_port}
[http]
host = "127.0.0.1"
port = {node.http_port}
callback_concurrency = 64
[egress]
allow = ["127.0.0.1"]  # the callback sink of this bench
ports = ["1024-65535"]
[simulator]
enabled = false
{simulator_link_toml(smsc_port, args.window, args.sessions)}[[accounts]]
system_id = "{SYSTEM_ID}"
password_hash = "{hash_password(PASSWORD)}"
window = {args.window}
"""


def make_nodes(workdir: Path, count: int, prefix: str) -> list[Node]:
    nodes = []
    for letter in "ab"[:count]:
        directory = workdir / letter
        directory.mkdir(parents=True)
        nodes.append(
            Node(f"{prefix}-{letter}", directory, free_port(), free_port(), directory / "t.toml")
        )
    return nodes


def create_key(config: Path) -> str:
    """An unlimited API key (`tandem keys create`); on PostgreSQL it also migrates the schema
    once, before the nodes start."""
    limits = ("--rps", "1e6", "--mps", "1e6")
    created = subprocess.run(
        [*TANDEM, "keys", "create", "-c", str(config), "--name", "bench", *limits],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    ).stdout
    return created.split("key:", 1)[1].split()[0]


def share_store_key(nodes: list[Node]) -> None:
    """Every node of one database seals with the first node's key (docs/scale-out.md)."""
    for node in nodes[1:]:
        node.data.mkdir(mode=0o700, exist_ok=True)
        shutil.copy2(nodes[0].data / "store.key", node.data / "store.key")


async def wait_until_bound(nodes: list[Node], sessions: int, timeout: float = 120.0) -> None:
    """Until every node answers HTTP and, by its /metrics, the nodes hold all `sessions` of the
    link between them, each at least one (when there are enough)."""
    deadline = time.monotonic() + timeout
    bound: dict[str, int] = {}
    async with aiohttp.ClientSession() as session:
        while True:
            for node in nodes:
                assert node.process is not None
                if node.process.poll() is not None:
                    raise SystemExit(f"scaleout: {node.name} exited ({node.workdir}/tandem.log)")
                bound[node.name] = await sessions_bound(session, node)
            if sum(bound.values()) >= sessions and all(
                n >= 1 for n in bound.values() if len(nodes) <= sessions
            ):
                return
            if time.monotonic() > deadline:
                raise SystemExit(f"scaleout: the link's binds never came up on every node: {bound}")
            await asyncio.sleep(0.25)


async def sessions_bound(session: aiohttp.ClientSession, node: Node) -> int:
    token_file = node.data / "metrics.token"
    try:
        token = token_file.read_text(encoding="ascii").strip()
        headers = {"Authorization": f"Bearer {token}"}
        async with session.get(node.base + "/metrics", headers=headers) as response:
            text = await response.text()
    except (OSError, aiohttp.ClientError):
        return 0  # not listening yet
    found = re.search(r'^tandem_link_sessions_bound\{link="sim"\} ([0-9.]+)', text, re.M)
    return int(float(found.group(1))) if found else 0


# --- CPU of PostgreSQL's backends for the nodes -----------------------------------------------


async def backend_pids(store: pgstore.StoreRun, prefix: str) -> list[int]:
    """PostgreSQL's backends serving the nodes' connections (each says `tandem <node>`)."""
    import asyncpg

    conn = await asyncpg.connect(store.dsn)
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE application_name LIKE $1", f"tandem {prefix}-%"
        )
    finally:
        await conn.close()
    return [row["pid"] for row in rows]


class BackendCpu:
    """CPU seconds the nodes' backends used between `begin` and `end` (a backend opened in
    between counts from its start; one closed in between is lost)."""

    def __init__(self, store: pgstore.StoreRun, prefix: str) -> None:
        self.store, self.prefix = store, prefix
        self.before: dict[int, float] = {}

    async def begin(self) -> None:
        if self.store.postgresql:
            self.before = {p: cpu_seconds(p) for p in await backend_pids(self.store, self.prefix)}

    async def end(self) -> float:
        if not self.store.postgresql:
            return 0.0
        pids = await backend_pids(self.store, self.prefix)
        return sum(cpu_seconds(p) - self.before.get(p, 0.0) for p in pids)


# --- the load: HTTP ---------------------------------------------------------------------------


class CallbackSink:
    """The customer's callback endpoint: final receipts per message id, and when the last new
    one came."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.finals: Counter[str] = Counter()
        self.statuses: dict[str, str] = {}
        self.last_at = 0.0
        self.done = asyncio.Event()

    async def receive(self, request: web.Request) -> web.Response:
        document = json.loads(await request.read())
        if document["final"]:
            message = document["message_id"]
            self.finals[message] += 1
            self.statuses[message] = document["status"]
            if self.finals[message] == 1:
                self.last_at = time.perf_counter()
                if len(self.finals) >= self.expected:
                    self.done.set()
        return web.Response(text="ok")


async def mt_load(
    nodes: list[Node], args: argparse.Namespace, key: str, out: Outcome, at_end: Callable[[], Any]
) -> None:
    sink = CallbackSink(args.messages)
    app = web.Application()
    app.router.add_post("/callback", sink.receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sink_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", sink_port, backlog=1024).start()
    callback_url = f"http://127.0.0.1:{sink_port}/callback"
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    ids: set[str] = set()
    refused: Counter[str] = Counter()
    last_answer = [0.0]
    indexes = iter(range(args.messages))
    try:
        connector = aiohttp.TCPConnector(limit=args.concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def caller() -> None:
                for index in indexes:
                    url = nodes[index % len(nodes)].base + "/v1/messages"
                    body = json.dumps(
                        {
                            "to": f"+447911{index % 1_000_000:06d}",
                            "from": "Bench",
                            "text": TEXT.format(index=index),
                            "callback_url": callback_url,
                        }
                    )
                    try:
                        async with session.post(url, data=body, headers=headers) as response:
                            document = await response.json(content_type=None)
                            if response.status == 202:
                                ids.add(document["id"])
                            else:
                                refused[str(response.status)] += 1
                    except aiohttp.ClientError as exc:
                        refused[type(exc).__name__] += 1
                    last_answer[0] = time.perf_counter()

            started = time.perf_counter()
            await asyncio.gather(*(caller() for _ in range(args.concurrency)))
            out.accept_seconds = last_answer[0] - started
            try:
                await asyncio.wait_for(sink.done.wait(), args.timeout)
            except TimeoutError:
                pass
            out.seconds = (sink.last_at or time.perf_counter()) - started
            await at_end()
            await asyncio.sleep(GRACE)  # a second callback for a message would come about now
    finally:
        await runner.cleanup()
    out.ids, out.refused = len(ids), dict(refused)
    out.finals = sink.finals
    out.not_delivered = sum(1 for s in sink.statuses.values() if s != "delivered")
    out.unknown = sum(1 for message in sink.finals if message not in ids)


# --- the load: SMPP in ------------------------------------------------------------------------


async def smpp_in_load(
    nodes: list[Node], args: argparse.Namespace, out: Outcome, at_end: Callable[[], Any]
) -> None:
    from smpp.aio import SmppClient
    from smpp.constants import Tag
    from smpp.pdu import DeliverSm, Pdu
    from smpp.session import SessionConfig

    total = args.messages
    answers = SubmitAnswers(keep_ids=True)
    finals: Counter[str] = Counter()
    delivered: set[str] = set()
    last_receipt = [0.0]
    done = asyncio.Event()

    arrivals: dict[str, list[tuple[float, int]]] = {}  # id -> (when, bind) of each copy

    def on_request(pdu: Pdu, bind: int) -> Pdu:
        if isinstance(pdu, DeliverSm) and pdu.esm_class & 0x04:
            receipt_id = str(pdu.tlvs.get(Tag.RECEIPTED_MESSAGE_ID, ""))
            finals[receipt_id] += 1
            arrivals.setdefault(receipt_id, []).append((time.perf_counter(), bind))
            if b"stat:DELIVRD" in pdu.short_message:
                delivered.add(receipt_id)
            if finals[receipt_id] == 1:
                last_receipt[0] = time.perf_counter()
                if len(finals) >= total:
                    done.set()
        return pdu.response()

    clients = []
    for number in range(args.esme_binds):
        client = SmppClient(
            SessionConfig(window=args.window, response_timeout=60.0),
            request_handler=functools.partial(on_request, bind=number),
        )
        await client.connect("127.0.0.1", nodes[number % len(nodes)].smpp_port)
        await client.bind("transceiver", SYSTEM_ID, PASSWORD)
        clients.append(client)

    async def submit_all(client: Any, first: int) -> None:
        for n in range(first, total, len(clients)):
            await client.wait_for_window()
            submit = bench_submit(n, TEXT.format(index=n).encode(), registered_delivery=1)
            client.send_request_nowait(submit).add_done_callback(answers)

    started = time.perf_counter()
    await asyncio.gather(*(submit_all(c, i) for i, c in enumerate(clients)))
    await answers.wait_for(total)
    out.accept_seconds = answers.last_at - started
    try:
        await asyncio.wait_for(done.wait(), args.timeout)
    except TimeoutError:
        pass
    out.seconds = (last_receipt[0] or time.perf_counter()) - started
    await at_end()
    await asyncio.sleep(GRACE)  # a second copy of a receipt would come about now
    for client in clients:
        await client.unbind()
    out.ids = len(answers.ids)
    out.refused = {str(status): count for status, count in answers.refused.items()}
    out.finals = finals
    out.not_delivered = len(finals) - len(delivered.intersection(finals))
    out.unknown = sum(1 for message in finals if message not in answers.ids)
    twice = [(copies, receipt_id) for receipt_id, copies in arrivals.items() if len(copies) > 1]
    if twice:
        print(f"  receipts twice ({len(twice)}; first ones: seconds after the first submit, bind):")
        for copies, receipt_id in sorted(twice)[:5]:
            when = ", ".join(f"{at - started:.2f} s on {b}" for at, b in copies)
            print(f"    {receipt_id}: {when}")
        print(f"    last: {sorted(twice)[-1]}")


# --- one run ----------------------------------------------------------------------------------


async def stop_nodes(nodes: list[Node]) -> None:
    await asyncio.gather(
        *(asyncio.to_thread(stop, node.process) for node in nodes if node.process is not None)
    )


def simulator_stat(log: Path, name: str) -> int:
    """A figure of the line the simulator prints when it stops (-1: none)."""
    found = re.findall(rf"\b{name}=(\d+)", log.read_text(encoding="utf-8", errors="replace"))
    return int(found[-1]) if found else -1


async def one_run(
    path: str, run: str, round_number: int, args: argparse.Namespace, count: bool = False
) -> Outcome:
    backend, node_count = CONFIGURATIONS[run]
    workdir = Path(tempfile.mkdtemp(prefix=f"scaleout-{path}-{run}-"))
    out = Outcome(path, run, round_number, args.messages, sessions=args.sessions)
    args.path = path
    store = pgstore.StoreRun(
        argparse.Namespace(store=backend, dsn=args.dsn, count_db=count), workdir
    )
    prefix = "sb" + store.schema.removeprefix("bench_")  # unique: the backends' names
    nodes = make_nodes(workdir, node_count, prefix)
    smsc_port = free_port()
    receipts = stage_report.simulator_arguments(args)
    smsc = start(
        [*TANDEM, "sim", "smsc", "--port", str(smsc_port), "--dlr-delay", "0", *receipts],
        workdir / "smsc.log",
        cwd=ROOT,
    )
    try:
        for node in nodes:
            node.config.write_text(node_config(node, args, smsc_port, store.toml()))
        key = await asyncio.to_thread(create_key, nodes[0].config)
        share_store_key(nodes)
        for node in nodes:
            node.process = start(
                [*TANDEM, "run", "-c", str(node.config)], node.workdir / "tandem.log", cwd=ROOT
            )
        await wait_until_bound(nodes, args.sessions)
        await asyncio.sleep(1.0)  # start-up's leftovers (the leases' first rounds) settle
        node_pids = [node.process.pid for node in nodes if node.process is not None]
        children = (*node_pids, smsc.pid) + ((store.relay.pid,) if store.relay else ())
        backends = BackendCpu(store, prefix)
        await backends.begin()

        def cpu_now() -> dict[str, float]:
            return {
                "nodes": cpu_seconds(*node_pids),
                "smsc": cpu_seconds(smsc.pid),
                "load": cpu_seconds(os.getpid(), exclude=children),
            }

        cpu_before = cpu_now()
        load_before = os.getloadavg()[0]

        async def at_end() -> None:
            """At the last final receipt: the CPU, the load average and the database's counts."""
            store.traffic_ends()
            out.load = (load_before, os.getloadavg()[0])
            after = cpu_now()
            out.cpu = {part: after[part] - cpu_before[part] for part in after}
            out.cpu["postgresql"] = await backends.end()

        store.traffic_starts()
        if path == "mt":
            await mt_load(nodes, args, key, out, at_end)
        else:
            await smpp_in_load(nodes, args, out, at_end)
        out.counts = store.counted() or (0, 0)
        out.by_statement = store.by_statement()
        if args.stages:
            for node in nodes:
                if node.process is not None and node.process.poll() is None:
                    print(f"  {node.name}: where messages waited")
                    await asyncio.to_thread(
                        stage_report.print_from_daemon, node.http_port, node.data
                    )
    finally:
        await stop_nodes(nodes)
        stop(smsc)
        store.close()
        out.at_smsc = simulator_stat(workdir / "smsc.log", "accepted")
        out.most_bound = simulator_stat(workdir / "smsc.log", "most_bound")
        if args.keep or not out.exact:
            print(f"  logs of {path} {run} round {round_number}: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return out


# --- the report -------------------------------------------------------------------------------


def table(outcomes: list[Outcome]) -> str:
    """One row a run: its rate, its ratio to SQLite in the same round, CPU per message."""
    header = (
        f"{'path':<8} {'round':>5} {'configuration':<20} {'msgs/s':>7} {'vs SQLite':>9} "
        f"{'accept/s':>8} | {'CPU us/msg: nodes':>17} {'PG':>5} {'SMSC':>5} {'load':>5} | "
        f"{'load avg':>11} | check"
    )
    lines = [header, "-" * len(header)]
    for out in outcomes:
        sqlite = next(
            (o for o in outcomes if (o.path, o.round, o.run) == (out.path, out.round, "sqlite")),
            None,
        )
        ratio = f"{out.rate / sqlite.rate:.2f}" if sqlite and sqlite.rate else "-"

        def us(part: str, out: Outcome = out) -> str:
            return f"{out.cpu.get(part, 0.0) / out.messages * 1e6:.0f}"

        accept = out.messages / out.accept_seconds if out.accept_seconds else 0.0
        lines.append(
            f"{out.path:<8} {out.round:>5} {LABELS[out.run]:<20} {out.rate:>7,.0f} {ratio:>9} "
            f"{accept:>8,.0f} | {us('nodes'):>17} {us('postgresql'):>5} {us('smsc'):>5} "
            f"{us('load'):>5} | {out.load[0]:>5.1f}-{out.load[1]:<5.1f} | {out.check()}"
        )
    return "\n".join(lines)


def summary(outcomes: list[Outcome]) -> str:
    """Per path and configuration: the median rate and ratios over the rounds."""
    lines = []
    for path in dict.fromkeys(o.path for o in outcomes):
        rounds = sorted({o.round for o in outcomes if o.path == path})
        by = {(o.run, o.round): o for o in outcomes if o.path == path}
        for run in dict.fromkeys(o.run for o in outcomes if o.path == path):
            rates = [by[run, r].rate for r in rounds if (run, r) in by]
            text = f"{path:<8} {LABELS[run]:<20} median {statistics.median(rates):>7,.0f} msgs/s"
            for base in ("sqlite", "pg1"):
                ratios = [
                    by[run, r].rate / by[base, r].rate
                    for r in rounds
                    if run != base and (run, r) in by and (base, r) in by and by[base, r].rate
                ]
                if ratios:
                    text += f"; vs {LABELS[base]} median {statistics.median(ratios):.2f} ("
                    text += ", ".join(f"{x:.2f}" for x in ratios) + ")"
            lines.append(text)
    return "\n".join(lines)


def count_table(outcomes: list[Outcome]) -> str:
    header = f"{'path':<8} {'configuration':<20} {'statements/msg':>14} {'round trips/msg':>15}"
    lines = [header, "-" * len(header)]
    for out in outcomes:
        statements, trips = out.counts
        lines.append(
            f"{out.path:<8} {LABELS[out.run]:<20} {statements / out.messages:>14.3f} "
            f"{trips / out.messages:>15.3f}   ({out.check()})"
        )
    for out in outcomes:
        lines.append(f"{out.path} on {LABELS[out.run]}, the most run statements, per message:")
        top = sorted(out.by_statement.items(), key=lambda item: -item[1])[:TOP_STATEMENTS]
        lines += [f"  {n / out.messages:7.3f}  {text}" for text, n in top]
    return "\n".join(lines)


async def bench(args: argparse.Namespace) -> bool:
    runs = args.runs.split(",")
    paths = args.paths.split(",")
    for name in runs:
        if name not in CONFIGURATIONS:
            raise SystemExit(f"scaleout: unknown run {name!r} (sqlite, pg1, pg2)")
    print(
        f"scaleout: {args.messages} messages a run, {args.rounds} round(s) of {runs} taking "
        f"turns on {paths}; HTTP concurrency {args.concurrency}, {args.esme_binds} ESME binds "
        f"of window {args.window}; carrier link {args.sessions} sessions x window {args.window} "
        f"across the nodes; receipts {args.receipt_mode}; {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.2f}",
        flush=True,
    )
    outcomes: list[Outcome] = []
    for round_number in range(1, args.rounds + 1):
        shift = (round_number - 1) % len(runs)  # each configuration goes first in turn
        order = runs[shift:] + runs[:shift]
        for path in paths:
            for run in order:
                out = await one_run(path, run, round_number, args)
                outcomes.append(out)
                print(f"  {path} {LABELS[run]}, round {round_number}: {out.rate:,.0f} msgs/s, "
                      f"{out.check()}, load {out.load[1]:.1f}", flush=True)  # fmt: skip
    print()
    print(table(outcomes))
    print()
    print(summary(outcomes))
    counted: list[Outcome] = []
    if not args.no_count:
        for path in paths:
            for run in (r for r in runs if r != "sqlite"):
                out = await one_run(path, run, 0, args, count=True)
                counted.append(out)
        print()
        print("Database work per message, every connection of the nodes counted on the wire")
        print(count_table(counted))
    return all(o.exact for o in outcomes + counted)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000, help="messages a run")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of every configuration")
    parser.add_argument("--paths", default="mt,smpp-in")
    parser.add_argument("--runs", default="sqlite,pg1,pg2")
    parser.add_argument("--concurrency", type=int, default=64, help="HTTP connections (mt)")
    parser.add_argument("--esme-binds", type=int, default=2, help="ESME binds (smpp-in)")
    parser.add_argument("--window", type=int, default=100, help="of every bind, both sides")
    parser.add_argument("--sessions", type=int, default=2, help="carrier binds, all nodes")
    parser.add_argument("--dsn", default=pgstore.DEFAULT_DSN)
    parser.add_argument("--no-count", action="store_true", help="skip the counted runs")
    parser.add_argument("--timeout", type=float, default=300.0, help="for the last receipt")
    parser.add_argument("--keep", action="store_true", help="keep every run's logs")
    stage_report.add_arguments(parser)
    args = parser.parse_args()
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return 0 if runner.run(bench(args)) else 1


if __name__ == "__main__":
    sys.exit(main())
