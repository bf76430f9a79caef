"""SMPP binds under a flood of bad ones: what a legitimate bind waits, and whether a refusal's
answer time tells an unknown system_id from a wrong password.

Usage: .venv/bin/python bench/smpp_binds.py [--floods 150,1000] [--single-source 1000]
                                            [--samples 30] [--legit-after 1.0]

Processes (all on 127.0.0.1): Tandem (this script with `--serve`: the Gateway with its SQLite
store, no carrier link, the customer SMPP server with accounts `alice`, `victim` and one fresh
account per flood) and this one, the clients: raw bind_transmitter PDUs over asyncio streams,
each from an address of its own in 127.0.0.0/8 (so the per-address guard sees many clients, as
it would from a botnet). The failed-bind guard's delays and bans are off in the Tandem process,
so the answers measure the password checks and their queue alone.

1. Answer times of refused binds, one at a time: a wrong password for an account, an unknown
   system_id; median and 90th percentile of `--samples` each.
2. Floods: N bad binds (half wrong passwords for `victim`, half unknown ids) sent at once, each
   from its own address (then, `--single-source`, all from one address); `--legit-after`
   seconds later (the flood has arrived and waits) a legitimate bind with credentials the
   server has not verified yet (a fresh account), and one whose credentials it verified before
   the flood (`alice`), both from 127.0.0.1. Printed: each legitimate bind's answer and time,
   how the flood was answered and how long until its last answer.

The server's counters (what it refused for a full queue, what it bound from its cache) are read
from the Tandem process at the end; code without those counters prints "-".
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, bench/ would come first on sys.path and its routing.py would shadow the
# `routing` package: put the repository root there instead.
_HERE = Path(__file__).resolve().parent
ROOT = _HERE.parent
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from bench.customer_server import running_gateway, stop_signal

PASSWORD = "good1234"
OK, BIND_TRANSMITTER = 0, 0x00000002


def config_toml(data_dir: Path, fresh_accounts: int) -> str:
    from gateway.accounts import hash_password

    names = ["alice", "victim", *(f"fresh{n}" for n in range(fresh_accounts))]
    accounts = "".join(  # a hash (and salt) of its own each, as `tandem accounts add` writes
        f'[[accounts]]\nsystem_id = "{name}"\npassword_hash = "{hash_password(PASSWORD)}"\n'
        for name in names
    )
    return f"""
