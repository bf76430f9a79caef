"""What the SMSC simulator (`gateway.simulator`) received and what it answers with, as data:
`ReceivedSubmit` (a submit_sm or data_sm as it saw it, with its `Concat` and its `--record`
line; `record_lines` reads such a file back), `ReceiptOutcome` (what a receipt reports), the test
hooks' types, and `build_receipt` (the appendix B deliver_sm for a received submit).

Must never: do I/O beyond `record_lines`' read, or know about sessions and timers (the
simulator does); tests and benches build receipts and records from here without a server.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlr.status import SegmentStatus, message_state, stat_word
from smpp.constants import ESM_CLASS_DELIVERY_RECEIPT, ESM_CLASS_UDHI, Tag
from smpp.pdu import DeliverSm
from smpp.text import decode_text

RECEIPT_TEXT_CHARS = 20  # appendix B: the first 20 characters of the original message


@dataclass(slots=True, frozen=True)
class Concat:
    """How a received part says it belongs to a multi-part message."""

    kind: str  # "udh8", "udh16" or "sar"
    reference: int
    total: int
    index: int  # 1-based


@dataclass(slots=True)
class ReceivedSubmit:
    """One submit_sm or data_sm as the simulator saw it, and what it answered."""

    at: float  # wall-clock seconds
    system_id: str
    operation: str  # "submit_sm" or "data_sm"
    source_addr: str
    destination_addr: str
    data_coding: int
    esm_class: int
    registered_delivery: int
    payload: bytes  # short_message (or message_payload), UDH included
    tlvs: dict[int, object]
    status: int = 0  # the command_status answered
    message_id: str = ""  # empty when refused
    concat: Concat | None = None

    @property
    def user_data(self) -> bytes:
        """The payload without its UDH."""
        if self.esm_class & ESM_CLASS_UDHI and self.payload:
            return self.payload[1 + self.payload[0] :]
        return self.payload

    @property
    def text(self) -> str:
        return decode_text(self.user_data, self.data_coding)

    def record_line(self) -> str:
        """One JSON object per line, for `--record FILE` (crash tests count these)."""
        concat = self.concat
        return json.dumps(
            {
                "at": round(self.at, 6),
                "system_id": self.system_id,
                "op": self.operation,
                "source": self.source_addr,
                "destination": self.destination_addr,
                "data_coding": self.data_coding,
                "esm_class": self.esm_class,
                "status": self.status,
                "message_id": self.message_id,
                "payload_hex": self.payload.hex(),
                "text": self.text,
                "concat": None
                if concat is None
                else {
                    "kind": concat.kind,
                    "reference": concat.reference,
                    "total": concat.total,
                    "index": concat.index,
                },
            },
            ensure_ascii=False,
        )


@dataclass(slots=True, frozen=True)
class ReceiptOutcome:
    """What a receipt reports: a final (or intermediate) status and the `err:` code."""

    status: SegmentStatus
    error: int = 0


DELIVERED = ReceiptOutcome(SegmentStatus.DELIVERED)
UNDELIVERABLE = ReceiptOutcome(SegmentStatus.UNDELIVERABLE, error=1)

# Hooks for tests: decide a submit's command_status (0 accepts), or a receipt's outcome.
SubmitPolicy = Callable[[ReceivedSubmit], int]
OutcomePolicy = Callable[[ReceivedSubmit], ReceiptOutcome]
# Hook for tests: write id `number` for "submit_sm_resp" or "receipt" (carriers' quirks: leading
# zeros, lower case, opaque strings); None writes it as the settings' id formats say.
IdText = Callable[[int, str], str]


def build_receipt(received: ReceivedSubmit, receipt_id: str, outcome: ReceiptOutcome) -> DeliverSm:
    """The deliver_sm an SMSC sends for `received`: appendix B text plus the standard TLVs."""
    stamp = _receipt_date(received.at)
    done = _receipt_date(time.time())
    delivered = 1 if outcome.status is SegmentStatus.DELIVERED else 0
    excerpt = received.text[:RECEIPT_TEXT_CHARS]
    text = (
        f"id:{receipt_id} sub:001 dlvrd:{delivered:03d} submit date:{stamp} done date:{done} "
        f"stat:{stat_word(outcome.status)} err:{outcome.error:03d} text:{excerpt}"
    )
    return DeliverSm(
        source_addr_ton=1,
        source_addr_npi=1,
        source_addr=received.destination_addr,
        dest_addr_ton=0,
        dest_addr_npi=0,
        destination_addr=received.source_addr,
        esm_class=ESM_CLASS_DELIVERY_RECEIPT,
        short_message=text.encode("latin-1", "replace"),
        tlvs={
            Tag.RECEIPTED_MESSAGE_ID: receipt_id,
            Tag.MESSAGE_STATE: message_state(outcome.status),
        },
    )


@functools.lru_cache(maxsize=4)
def _receipt_minute(minute: int) -> str:
    return time.strftime("%y%m%d%H%M", time.localtime(minute * 60))


def _receipt_date(wall_clock: float) -> str:
    """Appendix B dates (YYMMDDhhmm, local time), computed once per minute."""
    return _receipt_minute(int(wall_clock // 60))


def concat_of(esm_class: int, payload: bytes, tlvs: dict[int, object]) -> Concat | None:
    total = tlvs.get(Tag.SAR_TOTAL_SEGMENTS)
    if isinstance(total, int):
        reference = tlvs.get(Tag.SAR_MSG_REF_NUM)
        index = tlvs.get(Tag.SAR_SEGMENT_SEQNUM)
        if isinstance(reference, int) and isinstance(index, int):
            return Concat("sar", reference, total, index)
    if not esm_class & ESM_CLASS_UDHI or not payload:
        return None
    header = payload[1 : 1 + payload[0]]
    position = 0
    while position + 2 <= len(header):
        iei, length = header[position], header[position + 1]
        data = header[position + 2 : position + 2 + length]
        if iei == 0x00 and length == 3 and len(data) == 3:
            return Concat("udh8", data[0], data[1], data[2])
        if iei == 0x08 and length == 4 and len(data) == 4:
            return Concat("udh16", data[0] << 8 | data[1], data[2], data[3])
        position += 2 + length
    return None


def record_lines(path: Path) -> list[dict[str, Any]]:
    """Read a `--record` file back: one dict per received submit."""
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]
