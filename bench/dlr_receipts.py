"""Receipt core benchmark: parse + canonicalise + correlate + apply, per receipt, on one core.

Run from the repository root:  .venv/bin/python bench/dlr_receipts.py [--receipts N]

Prints receipts/s and microseconds per receipt for three paths through `dlr`:
- found: the store knew the carrier id (the common case);
- held: every receipt beats its submit_sm_resp, is held, and is released by the resp;
- tlv: the id and state come from TLVs (receipted_message_id, message_state).
Both wall time and process CPU time are shown: on a busy machine CPU time is the fairer figure.
The store itself is not part of this figure (see bench/store.py).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dlr.aggregate import SegmentState, apply_segment_status
from dlr.correlation import ApplyReceipt, Correlator, SegmentRef
from dlr.ids import MessageIdFormat, SmppReceiptKey, smpp_receipt_key
from dlr.receipt import DeliveryReceipt
from dlr.status import MessageStatus, SegmentStatus, StatusSource
from smpp.constants import Tag

_STATS = ["DELIVRD", "DELIVRD", "DELIVRD", "UNDELIV", "EXPIRED", "ACCEPTD"]


def _bodies(count: int) -> list[bytes]:
    return [
        (
            f"id:{number:010d} sub:001 dlvrd:001 submit date:2401151030 done date:2401151031"
            f" stat:{_STATS[number % len(_STATS)]} err:000 text:Your code is {number % 999_999:06d}"
        ).encode()
        for number in range(count)
    ]


def _run(bodies: list[bytes], path: str) -> tuple[float, float]:
    correlator: Correlator[SmppReceiptKey, DeliveryReceipt] = Correlator(max_held=len(bodies) + 1)
    segments = [SegmentState(SegmentStatus.SUBMITTED, 0.0, 0.0)]
    empty: dict[int, object] = {}
    wall, cpu = time.perf_counter(), time.process_time()
    for number, body in enumerate(bodies):
        target = SegmentRef(str(number), 0)
        if path == "tlv":
            tlvs: dict[int, object] = {
                int(Tag.RECEIPTED_MESSAGE_ID): f"{number:X}",
                int(Tag.MESSAGE_STATE): 2,
            }
            receipt = DeliveryReceipt.parse(b"", tlvs, 0x04)
            key = smpp_receipt_key("carrier-a", receipt.message_id, MessageIdFormat.HEX)
        else:
            receipt = DeliveryReceipt.parse(body, empty, 0x04)
            key = smpp_receipt_key("carrier-a", receipt.message_id, MessageIdFormat.DEC)
        if path == "held":
            correlator.on_receipt(key, receipt, 1.0)
            applied = correlator.on_submit_resp(key, target, 1.0)[0]
        else:
            outcome = correlator.on_receipt(key, receipt, 1.0, found=target)
            assert isinstance(outcome, ApplyReceipt)
            applied = outcome
        apply_segment_status(
            MessageStatus.SUBMITTED,
            segments,
            0,
            applied.receipt.status,
            at=1.0,
            source=StatusSource.RECEIPT,
            detail=receipt.stat or "",
        )
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--receipts", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    bodies = _bodies(args.receipts)
    for path in ("found", "held", "tlv"):
        runs = [_run(bodies, path) for _ in range(args.repeat)]
        wall = min(run[0] for run in runs)
        cpu = min(run[1] for run in runs)
        count = args.receipts
        print(
            f"{path:>5}: {count / cpu:9,.0f} receipts/s CPU ({cpu / count * 1e6:5.1f} us)"
            f"  {count / wall:9,.0f} receipts/s wall ({wall / count * 1e6:5.1f} us)"
        )


if __name__ == "__main__":
    main()