data_dir = "{data_dir}"
[store]
writer = "thread"
[smpp_server]
enabled = false    # started by this script
host = "127.0.0.1"
port = 0
[http]
enabled = false
{accounts}"""


async def serve(config_path: Path, ready_file: Path) -> None:
    from gateway.accounts import BindGuard

    async with running_gateway(config_path, tune=False) as (_, server):
        # The failed-bind guard's delays and bans off: the answers measure the checks
        # themselves (with them on, every failure past the free ones waits the same added
        # delay either way).
        quiet = {
            "free_failures": 10**9,
            "ban_after": 10**9,
            "address_free_failures": 10**9,
            "address_ban_after": 10**9,
            "account_free_failures": 10**9,
        }
        accepted = inspect.signature(BindGuard).parameters
        server.guard = BindGuard(**{k: v for k, v in quiet.items() if k in accepted})
        ready_file.write_text(str(server.port))
        await stop_signal().wait()
        stats = server.stats
        ready_file.with_suffix(".stats").write_text(
            json.dumps(
                {
                    name: getattr(stats, name, None)
                    for name in ("binds", "bind_failures", "bind_refused_busy", "binds_cached")
                }
            )
        )


# --- the clients ----------------------------------------------------------------------------------


def bind_pdu(system_id: str, password: str) -> bytes:
    body = system_id.encode() + b"\0" + password.encode() + b"\0" + b"\0" + b"\x34\0\0\0"
    return struct.pack(">IIII", 16 + len(body), BIND_TRANSMITTER, 0, 1) + body


async def bind(port: int, source: str, system_id: str, password: str) -> tuple[int, float]:
    """(command_status, seconds from connect to answer); -1 if the connection died."""
    started = time.perf_counter()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    except OSError:
        return -1, time.perf_counter() - started
    try:
        writer.write(bind_pdu(system_id, password))
        header = await asyncio.wait_for(reader.readexactly(16), 60)
        length, _, status, _ = struct.unpack(">IIII", header)
        await reader.readexactly(length - 16)
        return status, time.perf_counter() - started
    except (OSError, asyncio.IncompleteReadError, TimeoutError):
        return -1, time.perf_counter() - started
    finally:
        writer.close()


def address(n: int) -> str:
    return f"127.{1 + n // 65536}.{(n // 256) % 256}.{n % 256 or 1}"


def summary(seconds: list[float]) -> str:
    ordered = sorted(seconds)
    p90 = ordered[int(len(ordered) * 0.9) - 1]
    return f"median {statistics.median(ordered) * 1000:6.1f} ms, p90 {p90 * 1000:6.1f} ms"


async def measure(
    port: int, floods: list[int], single_source: list[int], samples: int, legit_after: float
) -> None:
    source = iter(range(1, 10_000_000))
    print(f"1. refused binds one at a time ({samples} each, each from its own address)")
    for label, system_id, password in (
        ("wrong password, known system_id", "victim", "wrong"),
        ("unknown system_id             ", "nobody", "wrong"),
    ):
        times = []
        statuses = set()
        for _ in range(samples):
            status, seconds = await bind(port, address(next(source)), system_id, password)
            statuses.add(status)
            times.append(seconds)
        print(f"   {label}: {summary(times)}; status {sorted(f'0x{s:02X}' for s in statuses)}")
    status, _ = await bind(port, "127.0.0.1", "alice", PASSWORD)  # alice's credentials known
    assert status == OK, status
    print("2. floods of bad binds, each from its own address, and two legitimate binds")
    rounds = [(size, False) for size in floods] + [(size, True) for size in single_source]
    for round_number, (size, single) in enumerate(rounds):
        flooder = address(next(source))
        flood = [
            asyncio.ensure_future(
                bind(
                    port,
                    flooder if single else address(next(source)),
                    *(("victim", "wrong") if n % 2 else ("x", "y")),
                )
            )
            for n in range(size)
        ]
        started = time.perf_counter()
        await asyncio.sleep(legit_after)
        fresh, cached = await asyncio.gather(
            bind(port, "127.0.0.1", f"fresh{round_number}", PASSWORD),
            bind(port, "127.0.0.1", "alice", PASSWORD),
        )
        answers = await asyncio.gather(*flood)
        took = time.perf_counter() - started
        by_status: dict[str, int] = {}
        for status, _ in answers:
            key = "no answer" if status < 0 else f"0x{status:02X}"
            by_status[key] = by_status.get(key, 0) + 1
        where = " from one address" if single else ""
        print(
            f"   flood of {size}{where}: fresh credentials {_outcome(fresh)}, "
            f"verified before {_outcome(cached)}; flood answered {by_status} "
            f"in {took:.2f} s"
        )
        await asyncio.sleep(1.0)


def _outcome(result: tuple[int, float]) -> str:
    status, seconds = result
    word = "bound" if status == OK else f"refused 0x{status:02X}" if status >= 0 else "lost"
    return f"{word} after {seconds * 1000:.0f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--floods", default="150,1000")
    parser.add_argument("--single-source", default="1000", help="flood sizes from one address")
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--legit-after", type=float, default=1.0, help="seconds into the flood")
    parser.add_argument("--serve", nargs=2, metavar=("CONFIG", "READY_FILE"))
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(Path(args.serve[0]), Path(args.serve[1])))
        return
    floods = [int(n) for n in args.floods.split(",") if n]
    single_source = [int(n) for n in args.single_source.split(",") if n]
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        config = directory / "tandem.toml"
        config.write_text(config_toml(directory / "data", len(floods) + len(single_source)))
        ready = directory / "ready"
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(config), str(ready)], cwd=ROOT
        )
        try:
            deadline = time.monotonic() + 60
            while not ready.exists() or not ready.read_text():
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the Tandem process did not start")
                time.sleep(0.05)
            asyncio.run(
                measure(
                    int(ready.read_text()), floods, single_source, args.samples, args.legit_after
                )
            )
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(30)
        stats_file = ready.with_suffix(".stats")
        if stats_file.exists():
            stats = json.loads(stats_file.read_text())
            shown = {k: "-" if v is None else v for k, v in stats.items()}
            print(f"server counters: {shown}")


if __name__ == "__main__":
    main()
