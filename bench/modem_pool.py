"""What modem ports cost the process that runs them: 8 emulated modems, each `tandem sim modem`
in its own process on its own pty, driven by `modems.serial_link.ModemPort` in this one.

Usage: .venv/bin/python bench/modem_pool.py [--modems 8] [--messages 50] [--idle 10]
           [--signal-interval 1]
       .venv/bin/python bench/modem_pool.py --daemon [--modems 8] [--rate 30] [--idle 10]
           [--seconds 60]

Phases, each measured with this process's CPU time (time.process_time) and the wall clock:
  idle  the ports are open and ready, and only poll +CSQ every `signal-interval` seconds;
  send  every port sends `messages` one-part messages with a status report requested, one after
        the other, and takes every report (read with +CMGR, then deleted).
The emulators answer at once, so the send figure is the host's cost per message, not a radio's
pace (a real modem sends 6-30 a minute).

--daemon: the same emulators behind a whole daemon (`gateway.app.Gateway` in this process, store
writer on a thread so its CPU is counted here) with `modems` modem links in one even route:
idle first (`idle` seconds), then `seconds` of traffic at `rate` parts a minute per modem
through intake, store, link, status report and receipt. Figures: this process's CPU per second
in each phase, and per modem message.
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


async def measure_daemon(args: argparse.Namespace, links: list[Path], workdir: Path) -> None:
    from gateway.app import Gateway
    from gateway.config import TandemConfig
    from gateway.intake import MessageRequest
    from gateway.links import LinkState
    from gateway.messages import Channel

    names = [f"sim-{number}" for number in range(len(links))]
    config = TandemConfig.model_validate(
        {
            "data_dir": str(workdir / "data"),
            "smpp_server": {"enabled": False},
            "http": {"enabled": False},
            "store": {"writer": "thread"},
            "links": [
                {
                    "type": "modem",
                    "name": name,
                    "device": str(link),
                    "messages_per_minute": args.rate,
                }
                for name, link in zip(names, links, strict=True)
            ],
            "routes": [{"name": "pool", "priority": 1, "targets": names, "strategy": "even"}],
        }
    )
    gateway = Gateway(config)
    await gateway.start()
    try:
        deadline = time.monotonic() + 30
        while any(link.state is not LinkState.UP for link in gateway.links.values()):
            if time.monotonic() > deadline:
                raise SystemExit("modem_pool: the modem links did not come up")
            await asyncio.sleep(0.05)
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.sleep(args.idle)
        idle = (time.process_time() - cpu) / (time.perf_counter() - wall)
        print(f"daemon idle: {len(links)} modem links ready: {idle * 1000:.2f} ms CPU per second")

        interval = 60.0 / (args.rate * len(links))
        sent: list[str] = []
        cpu, wall = time.process_time(), time.perf_counter()
        while time.perf_counter() - wall < args.seconds:
            request = MessageRequest(
                account="bench",
                channel=Channel.HTTP,
                to=f"+254712{len(sent):06d}",
                text=f"Clinic reminder {len(sent)}: your appointment is tomorrow at 09:00.",
            )
            accepted = await gateway.intake.accept([request])
            sent.append(accepted[0].message.id)
            await asyncio.sleep(interval)
        busy_cpu, busy_wall = time.process_time() - cpu, time.perf_counter() - wall
        share = busy_cpu / busy_wall
        statuses: dict[str, int] = {}
        for message_id in sent:
            record = await gateway.message_store.get(message_id)
            status = record.message.status.value if record is not None else "missing"
            statuses[status] = statuses.get(status, 0) + 1
        print(
            f"daemon traffic: {len(sent)} messages in {busy_wall:.1f} s "
            f"({args.rate:g} parts/min per modem): {share * 1000:.2f} ms CPU per second "
            f"({share:.2%} of a core), {(busy_cpu - idle * busy_wall) * 1e3 / len(sent):.2f} ms "
            f"per message above idle; {statuses}"
        )
    finally:
        await gateway.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modems", type=int, default=8)
    parser.add_argument("--messages", type=int, default=50)
    parser.add_argument("--idle", type=float, default=10.0)
    parser.add_argument("--signal-interval", type=float, default=1.0)
    parser.add_argument("--daemon", action="store_true", help="modem links in a whole daemon")
    parser.add_argument("--rate", type=float, default=30.0, help="--daemon: parts/min per modem")
    parser.add_argument("--seconds", type=float, default=60.0, help="--daemon: traffic phase")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        emulators = start_emulators(args.modems, Path(directory))
        try:
            print(f"load average before: {os.getloadavg()[0]:.2f}")
            links = [link for _, link in emulators]
            if args.daemon:
                asyncio.run(measure_daemon(args, links, Path(directory)))
            else:
                asyncio.run(measure(args, links))
        finally:
            for process, _ in emulators:
                process.send_signal(signal.SIGTERM)
            for process, _ in emulators:
                process.wait(10)


if __name__ == "__main__":
    main()
