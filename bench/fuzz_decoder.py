"""Fuzz the PDU decoder and a server-role Session with mutated PDUs.

Starts from valid encodings of every kind of PDU and mutates them: bit flips, truncations,
command_length lies (short, long, huge, below the header), random TLVs appended (with honest or
lying lengths), spliced and duplicated frames, random garbage. Each mutant goes, in random
chunk sizes, (1) into a `PduDecoder` and (2) into a server-role `Session` that accepts binds,
pushes deliver_sm now and then, and sees its clock advance. Nothing may raise; every byte the
session answers with must decode cleanly; decoder buffers and session bookkeeping stay bounded,
and the tracemalloc peak is printed.

    .venv/bin/python bench/fuzz_decoder.py                 # 2,000,000 mutations
    .venv/bin/python bench/fuzz_decoder.py --count 50000 --seed 7
"""

from __future__ import annotations

import argparse
import random
import struct
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from smpp.codec import PduDecoder, PduError, encode
from smpp.constants import Tag
from smpp.pdu import (
    AlertNotification,
    BindReceiver,
    BindTransceiver,
    BindTransceiverResp,
    BindTransmitter,
    CancelSm,
    DataSm,
    DeliverSm,
    DeliverSmResp,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    Outbind,
    Pdu,
    QuerySm,
    ReplaceSm,
    SmeAddress,
    SubmitMulti,
    SubmitSm,
    SubmitSmResp,
    Unbind,
    UnbindResp,
)
from smpp.session import BindRequested, Role, Session, SessionConfig, SessionState

T = TypeVar("T")
MAX_PDU = 4096  # small on purpose: lies about command_length must hit the limit often


def seed_pdus() -> list[bytes]:
    """Valid encodings of every PDU shape, with and without TLVs."""
    sar = {Tag.SAR_MSG_REF_NUM: 7, Tag.SAR_TOTAL_SEGMENTS: 2, Tag.SAR_SEGMENT_SEQNUM: 1}
    pdus: list[Pdu] = [
        BindTransceiver(sequence_number=1, system_id="esme", password="pw", system_type="t"),
        BindTransmitter(sequence_number=2, system_id="esme", password="pw"),
        BindReceiver(sequence_number=3, system_id="esme", password="pw", address_range="^49"),
        BindTransceiverResp(sequence_number=1, system_id="smsc"),
        Outbind(sequence_number=4, system_id="smsc", password="pw"),
        Unbind(sequence_number=5),
        UnbindResp(sequence_number=5),
        EnquireLink(sequence_number=6),
        EnquireLinkResp(sequence_number=6),
        GenericNack(sequence_number=7, command_status=3),
        SubmitSm(
            sequence_number=8,
            source_addr="Tandem",
            source_addr_ton=5,
            destination_addr="4915112345678",
            dest_addr_ton=1,
            dest_addr_npi=1,
            esm_class=0x40,
            data_coding=8,
            registered_delivery=1,
            short_message=b"\x05\x00\x03\x2a\x02\x01" + "Привет".encode("utf-16-be"),
        ),
        SubmitSm(sequence_number=9, destination_addr="123", short_message=b"hi", tlvs=dict(sar)),
        SubmitSm(
            sequence_number=10,
            destination_addr="123",
            tlvs={Tag.MESSAGE_PAYLOAD: b"x" * 300, Tag.USER_MESSAGE_REFERENCE: 77},
        ),
        SubmitSmResp(sequence_number=8, message_id="abc123"),
        SubmitSmResp(sequence_number=9, command_status=0x58),
        DeliverSm(
            sequence_number=11,
            source_addr="4915112345678",
            esm_class=0x04,
            short_message=b"id:abc123 sub:001 dlvrd:001 submit date:2401011200 "
            b"done date:2401011201 stat:DELIVRD err:000 text:hi",
            tlvs={Tag.RECEIPTED_MESSAGE_ID: "abc123", Tag.MESSAGE_STATE: 2},
        ),
        DeliverSmResp(sequence_number=11),
        DataSm(sequence_number=12, destination_addr="123", tlvs={Tag.MESSAGE_PAYLOAD: b"data"}),
        QuerySm(sequence_number=13, message_id="abc123", source_addr="Tandem"),
        CancelSm(sequence_number=14, message_id="abc123", destination_addr="123"),
        ReplaceSm(sequence_number=15, message_id="abc123", short_message=b"new"),
        SubmitMulti(
            sequence_number=16,
            dest_addresses=[SmeAddress(1, 1, "4915100000001"), SmeAddress(1, 1, "4915100000002")],
            short_message=b"multi",
        ),
        AlertNotification(sequence_number=17, source_addr="491510", esme_addr="tandem"),
    ]
    return [encode(pdu) for pdu in pdus]


