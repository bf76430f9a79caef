"""Throughput of the SMPP session and its asyncio adapter: our client role against our server role.

Two processes over 127.0.0.1 (the server is this script re-run with --serve), uvloop when
available. The client binds as transceiver and sends --count submit_sm with a window of
--window; the server answers each with a message id. Prints submit_sm per second for the
pipelined API (send_request_nowait + wait_for_window) and for `await submit()` from --window
concurrent tasks.

    .venv/bin/python bench/session.py                    # 100,000 submit_sm, window 100
    .venv/bin/python bench/session.py --count 20000      # shorter
    .venv/bin/python bench/session.py --sans-io          # the Session and codec alone
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from smpp.aio import SmppClient, SmppHandler, serve_smpp
from smpp.constants import CommandStatus
from smpp.pdu import BindTransceiver, Pdu, SubmitSm
from smpp.session import RequestReceived, Role, Session, SessionConfig, response_to

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
    uvloop = None


class AcceptAll(SmppHandler):
    def __init__(self) -> None:
        self.count = 0

    def bind_requested(self, request: Pdu) -> int:
        return CommandStatus.ESME_ROK

    def request_received(self, request: Pdu) -> Pdu | None:
        self.count += 1
        assert isinstance(request, SubmitSm)
        return request.response(message_id=f"{self.count:x}")


async def serve(window: int) -> None:
    config = SessionConfig(window=window, enquire_link_interval=None)
    server = await serve_smpp(AcceptAll, "127.0.0.1", 0, config=config)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until parent exits
    server.close()


def message(i: int) -> SubmitSm:
    return SubmitSm(
        source_addr="Tandem",
        source_addr_ton=5,
        dest_addr_ton=1,
        dest_addr_npi=1,
        destination_addr=f"49151{i:08d}",
        registered_delivery=1,
        short_message=b"Your code is %06d. It expires in 5 minutes." % (i % 1000000),
    )


async def pipelined(client: SmppClient, count: int) -> float:
    connection = client.connection
    session = connection.session
    finished = asyncio.get_running_loop().create_future()
    failures = 0
    answered = 0

    def on_response(future: asyncio.Future[Pdu]) -> None:
        nonlocal answered, failures
        answered += 1
        if future.exception() is not None or future.result().command_status:
            failures += 1
        if answered == count:
            finished.set_result(None)

    start = time.perf_counter()
    for i in range(count):
        if session.window_free <= 0:
            await connection.wait_for_window()
        connection.send_request_nowait(message(i)).add_done_callback(on_response)
    await finished
    elapsed = time.perf_counter() - start
    assert failures == 0, f"{failures} submit_sm failed"
    return elapsed


async def awaited(client: SmppClient, count: int, tasks: int) -> float:
    per_task = count // tasks

    async def worker(first: int) -> None:
        for i in range(first, first + per_task):
            response = await client.submit(message(i))
            assert response.command_status == 0

    start = time.perf_counter()
    await asyncio.gather(*(worker(t * per_task) for t in range(tasks)))
    return time.perf_counter() - start


async def run_client(port: int, count: int, window: int) -> None:
    config = SessionConfig(window=window, enquire_link_interval=None)
    client = SmppClient(config)
    await client.connect("127.0.0.1", port)
    await client.bind("transceiver", "bench", "bench")
    await pipelined(client, min(count, 5000))  # warm-up
    elapsed = await pipelined(client, count)
    print(f"pipelined: {count} submit_sm in {elapsed:.2f}s = {count / elapsed:,.0f} submit_sm/s")
    elapsed = await awaited(client, count, window)
    print(f"await submit() x{window} tasks: {count} in {elapsed:.2f}s = {count / elapsed:,.0f}/s")
    await client.unbind()


def sans_io(count: int, window: int) -> None:
    """The Session and codec alone, no sockets: CPU per submit_sm on each side."""
    config = SessionConfig(window=window, enquire_link_interval=None, bind_timeout=None)
    client, server = Session(Role.CLIENT, config), Session(Role.SERVER, config)
    client.send_request(BindTransceiver(system_id="bench"), 0.0)
    server.receive_data(client.data_to_send(), 0.0)
    server.accept_bind()
    client.receive_data(server.data_to_send(), 0.0)
    client_time = server_time = 0.0
    clock = time.perf_counter
    for first in range(0, count, window):
        started = clock()
        for i in range(first, min(first + window, count)):
            client.send_request(message(i), 1.0)
        data = client.data_to_send()
        middle = clock()
        for event in server.receive_data(data, 1.0):
            assert isinstance(event, RequestReceived)
            server.send_response(response_to(event.pdu, message_id="0af3"))
        answers = server.data_to_send()
        server.next_deadline()
        ended = clock()
        client.receive_data(answers, 1.0)
        client.next_deadline()
        client_time += clock() - ended + middle - started
        server_time += ended - middle
    print(
        f"sans-IO: client {client_time / count * 1e6:.1f} us/submit_sm (building the PDU "
        f"included), server {server_time / count * 1e6:.1f} us/submit_sm"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--serve", action="store_true", help="run the server side (internal)")
    parser.add_argument("--port", type=int, help="use a server already listening there")
    parser.add_argument("--sans-io", action="store_true", help="time the Session alone")
    args = parser.parse_args()
    if args.sans_io:
        sans_io(args.count, args.window)
        return
    if uvloop is not None:
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    if args.serve:
        asyncio.run(serve(args.window))
        return
    if args.port:
        asyncio.run(run_client(args.port, args.count, args.window))
        return
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--window", str(args.window)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        loop_name = "uvloop" if uvloop is not None else "asyncio"
        print(f"pids {os.getpid()}/{server.pid}, {loop_name}, window {args.window}")
        asyncio.run(run_client(port, args.count, args.window))
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
