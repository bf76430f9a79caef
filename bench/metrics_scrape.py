"""What one Prometheus scrape costs the daemon: the exporter's collect and render, timed.

Usage: .venv/bin/python bench/metrics_scrape.py [--messages 2000] [--scrapes 200] [--links 1]
                                                [--queued 0] [--profile]

A gateway runs in this process with `--links` SMPP links to the SMSC simulator (`tandem sim
smsc`, its own process), sends `--messages` through the intake and waits for their receipts, so
every family has its series (links, routes, statuses, histograms). Then it renders `/metrics`
(`MetricsExporter.render`: the custom collector reads the counters, prometheus-client writes
the text) `--scrapes` times and prints the CPU time and wall time per scrape, the body's size
and its number of series. At one scrape a second the CPU per scrape is the share of a core the
exporter takes: 5 ms is 0.5 %.

`--queued N` also queues N messages for a link whose carrier does not answer (route
"parked", numbers +254...), so the scrapes read a link with a backlog as a busy daemon's
would. `--profile` prints where 20 scrapes spend their time (cProfile, by cumulative time).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
ROOT = _HERE.parent
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from bench.processes import free_port

PYTHON = sys.executable


def config_text(workdir: Path, sim_port: int, links: int, dead_port: int) -> str:
    names = [f"sim-{n}" for n in range(links)]
    blocks = "".join(
        f"""
[[links]]
type = "smpp"
name = "{name}"
host = "127.0.0.1"
port = {sim_port}
system_id = "tandem"
window = 100
submit_id_format = "hex"
dlr_id_format = "hex"
"""
        for name in names
    )
    parked = f"""
[[links]]
type = "smpp"
name = "parked"
host = "127.0.0.1"
port = {dead_port}
system_id = "tandem"

[[routes]]
name = "parked"
priority = 10
prefixes = ["+254"]
targets = ["parked"]
"""
    return (
        f"""
data_dir = "{workdir / "data"}"
[store]
writer = "process"
[smpp_server]
enabled = false
[http]
enabled = false
{blocks}
[[routes]]
name = "everything"
priority = 100
strategy = "weighted"
targets = {names!r}
""".replace("'", '"')
        + parked
    )


async def run(args: argparse.Namespace, workdir: Path) -> None:
    from gateway.app import Gateway
    from gateway.config import load_config
    from gateway.intake import MessageRequest
    from gateway.links import LinkState
    from gateway.messages import Channel

    sim_port = free_port()
    log = open(workdir / "smsc.log", "wb")  # noqa: SIM115
    smsc = subprocess.Popen(
        [PYTHON, "-m", "gateway.cli", "sim", "smsc", "--port", str(sim_port), "--dlr-delay", "0"],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    try:
        await asyncio.sleep(0.7)
        config = workdir / "tandem.toml"
        config.write_text(config_text(workdir, sim_port, args.links, free_port()), encoding="utf-8")
        gateway = Gateway(load_config(config))
        await gateway.start()
        try:
            while any(
                link.state is not LinkState.UP
                for name, link in gateway.links.items()
                if name != "parked"
            ):
                await asyncio.sleep(0.05)

            async def accept(count: int, number: str, text: str) -> None:
                """Accept `count` messages to `number` (a format with the index), 100 a call."""
                requests = [
                    MessageRequest(
                        account="bench",
                        channel=Channel.HTTP,
                        to=number.format(n),
                        sender="Bench",
                        text=f"{text} {n}",
                    )
                    for n in range(count)
                ]
                for start in range(0, len(requests), 100):
                    await gateway.intake.accept(requests[start : start + 100])

            await accept(args.messages, "+447911{:06d}", "scrape")
            while sum(gateway.stats.finals.values()) < args.messages:
                await asyncio.sleep(0.05)
            await accept(args.queued, "+2547{:08d}", "parked")
            exporter = gateway.metrics
            assert exporter is not None
            body = exporter.render()  # type: ignore[attr-defined]
            cpu, wall = [], []
            for _ in range(args.scrapes):
                started_cpu, started = time.thread_time(), time.perf_counter()
                exporter.render()  # type: ignore[attr-defined]
                cpu.append(time.thread_time() - started_cpu)
                wall.append(time.perf_counter() - started)
                await asyncio.sleep(0)
            if args.profile:
                import cProfile
                import pstats

                profiler = cProfile.Profile()
                profiler.enable()
                for _ in range(20):
                    exporter.render()  # type: ignore[attr-defined]
                profiler.disable()
                pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
            series = sum(
                1 for line in body.decode().splitlines() if line and not line.startswith("#")
            )
            print(
                f"metrics_scrape: {args.links} link(s), {args.messages} messages delivered, "
                f"{args.queued} queued, {args.scrapes} scrapes; "
                f"load average {os.getloadavg()[0]:.2f}"
            )
            print(f"  body        {len(body):,} bytes, {series} series")
            print(
                f"  cpu/scrape  median {statistics.median(cpu) * 1e3:.2f} ms, "
                f"p90 {sorted(cpu)[int(0.9 * len(cpu))] * 1e3:.2f} ms"
            )
            print(
                f"  wall/scrape median {statistics.median(wall) * 1e3:.2f} ms, "
                f"max {max(wall) * 1e3:.2f} ms (the event loop is held this long)"
            )
        finally:
            await gateway.stop()
    finally:
        smsc.terminate()
        smsc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--scrapes", type=int, default=200)
    parser.add_argument("--links", type=int, default=1)
    parser.add_argument("--queued", type=int, default=0)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tandem-scrape-") as directory:
        asyncio.run(run(args, Path(directory)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
