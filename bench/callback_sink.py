"""The customer's callback endpoint of bench/http.py, in a process of its own.

Run as `python -m bench.callback_sink --kind tandem|kannel --port N --expected N [--secret S]`
from the repository root. It counts final receipt callbacks per message and answers
`GET /stats` with what it counted and when (time.perf_counter(), the system's monotonic clock,
so the bench can compare it with its own) the last expected final callback arrived.

Why a process of its own: in the load generator's process, every callback took a turn of the
loop that sends the requests, so a gateway that delivers its callbacks while the requests still
come in (rather than after) slowed its own load. A customer's callback receiver is not the
program that sends its messages; both gateways get the same separate receiver.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import time
from dataclasses import dataclass, field

from aiohttp import web

from dlr.callback import SIGNATURE_HEADER, verify


@dataclass
class Sink:
    """Counts final receipts per message (the last status each message reported)."""

    expected: int
    secret: str | None = None
    final: dict[str, str] = field(default_factory=dict)
    callbacks: int = 0
    bad_signatures: int = 0
    done_at: float | None = None

    def _final(self, message: str, status: str) -> None:
        self.callbacks += 1
        self.final[message] = status
        if self.done_at is None and len(self.final) >= self.expected:
            self.done_at = time.perf_counter()

    async def tandem(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.secret is not None and self.callbacks % 100 == 0:  # check a sample: CPU is shared
            header = request.headers.get(SIGNATURE_HEADER, "")
            if not verify(self.secret, body, header, time.time()):
                self.bad_signatures += 1
        document = json.loads(body)
        if document["final"]:
            self._final(document["message_id"], document["status"])
        return web.Response(text="ok")

    async def kannel(self, request: web.Request) -> web.Response:
        # dlr-url ...?i=<index>&s=%d: 1 delivered, 2 failed, 8 submitted, 16 rejected.
        status = request.query.get("s", "")
        if status in ("1", "2", "16"):
            self._final(request.query["i"], "delivered" if status == "1" else "failed")
        return web.Response(text="ok")

    async def stats(self, _request: web.Request) -> web.Response:
        return web.json_response(
            {
                "final": len(self.final),
                "delivered": sum(1 for status in self.final.values() if status == "delivered"),
                "callbacks": self.callbacks,
                "bad_signatures": self.bad_signatures,
                "done_at": self.done_at,
            }
        )


async def serve(kind: str, port: int, sink: Sink) -> None:
    app = web.Application()
    if kind == "tandem":
        app.router.add_post("/tandem", sink.tandem)
    else:
        app.router.add_get("/kannel", sink.kannel)
    app.router.add_get("/stats", sink.stats)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=("tandem", "kannel"), required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--expected", type=int, required=True)
    parser.add_argument("--secret", default=None)
    args = parser.parse_args()
    asyncio.run(serve(args.kind, args.port, Sink(args.expected, args.secret)))


if __name__ == "__main__":
    main()