def _with_length(frame: bytes, length: int) -> bytes:
    return struct.pack(">I", length & 0xFFFFFFFF) + frame[4:]


KNOWN_TAGS = [int(tag) for tag in Tag]


def _random_tlv(rng: random.Random) -> bytes:
    tag = rng.choice(KNOWN_TAGS) if rng.random() < 0.7 else rng.randrange(0x10000)
    value = rng.randbytes(rng.choice([0, 1, 2, 4, rng.randrange(40)]))
    length = len(value) if rng.random() < 0.7 else rng.randrange(0x10000)  # sometimes a lie
    return struct.pack(">HH", tag, length) + value


def mutate(frame: bytes, seeds: list[bytes], rng: random.Random) -> bytes:
    kind = rng.randrange(9)
    if kind == 0:  # bit flips anywhere, header included
        data = bytearray(frame)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        return bytes(data)
    if kind == 1:  # truncation, header kept honest or not
        cut = frame[: rng.randrange(len(frame))]
        return _with_length(cut, len(cut)) if len(cut) >= 4 and rng.random() < 0.5 else cut
    if kind == 2:  # command_length lies
        lie = rng.choice(
            [
                0,
                1,
                15,
                16,
                len(frame) - 1,
                len(frame) + 1,
                MAX_PDU + 1,
                0xFFFFFFFF,
                rng.randrange(64),
            ]
        )
        return _with_length(frame, lie)
    if kind == 3:  # random TLVs appended, length fixed up or not
        data = frame + b"".join(_random_tlv(rng) for _ in range(rng.randint(1, 4)))
        return _with_length(data, len(data)) if rng.random() < 0.8 else data
    if kind == 4:  # body bytes overwritten with random octets, length kept
        data = bytearray(frame)
        if len(data) > 16:
            start = rng.randrange(16, len(data))
            end = min(len(data), start + rng.randint(1, 16))
            data[start:end] = rng.randbytes(end - start)
        return bytes(data)
    if kind == 5:  # NUL terminators removed: C-Octet Strings run on
        data = frame[:16] + frame[16:].replace(b"\0", b"A", rng.randint(1, 4))
        return data
    if kind == 6:  # two frames spliced, or one duplicated
        other = rng.choice(seeds)
        return frame[: rng.randrange(len(frame) + 1)] + other[rng.randrange(len(other)) :]
    if kind == 7:  # a header with a random command_id and status, honest or random body
        body = rng.randbytes(rng.randrange(64))
        header = struct.pack(">IIII", 16 + len(body), rng.getrandbits(32), rng.getrandbits(32), 0)
        return header + body
    return rng.randbytes(rng.randrange(1, 48))  # plain garbage


def feed_in_chunks(feed: Callable[[bytes], list[T]], data: bytes, rng: random.Random) -> list[T]:
    """Feed whole, or cut at one to three random points (a PDU split across reads)."""
    if rng.random() < 0.6:
        return feed(data)
    cuts = sorted(rng.randrange(len(data) + 1) for _ in range(rng.randint(1, 3)))
    out: list[T] = []
    start = 0
    for cut in [*cuts, len(data)]:
        out += feed(data[start:cut])
        start = cut
    return out


