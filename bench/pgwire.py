"""A counting relay between Tandem and PostgreSQL: what the database work per message is, seen
on the wire, whichever part of Tandem sends it (the writer, the readers' pool, the leases).

Usage: .venv/bin/python bench/pgwire.py --port P --counts FILE [--upstream 127.0.0.1:5432]

Relays every connection to the upstream server and counts what clients send: each Execute
('E') and simple Query ('Q') is a statement run; each Sync ('S') and Query is a round trip (the
client waits for the server's ReadyForQuery). Writes the totals to FILE as JSON every 0.2 s
and at SIGTERM. A client must not ask for TLS (`sslmode=disable` in its DSN): the relay reads
the protocol in clear.

The benches (bench/mt_path.py, bench/smpp_in.py with `--store postgresql --count-db`) read the
file before and after their traffic and divide by the messages.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import struct
from collections import Counter
from pathlib import Path
from typing import Any

_LENGTH = struct.Struct("!I")
_SSL_REQUEST = 80877103
_GSS_REQUEST = 80877104
COUNTED = {"E": "executes", "Q": "queries", "S": "syncs", "P": "parses", "B": "binds"}


class Counts:
    def __init__(self) -> None:
        self.totals = dict.fromkeys(COUNTED.values(), 0)
        self.totals["connections"] = 0
        # Executions by statement text (its first line, whitespace folded): which statements
        # the work per message is made of.
        self.by_statement: Counter[str] = Counter()

    def snapshot(self) -> dict[str, Any]:
        totals: dict[str, Any] = dict(self.totals)
        totals["statements"] = totals["executes"] + totals["queries"]
        totals["round_trips"] = totals["syncs"] + totals["queries"]
        totals["by_statement"] = dict(self.by_statement)
        return totals


def _cstring(body: bytes, start: int = 0) -> tuple[str, int]:
    """The NUL-terminated string at `start` of a message body, and where the next begins."""
    end = body.index(b"\0", start)
    return body[start:end].decode("utf-8", "replace"), end + 1


def _short(query: str) -> str:
    return " ".join(query.split())[:160]


async def _client_to_server(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, counts: Counts
) -> None:
    # Untyped first messages: an SSL or GSS request (answered with one byte, then the client
    # sends its startup message), then the startup message.
    while True:
        head = await reader.readexactly(8)
        length, code = struct.unpack("!II", head)
        writer.write(head + await reader.readexactly(length - 8))
        if code not in (_SSL_REQUEST, _GSS_REQUEST):
            break
    totals = counts.totals
    prepared: dict[str, str] = {}  # statement name -> text, this connection's
    portals: dict[str, str] = {}  # portal name -> statement text
    while True:
        kind = await reader.readexactly(1)
        raw_length = await reader.readexactly(4)
        body = await reader.readexactly(_LENGTH.unpack(raw_length)[0] - 4)
        name = COUNTED.get(kind.decode("latin-1"))
        if name is not None:
            totals[name] += 1
        if kind == b"P":
            statement, rest = _cstring(body)
            prepared[statement] = _short(_cstring(body, rest)[0])
        elif kind == b"B":
            portal, rest = _cstring(body)
            portals[portal] = prepared.get(_cstring(body, rest)[0], "?")
        elif kind == b"E":
            counts.by_statement[portals.get(_cstring(body)[0], "?")] += 1
        elif kind == b"Q":
            counts.by_statement[_short(_cstring(body)[0])] += 1
        writer.write(kind + raw_length + body)
        await writer.drain()


async def _server_to_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()


async def relay(port: int, upstream: tuple[str, int], counts_file: Path) -> None:
    counts = Counts()

    async def serve(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter):
        counts.totals["connections"] += 1
        server_reader, server_writer = await asyncio.open_connection(*upstream)
        tasks = [
            asyncio.create_task(_client_to_server(client_reader, server_writer, counts)),
            asyncio.create_task(_server_to_client(server_reader, client_writer)),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            for writer in (server_writer, client_writer):
                writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    async with server:
        while not stop.is_set():
            counts_file.write_text(json.dumps(counts.snapshot()))
            try:
                await asyncio.wait_for(stop.wait(), 0.2)
            except TimeoutError:
                pass
    counts_file.write_text(json.dumps(counts.snapshot()))


def read_counts(counts_file: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(counts_file.read_text()))
    except (OSError, ValueError):
        return {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--counts", type=Path, required=True)
    parser.add_argument("--upstream", default="127.0.0.1:5432")
    options = parser.parse_args()
    host, _, port = options.upstream.rpartition(":")
    asyncio.run(relay(options.port, (host, int(port)), options.counts))


if __name__ == "__main__":
    main()
