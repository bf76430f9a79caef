"""SMPP codec speed: encode + decode of a typical submit_sm, ours against smpplib and aiosmpplib.

The PDU: 153-character GSM-compatible text, alphanumeric sender, international destination,
registered_delivery=1, TLVs user_message_reference and source_port. All three libraries must
produce the same bytes (checked before timing). Each figure is the best of several repeats, all
libraries measured in the same run and taking turns, in process CPU time, so the ratio is
what to read.

Peers are given their cheapest path: aiosmpplib reuses its cached encoded text on each encode and
(in the headline row) decodes text as ASCII; smpplib reuses one PDU object. The ratio is taken
against the fastest peer row. Ours encodes a PDU object to bytes and
decodes bytes to a PDU object.

Run: .venv/bin/python bench/codec.py [--window SECONDS] [--repeat R]
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
import timeit
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import smpplib.smpp
from aiosmpplib import NPI, TON, OptionalParam, PhoneNumber, SmppMessage
from aiosmpplib import SubmitSm as PeerSubmitSm

from smpp.codec import PduDecoder, decode, encode
from smpp.constants import Tag
from smpp.pdu import SubmitSm

TEXT = ("Tandem test message " * 8)[:153]

# CPU time of this process, not wall time: on a shared machine, time spent descheduled while
# other work runs would otherwise be charged to whichever library was being timed.
CPU_TIME = time.process_time


class _SequenceSource:
    sequence = 7

    def next_sequence(self) -> int:
        return 7


def ours() -> tuple[Callable[[], object], Callable[[], object], bytes]:
    pdu = SubmitSm(
        sequence_number=7,
        source_addr_ton=5,
        source_addr="Tandem",
        dest_addr_ton=1,
        dest_addr_npi=1,
        destination_addr="447700900123",
        registered_delivery=1,
        short_message=TEXT.encode("ascii"),
        tlvs={Tag.USER_MESSAGE_REFERENCE: 42, Tag.SOURCE_PORT: 1234},
    )
    wire = encode(pdu)
    assert decode(wire) == pdu
    return functools.partial(encode, pdu), functools.partial(decode, wire), wire


def smpplib_codec() -> tuple[Callable[[], object], Callable[[], object], bytes]:
    client = _SequenceSource()
    pdu = smpplib.smpp.make_pdu(
        "submit_sm",
        client=client,
        source_addr_ton=5,
        source_addr_npi=0,
        source_addr="Tandem",
        dest_addr_ton=1,
        dest_addr_npi=1,
        destination_addr="447700900123",
        registered_delivery=1,
        short_message=TEXT.encode("ascii"),
        user_message_reference=42,
        source_port=1234,
    )
    wire = pdu.generate()
    return pdu.generate, (lambda: smpplib.smpp.parse_pdu(wire, client=client)), wire


def aiosmpplib_codec(text_codec: str) -> tuple[Callable[[], object], Callable[[], object], bytes]:
    pdu = PeerSubmitSm(
        sequence_num=7,
        short_message=TEXT,
        source=PhoneNumber("Tandem", TON.ALPHANUMERIC, NPI.UNKNOWN),
        destination=PhoneNumber("447700900123", TON.INTERNATIONAL, NPI.ISDN),
        registered_delivery=1,
        optional_params=[
            OptionalParam(Tag.USER_MESSAGE_REFERENCE, 42),
            OptionalParam(Tag.SOURCE_PORT, 1234),
        ],
    )
    wire = pdu.pdu()

    def decode_peer() -> object:
        return PeerSubmitSm.from_pdu(wire, SmppMessage.parse_header(wire), text_codec)

    return pdu.pdu, decode_peer, wire


def best_microseconds(operation: Callable[[], object], number: int, repeat: int) -> float:
    timings = timeit.repeat(operation, number=number, repeat=repeat, timer=CPU_TIME)
    return min(timings) / number * 1e6


def calibrated_number(operation: Callable[[], object], window: float) -> int:
    """How many calls fill a timing window: every library is timed over windows of one length."""
    calls = 10
    while True:
        elapsed = timeit.timeit(operation, number=calls, timer=CPU_TIME)
        if elapsed >= window / 10:
            return max(1, round(calls * window / elapsed))
        calls *= 4


def interleaved_best(
    operations: dict[str, tuple[Callable[[], object], int]], repeat: int
) -> dict[str, float]:
    """Best microseconds per operation, taking turns so every library meets the same load."""
    best = dict.fromkeys(operations, float("inf"))
    for _ in range(repeat):
        for name, (operation, number) in operations.items():
            elapsed = timeit.timeit(operation, number=number, timer=CPU_TIME) / number * 1e6
            best[name] = min(best[name], elapsed)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--window", type=float, default=0.01, help="seconds per timing window (all libraries)"
    )
    parser.add_argument("--repeat", type=int, default=15, help="repeats; the best one counts")
    args = parser.parse_args()

    codecs = {
        "tandem": ours(),
        "smpplib": smpplib_codec(),
        # aiosmpplib decodes short_message to text while parsing: with ASCII (its cheapest codec)
        # and with gsm0338, what its ESME uses for data_coding 0 by default.
        "aiosmpplib": aiosmpplib_codec("ascii"),
        "aiosmpplib*": aiosmpplib_codec("gsm0338"),
    }
    wires = {name: codec[2] for name, codec in codecs.items()}
    assert len(set(wires.values())) == 1, "the three libraries must produce the same PDU"
    print(f"typical submit_sm: {len(wires['tandem'])} octets, identical in all three libraries")
    print(
        f"best of {args.repeat} windows of {args.window * 1000:.0f} ms per operation, taken in "
        f"turns (Python {sys.version.split()[0]})"
    )
    print()
    header = ("library", "encode us", "decode us", "enc+dec us", "enc+dec ops/s")
    print(f"{header[0]:<12}{header[1]:>11}{header[2]:>11}{header[3]:>12}{header[4]:>15}")
    operations: dict[str, tuple[Callable[[], object], int]] = {}
    for name, (encode_op, decode_op, _wire) in codecs.items():
        operations[f"{name} encode"] = (encode_op, calibrated_number(encode_op, args.window))
        operations[f"{name} decode"] = (decode_op, calibrated_number(decode_op, args.window))
    best = interleaved_best(operations, args.repeat)
    totals: dict[str, float] = {}
    for name in codecs:
        encode_us, decode_us = best[f"{name} encode"], best[f"{name} decode"]
        total = totals[name] = encode_us + decode_us
        print(f"{name:<12}{encode_us:>11.2f}{decode_us:>11.2f}{total:>12.2f}{1e6 / total:>15,.0f}")

    print("  (* = aiosmpplib decoding the text with its default gsm0338 codec)")
    faster_peer = min((name for name in totals if name != "tandem"), key=totals.__getitem__)
    print()
    print(
        f"speed-up over the faster peer ({faster_peer}): "
        f"{totals[faster_peer] / totals['tandem']:.1f}x "
        f"(ours/peer time ratio {totals['tandem'] / totals[faster_peer]:.3f})"
    )

    # Stream decoding: the path a link actually uses (framing included).
    wire = wires["tandem"]
    stream = wire * 1000
    chunks = [stream[i : i + 4096] for i in range(0, len(stream), 4096)]

    def feed_stream() -> object:
        decoder = PduDecoder()
        for chunk in chunks:
            decoder.feed(chunk)
        return decoder

    per_pdu = best_microseconds(feed_stream, 1, args.repeat) / 1000
    print(
        f"PduDecoder.feed, 1000 submit_sm in 4 KiB chunks: {per_pdu:.2f} us per PDU "
        f"({1e6 / per_pdu:,.0f} PDUs/s)"
    )


if __name__ == "__main__":
    main()
