"""The MQTT event sink alone: what `publish` costs the caller, and how many events a second the
sink gets acknowledged by a real broker.

Usage: .venv/bin/python bench/events.py [--events 50000] [--url mqtt://127.0.0.1:1883]
           [--qos 1] [--chunk 500]

Figures: the caller's cost of `MqttSink.publish` (a receipt-sized payload; the sink not started,
so only the append is timed); then, with the sink connected, `events` published in chunks of
`chunk` (the loop turns between chunks, as it does between a link's reads) and the time until
the broker acknowledged the last one: events/s sent, this process's CPU per event (the
event loop's share of the work: JSON, paho's packet building, acknowledgements), drops.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# bench/dlr.py and bench/http.py would shadow the packages of the same names.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from gateway.config import MqttConfig
from gateway.events import EventKind
from gateway.mqtt_sink import MqttSink


def payload(index: int) -> dict[str, object]:
    return {
        "id": f"01J{index:020d}",
        "status": "delivered",
        "final": True,
        "at": 1_764_000_000.0 + index,
        "account": "bench",
        "channel": "http",
        "to": "447911123456",
        "route": "everything",
        "link": "sim",
        "error": None,
        "segment": {"index": 0, "total": 1, "status": "delivered", "carrier_id": "abc"},
    }


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def main(args: argparse.Namespace) -> None:
    settings = MqttConfig(
        url=args.url,
        topic_prefix=f"bench-{os.getpid()}/",
        client_id=f"bench-{os.getpid()}",
        qos=args.qos,
        buffer=args.events + 10,
    )
    idle = MqttSink(settings)
    started = time.perf_counter()
    for index in range(args.events):
        idle.publish(EventKind.RECEIPT, f"m{index}", payload(index))
    append = (time.perf_counter() - started) / args.events
    print(f"  publish()   {append * 1e6:6.2f} us per event (payload built and appended)")

    sink = MqttSink(settings)
    await sink.start()
    await asyncio.wait_for(sink.connected.wait(), 10)
    cpu_before, started = cpu_seconds(), time.perf_counter()
    for first in range(0, args.events, args.chunk):
        for index in range(first, min(first + args.chunk, args.events)):
            sink.publish(EventKind.RECEIPT, f"m{index}", payload(index))
        await asyncio.sleep(0)
    while sink.stats.sent + sink.stats.dropped < args.events:
        await asyncio.sleep(0.01)
    seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu_before
    await sink.stop()
    stats = sink.stats
    print(
        f"  sent        {stats.sent} events at QoS {args.qos} in {seconds:6.2f} s = "
        f"{stats.sent / seconds:>8,.0f} events/s; dropped {stats.dropped}"
    )
    print(
        f"  cpu         {cpu:6.2f} s in this process = {cpu / args.events * 1e6:5.1f} us/event"
        f" | load average {os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--url", default="mqtt://127.0.0.1:1883")
    parser.add_argument("--qos", type=int, choices=(0, 1, 2), default=1)
    parser.add_argument("--chunk", type=int, default=500)
    asyncio.run(main(parser.parse_args()))
