"""What the daemon's built-in SMSC simulator received and the receipts it still owes, kept in a
file under the data directory, so the sandbox keeps the promise a real SMSC keeps: a restart (or
kill -9) of the daemon loses no receipt, and what was sent can be read back.

Owns `SimulatorJournal` (the file `<data_dir>/simulator.jsonl`: one JSON line per submit the
simulator accepted, with the receipt it owes as the deliver_sm's bytes, and one line per receipt
the client answered; read back and compacted when the simulator starts) and `read_inbox` (what
`tandem sim inbox` lists: the sandbox's only way to see a one-time code it sent).

A line is written with one unbuffered write before the submit is answered, so a killed process
keeps it (the kernel has it); a power cut may not, which a sandbox can afford. The file holds
message texts, OTP codes among them, so it is created mode 0600; only the simulator writes it,
and only when it runs inside the daemon (`[simulator] enabled`).

Never does: decide what to answer or when a receipt is due; `gateway.simulator` does.
"""

from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smpp.codec import decode, encode
from smpp.pdu import DeliverSm

JOURNAL_NAME = "simulator.jsonl"
INBOX_KEPT = 1000  # submits kept for `tandem sim inbox` when the file is compacted
# Lines appended since the last compaction beyond which the file is rewritten (owed + inbox),
# or twice the lines the last compaction kept, if more: rewriting stays a small share of writing.
COMPACT_AFTER = 20_000


@dataclass(slots=True, frozen=True)
class InboxEntry:
    """One submit the simulator accepted, as `tandem sim inbox` shows it."""

    at: float
    system_id: str
    message_id: str
    source: str
    destination: str
    text: str

    @classmethod
    def from_line(cls, line: dict[str, Any]) -> InboxEntry:
        return cls(
            line["at"],
            line["system_id"],
            line["message_id"],
            line["source"],
            line["destination"],
            line["text"],
        )


@dataclass(slots=True, frozen=True)
class OwedReceipt:
    """A receipt the simulator issued and its client has not answered yet."""

    system_id: str
    receipt_id: str
    pdu: DeliverSm


class SimulatorJournal:
    """The simulator's append-only file. `open()` reads what an earlier run left (the receipts
    still owed, for the simulator to queue again) and compacts the file; then `accepted` and
    `settled` append to it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._owed: dict[str, dict[str, Any]] = {}  # receipt id -> its submit line
        self._inbox: deque[dict[str, Any]] = deque(maxlen=INBOX_KEPT)
        self._appended = 0
        self._compact_at = COMPACT_AFTER

    def open(self) -> list[OwedReceipt]:
        """Read the file (if any), rewrite it with what still matters, open it for appending;
        the receipts owed, oldest first."""
        for line in _read_lines(self.path):
            if line.get("t") == "submit":
                self._inbox.append(line)
                receipt = line.get("receipt")
                if receipt is not None:
                    self._owed[receipt["id"]] = line
            elif line.get("t") == "settled":
                self._owed.pop(line.get("id", ""), None)
        self._compact()
        return [
            OwedReceipt(line["system_id"], receipt_id, _receipt_pdu(line))
            for receipt_id, line in self._owed.items()
        ]

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def accepted(
        self,
        *,
        at: float,
        system_id: str,
        message_id: str,
        source: str,
        destination: str,
        text: str,
        receipt_id: str | None,
        receipt: DeliverSm | None,
    ) -> None:
        """A submit the simulator accepted, and the receipt it owes for it (if any)."""
        line: dict[str, Any] = {
            "t": "submit",
            "at": round(at, 3),
            "system_id": system_id,
            "message_id": message_id,
            "source": source,
            "destination": destination,
            "text": text,
            "receipt": None
            if receipt is None or receipt_id is None
            else {"id": receipt_id, "pdu": encode(receipt).hex()},
        }
        self._append(line)
        self._inbox.append(line)
        if receipt is not None and receipt_id is not None:
            self._owed[receipt_id] = line

    def settled(self, receipt_id: str) -> None:
        """The client answered the receipt `receipt_id`: it is owed no more."""
        if self._owed.pop(receipt_id, None) is not None:
            self._append({"t": "settled", "id": receipt_id})

    @property
    def owed(self) -> int:
        return len(self._owed)

    def _append(self, line: dict[str, Any]) -> None:
        if self._fd is None:
            return  # not open (or closed at stop): nothing is kept
        os.write(self._fd, (json.dumps(line, ensure_ascii=False) + "\n").encode())
        self._appended += 1
        if self._appended >= self._compact_at:
            self._compact()

    def _compact(self) -> None:
        """Rewrite the file with the submits still owed a receipt and the last INBOX_KEPT (their
        receipt left out when it was settled: its `settled` line is not kept)."""
        self.close()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = {id(line): line for line in self._owed.values()}
        owed_lines = set(kept)
        for line in self._inbox:
            if id(line) not in owed_lines and line.get("receipt") is not None:
                line = {**line, "receipt": None}
            kept.setdefault(id(line), line)
        ordered = sorted(kept.values(), key=lambda line: float(line["at"]))
        temporary = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"".join(_encoded(line) for line in ordered))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, self.path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND, 0o600)
        self._appended = 0
        self._compact_at = max(COMPACT_AFTER, 2 * len(ordered))


def _encoded(line: dict[str, Any]) -> bytes:
    return (json.dumps(line, ensure_ascii=False) + "\n").encode()


def _receipt_pdu(line: dict[str, Any]) -> DeliverSm:
    pdu = decode(bytes.fromhex(line["receipt"]["pdu"]))
    assert isinstance(pdu, DeliverSm)
    return pdu


def _read_lines(path: Path) -> Iterable[dict[str, Any]]:
    """The file's lines as dicts; a line cut short by a killed process is skipped."""
    try:
        handle = open(path, encoding="utf-8")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return
    with handle:
        for text in handle:
            try:
                line = json.loads(text)
            except json.JSONDecodeError:
                continue
            if isinstance(line, dict):
                yield line


def read_inbox(path: Path, limit: int | None = None) -> list[InboxEntry]:
    """The submits the simulator accepted, oldest first (the last `limit` when given)."""
    lines = _read_lines(path)
    entries = [InboxEntry.from_line(line) for line in lines if line.get("t") == "submit"]
    return entries if limit is None else entries[-limit:]
