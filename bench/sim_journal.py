"""What the sandbox simulator's journal costs per message: one `accepted` line (what it received
and the receipt it owes, written before the submit is answered) and one `settled` line (the
receipt answered), as the daemon's in-process simulator writes them; and how long reading a
journal back takes when the simulator starts (the receipts still owed are queued again).

Usage: .venv/bin/python bench/sim_journal.py [--messages 100000] [--owed 10000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

# The checkout first: bench/dlr.py would otherwise shadow the dlr package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.sim_journal import SimulatorJournal
from gateway.simulator_records import DELIVERED, ReceivedSubmit, build_receipt


def received(number: int) -> ReceivedSubmit:
    return ReceivedSubmit(
        at=time.time(),
        system_id="tandem",
        operation="submit_sm",
        source_addr="Tandem",
        destination_addr="447400123456",
        data_coding=0,
        esm_class=0,
        registered_delivery=1,
        payload=b"Your Tandem code is 123456. It expires in 10 minutes.",
        tlvs={},
        message_id=f"{number:X}",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--owed", type=int, default=10_000, help="left unsettled at the end")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "simulator.jsonl"
        journal = SimulatorJournal(path)
        journal.open()
        submits = [received(n) for n in range(args.messages)]
        receipts = [build_receipt(s, s.message_id, DELIVERED) for s in submits]
        started, cpu = time.perf_counter(), time.process_time()
        for index, (submit, receipt) in enumerate(zip(submits, receipts, strict=True)):
            journal.accepted(
                at=submit.at,
                system_id=submit.system_id,
                message_id=submit.message_id,
                source=submit.source_addr,
                destination=submit.destination_addr,
                text=submit.text,
                receipt_id=submit.message_id,
                receipt=receipt,
            )
            if index < args.messages - args.owed:
                journal.settled(submit.message_id)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        journal.close()
        size = path.stat().st_size
        started = time.perf_counter()
        owed = SimulatorJournal(path).open()
        reopen = time.perf_counter() - started
    print(f"messages: {args.messages:,} (accepted + settled lines; {args.owed:,} left owed)")
    per = 1e6 / args.messages
    print(f"per message: {wall * per:.1f} µs wall, {cpu * per:.1f} µs CPU")
    print(f"file before compaction: {size / 1e6:.1f} MB")
    print(f"start-up read back: {len(owed):,} receipts owed in {reopen * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
