"""What modem ports cost the process that runs them: 8 emulated modems, each `tandem sim modem`
in its own process on its own pty, driven by `modems.serial_link.ModemPort` in this one.

Usage: .venv/bin/python bench/modem_pool.py [--modems 8] [--messages 50] [--idle 10]
           [--signal-interval 1]

Phases, each measured with this process's CPU time (time.process_time) and the wall clock:
  idle  the ports are open and ready, and only poll +CSQ every `signal-interval` seconds;
  send  every port sends `messages` one-part messages with a status report requested, one after
        the other, and takes every report (read with +CMGR, then deleted).
The emulators answer at once, so the send figure is the host's cost per message, not a radio's
pace (a real modem sends 6-30 a minute).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from modems.serial_link import ModemPort
from modems.session import SessionSettings, StatusReportReceived
from modems.tpdu import Address, SmsSubmit, split_text_user_data


def start_emulators(count: int, directory: Path) -> list[tuple[subprocess.Popen[str], Path]]:
    tandem = Path(sys.executable).parent / "tandem"
    started = []
    for number in range(count):
        link = directory / f"modem{number}"
        process = subprocess.Popen(
            [str(tandem), "sim", "modem", "--link", str(link), "--report-delay", "0"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        process.stdout.readline()  # "emulated modem on ...": the pty exists
        started.append((process, link))
    return started


Reports = asyncio.Queue[StatusReportReceived]


async def measure(args: argparse.Namespace, links: list[Path]) -> None:
    reports: list[Reports] = [asyncio.Queue() for _ in links]
    ports: list[ModemPort] = []
    settings = SessionSettings(signal_interval=args.signal_interval)
    for number, link in enumerate(links):

        def listener(
            event: object, queue: asyncio.Queue[StatusReportReceived] = reports[number]
        ) -> None:
            if isinstance(event, StatusReportReceived):
                queue.put_nowait(event)

        port = ModemPort(str(link), settings, listener=listener)
        await port.open()
        ports.append(port)
    await asyncio.gather(*(asyncio.wait_for(port.ready.wait(), 30) for port in ports))

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.sleep(args.idle)
    idle_cpu, idle_wall = time.process_time() - cpu, time.perf_counter() - wall
    share = idle_cpu / idle_wall
    print(
        f"idle: {len(ports)} ports, +CSQ every {args.signal_interval:g} s: "
        f"{share * 1000:.2f} ms CPU per second ({share:.3%} of a core)"
    )

    async def take_reports(port: ModemPort, queue: Reports) -> None:
        for _ in range(args.messages):  # as they come: the SIM holds only so many
            report = await asyncio.wait_for(queue.get(), 30)
            if report.storage_index is not None:
                port.delete([report.storage_index])

    async def send_all(port: ModemPort, queue: Reports) -> None:
        taking = asyncio.create_task(take_reports(port, queue))
        destination = Address.parse("+447700900456")
        for sequence in range(args.messages):
            (part,) = split_text_user_data(f"Benchmark message {sequence}")
            tpdu = SmsSubmit(destination, part, status_report_request=True).encode()
            await port.send(sequence, [tpdu])
        await taking

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(send_all(port, queue) for port, queue in zip(ports, reports)))
    send_cpu, send_wall = time.process_time() - cpu, time.perf_counter() - wall
    total = args.messages * len(ports)
    print(
        f"send: {total} messages with reports through {len(ports)} ports in {send_wall:.2f} s: "
        f"{send_cpu * 1e6 / total:.0f} µs CPU per message (send, report read, report deleted)"
    )
    for port in ports:
        port.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modems", type=int, default=8)
    parser.add_argument("--messages", type=int, default=50)
    parser.add_argument("--idle", type=float, default=10.0)
    parser.add_argument("--signal-interval", type=float, default=1.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        emulators = start_emulators(args.modems, Path(directory))
        try:
            print(f"load average before: {os.getloadavg()[0]:.2f}")
            asyncio.run(measure(args, [link for _, link in emulators]))
        finally:
            for process, _ in emulators:
                process.send_signal(signal.SIGTERM)
            for process, _ in emulators:
                process.wait(10)


if __name__ == "__main__":
    main()
