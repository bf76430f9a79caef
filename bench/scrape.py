"""What the end-to-end benches share about Prometheus scraping the daemon while they run.

`add_arguments` gives a bench `--scrape SECONDS` (a scraper process GETs the daemon's
`/metrics` that often for the whole run; 0: none) and `--metrics on|off` (`[metrics] enabled`
and `latency`: off leaves out the exporter's latency histograms too). `config_section` is
the daemon's `[metrics]` section, with a listener of its own on `port` (the scraper asks
there, without a token). `Scraper` is the scraper: a process of its own, so its CPU is not
the daemon's (the benches leave its tree out of the gateway's CPU figure); it prints how many
scrapes it made, how many failed and the last body's size.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

SCRAPER = r"""
import signal, sys, time, urllib.request
def stop(*_):
    raise KeyboardInterrupt
signal.signal(signal.SIGTERM, stop)  # SIGINT may be ignored (a bench started in background)
url, every = sys.argv[1], float(sys.argv[2])
done = failed = size = 0
slowest = 0.0
next_at = time.monotonic()
try:
    while True:
        next_at += every
        started = time.monotonic()
        try:
            with urllib.request.urlopen(url, timeout=10) as answer:
                size = len(answer.read())
            done += 1
        except OSError:
            failed += 1
        slowest = max(slowest, time.monotonic() - started)
        time.sleep(max(next_at - time.monotonic(), 0.0))
except KeyboardInterrupt:
    pass
print(f"scrapes {done} failed {failed} bytes {size} slowest {slowest * 1000:.1f} ms", flush=True)
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scrape",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="GET /metrics this often from a process of its own for the whole run (0: never)",
    )
    parser.add_argument(
        "--metrics",
        choices=("on", "off"),
        default="on",
        help="[metrics] enabled and latency (the daemon's default: on)",
    )


def config_section(args: argparse.Namespace, port: int) -> str:
    on = "true" if args.metrics == "on" else "false"
    return f'\n[metrics]\nenabled = {on}\nlatency = {on}\nlisten = "127.0.0.1:{port}"\n'


def describe(args: argparse.Namespace) -> str:
    scraped = f"/metrics scraped every {args.scrape:g} s" if args.scrape else "not scraped"
    return f"metrics {args.metrics}, {scraped}"


class Scraper:
    """The scraper process (`start` when `--scrape` is set; `stop` prints its tally)."""

    def __init__(self, args: argparse.Namespace, port: int, log: Path) -> None:
        self.every = args.scrape
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if not self.every:
            return
        with open(self.log, "ab") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-c", SCRAPER, self.url, str(self.every)],
                stdout=output,
                stderr=subprocess.STDOUT,
            )

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def stop(self) -> str:
        """Stops it; its tally line ('' when it did not run)."""
        if self.process is None:
            return ""
        import signal

        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None
        lines = self.log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        return lines[-1] if lines else ""
