"""MO intake, end to end: the SMSC simulator sends MOs over SMPP to Tandem's carrier link; Tandem
keeps each one in its store before answering the deliver_sm, routes it to an SMPP account
(`mo_numbers`), keeps it in that account's durable outbox and delivers it to the account's bound
receiver.

Usage: .venv/bin/python bench/inbound.py [--messages 20000] [--parts 1] [--asyncio]

Processes (all on 127.0.0.1): Tandem (this script with `--serve`: the Gateway with its SQLite
store (WAL, synchronous=NORMAL, the writer in a process of its own), one SMPP link to the
simulator, the customer SMPP server) and this one, which runs the SMSC simulator (an in-process
`SmscSimulator`: every MO queued at once, at most 1000 deliver_sm in flight, as its default
window) and the customer's ESME (`smpp.aio.SmppClient` bound as receiver, answering every
deliver_sm). Both run on uvloop unless `--asyncio`.

Figures: MOs/s from the first deliver_sm queued to the last one received by the ESME (stored,
forwarded and delivered), and the CPU seconds the Tandem process (with its store writer) used
per MO. `--parts 2` sends each MO as two UDH parts (reassembled at the gateway; the ESME gets
one deliver_sm per MO). Zero loss means: the ESME received each MO exactly once, and the store
holds one `inbound` row per MO.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
ROOT = _HERE.parent
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from bench.cpu import cpu_seconds
from bench.customer_server import running_gateway, stop_signal
from bench.processes import free_port, stop, wait_for_file

PYTHON = sys.executable
SYSTEM_ID = "bench"
PASSWORD = "bench1"
SHORT_CODE = "5555"


def tandem_config(data_dir: Path, sim_port: int) -> str:
    from gateway.accounts import hash_password

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
[retention]
enabled = false
[[links]]
type = "smpp"
name = "sim"
host = "127.0.0.1"
port = {sim_port}
system_id = "tandem"
submit_id_format = "hex"
dlr_id_format = "hex"
[[routes]]
name = "all"
priority = 100
targets = ["sim"]
[[accounts]]
system_id = "{SYSTEM_ID}"
password_hash = "{hash_password(PASSWORD)}"
mo_numbers = ["{SHORT_CODE}"]
multipart = "reassemble"
delivery_queue_max = 100000
"""


async def serve(config_path: Path, ready_file: Path) -> None:
    async with running_gateway(config_path) as (gateway, server):
        cpu_at_start = cpu_seconds(os.getpid())
        ready_file.write_text(str(server.port))
        await stop_signal().wait()
        cpu = cpu_seconds(os.getpid()) - cpu_at_start
        ready_file.with_suffix(".cpu").write_text(f"{cpu:.3f}")
        print(f"inbound stats: {gateway.inbound.stats}", file=sys.stderr)


async def drive(args: argparse.Namespace, work: Path, sim_port: int) -> bool:
    from gateway.config import SimulatorConfig
    from gateway.simulator import SmscSimulator
    from smpp.aio import SmppClient
    from smpp.pdu import DeliverSm, Pdu
    from smpp.session import SessionConfig

    simulator = SmscSimulator(
        SimulatorConfig(enabled=True, host="127.0.0.1", port=sim_port), keep_received=False
    )
    await simulator.start()
    config_path = work / "tandem.toml"
    config_path.write_text(tandem_config(work / "data", sim_port))
    ready = work / "ready"
    command = [PYTHON, __file__, "--serve", str(config_path), "--ready-file", str(ready)]
    if args.asyncio:
        command.append("--asyncio")
    log = open(work / "tandem.log", "wb")  # noqa: SIM115
    tandem = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        port = int(await asyncio.to_thread(wait_for_file, ready, tandem, 60.0))
        while not simulator.bound_system_ids:
            await asyncio.sleep(0.05)
        total = args.messages
        got: dict[bytes, int] = {}
        done = asyncio.Event()

        def on_request(pdu: Pdu) -> Pdu:
            if isinstance(pdu, DeliverSm):
                got[pdu.short_message] = got.get(pdu.short_message, 0) + 1
                if len(got) >= total:
                    done.set()
            return pdu.response()

        client = SmppClient(
            SessionConfig(window=1000, response_timeout=60.0), request_handler=on_request
        )
        await client.connect("127.0.0.1", port)
        await client.bind("receiver", SYSTEM_ID, PASSWORD)
        texts = [b"MO number %07d from the bench" % n for n in range(total)]
        started = time.perf_counter()
        for n, text in enumerate(texts):
            source = f"4477009{n % 100000:05d}"
            if args.parts == 1:
                simulator.inject_mo(source, SHORT_CODE, short_message=text, system_id="tandem")
                continue
            size = -(-len(text) // args.parts)
            for seq in range(args.parts):
                chunk = text[seq * size : (seq + 1) * size]
                simulator.inject_mo(
                    source,
                    SHORT_CODE,
                    short_message=bytes((5, 0, 3, n & 0xFF, args.parts, seq + 1)) + chunk,
                    system_id="tandem",
                    esm_class=0x40,
                )
        try:
            await asyncio.wait_for(done.wait(), args.timeout)
        except TimeoutError:
            pass
        elapsed = time.perf_counter() - started
        await client.unbind()
    finally:
        stop(tandem)
        await simulator.stop()
    cpu = float((ready.with_suffix(".cpu")).read_text() or 0)
    with sqlite3.connect(f"file:{work / 'data' / 'tandem.db'}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT COUNT(*) FROM inbound WHERE part_of IS NULL").fetchone()[0]
    duplicates = sum(count - 1 for count in got.values())
    lost = total - len(set(got) & set(texts))
    print(f"MOs                 {total} ({args.parts} part{'s' if args.parts > 1 else ''} each)")
    print(f"MOs/s               {total / elapsed:,.0f}  ({elapsed:.2f} s, stored + forwarded)")
    print(f"Tandem CPU per MO   {cpu / total * 1e6:,.0f} us ({cpu:.2f} s with its store writer)")
    print(f"stored rows         {rows}")
    print(f"received by ESME    {len(got)} ({duplicates} duplicates), lost {lost}")
    print(f"load average        {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return lost == 0 and rows == total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--parts", type=int, default=1, choices=(1, 2, 3))
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--asyncio", action="store_true", help="plain asyncio, not uvloop")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--ready-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    runner = asyncio.run
    if not args.asyncio:
        import uvloop

        runner = uvloop.run
    if args.serve:
        runner(serve(Path(args.serve), Path(args.ready_file)))
        return 0
    work = Path(tempfile.mkdtemp(prefix="tandem-bench-inbound-"))
    print(f"work directory      {work}")
    return 0 if runner(drive(args, work, free_port())) else 1


if __name__ == "__main__":
    sys.exit(main())