@dataclass(slots=True)
class FuzzReport:
    mutations: int
    decoded: int
    errors: int
    fatal_errors: int
    sessions: int
    replies: int
    peak_bytes: int
    seconds: float


def fuzz(count: int, seed: int = 0, trace_memory: bool = True) -> FuzzReport:
    """Run `count` mutations through a decoder and a server session; raise on any failure.

    With `trace_memory`, tracemalloc follows the whole run (about 2.5 times slower) and the
    peak is reported; without it the peak is 0 and only the structural bounds are checked.
    """
    rng = random.Random(seed)
    seeds = seed_pdus()
    config = SessionConfig(
        window=8, response_timeout=2.0, enquire_link_interval=5.0, max_pdu_length=MAX_PDU
    )
    now = 0.0
    decoder = PduDecoder(MAX_PDU)
    session = Session(Role.SERVER, config, now)
    reply_decoder = PduDecoder(MAX_PDU)
    decoded = errors = fatal = sessions = replies = 0
    if trace_memory:
        tracemalloc.start()
    started = time.perf_counter()
    try:
        for i in range(count):
            mutant = mutate(rng.choice(seeds), seeds, rng)
            # A mutant, sometimes between valid frames, so the stream has to resynchronise.
            if rng.random() < 0.3:
                mutant = rng.choice(seeds) + mutant + rng.choice(seeds)
            for item in feed_in_chunks(decoder.feed, mutant, rng):
                if isinstance(item, PduError):
                    errors += 1
                    fatal += item.fatal
                else:
                    assert isinstance(item, Pdu), item
                    decoded += 1
            assert decoder.buffered <= MAX_PDU
            if decoder.failed or rng.random() < 0.01:
                decoder = PduDecoder(MAX_PDU)

            now += rng.random() * 0.2
            for event in feed_in_chunks(partial(session.receive_data, now=now), mutant, rng):
                if isinstance(event, BindRequested) and rng.random() < 0.8:
                    session.accept_bind(system_id="fuzz")
            if (
                session.state in (SessionState.BOUND_RX, SessionState.BOUND_TRX)
                and session.window_free
                and rng.random() < 0.3
            ):
                session.send_request(DeliverSm(short_message=b"mo"), now)
            if rng.random() < 0.2:
                session.handle_timeout(now)
            out = session.data_to_send()
            if out:
                for item in reply_decoder.feed(out):
                    assert not isinstance(item, PduError), f"session wrote a bad PDU: {item}"
                    replies += 1
            assert reply_decoder.buffered == 0
            assert session.outstanding <= config.window + 2
            if session.state in (SessionState.CLOSED, SessionState.UNBOUND):
                session = Session(Role.SERVER, config, now)
                sessions += 1
            if i % 65536 == 0:
                assert len(session._deadlines) <= 2 * session.outstanding + 65
        peak = tracemalloc.get_traced_memory()[1] if trace_memory else 0
    finally:
        tracemalloc.stop()
    return FuzzReport(
        count, decoded, errors, fatal, sessions, replies, peak, time.perf_counter() - started
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-peak-mb", type=float, default=64.0)
    args = parser.parse_args()
    report = fuzz(args.count, args.seed)
    print(
        f"{report.mutations:,} mutations in {report.seconds:.1f}s: {report.decoded:,} PDUs decoded,"
        f" {report.errors:,} PduErrors ({report.fatal_errors:,} fatal), {report.sessions:,}"
        f" sessions closed and replaced, {report.replies:,} well-formed replies;"
        f" tracemalloc peak {report.peak_bytes / 1e6:.2f} MB"
    )
    assert report.peak_bytes < args.max_peak_mb * 1e6, "memory grew past the bound"


if __name__ == "__main__":
    main()
