"""The ESME side of the SMPP-in benches: the submit_sm they send and the tally of its answers."""

from __future__ import annotations

import asyncio
import time

from smpp.constants import CommandStatus
from smpp.pdu import Pdu, SubmitSm


def bench_submit(n: int, text: bytes, *, registered_delivery: int) -> SubmitSm:
    """The `n`th single-part submit_sm of a run: from "Bench" (alphanumeric) to one of 100,000
    UK mobile numbers in turn."""
    return SubmitSm(
        source_addr_ton=5,
        source_addr="Bench",
        dest_addr_ton=1,
        dest_addr_npi=1,
        destination_addr=f"4479111{n % 100000:05d}",
        short_message=text,
        registered_delivery=registered_delivery,
    )


class SubmitAnswers:
    """The submit_sm_resp of a run, as a done callback of each submit's future: how many were
    accepted (and their message ids, when `keep_ids`), the refusals by command status (-1: no
    answer), and when the last answer came (time.perf_counter)."""

    def __init__(self, *, keep_ids: bool = False) -> None:
        self.accepted = 0
        self.ids: set[str] = set()
        self.refused: dict[int, int] = {}
        self.last_at = 0.0
        self._keep_ids = keep_ids

    @property
    def answered(self) -> int:
        return self.accepted + sum(self.refused.values())

    def __call__(self, future: asyncio.Future[Pdu]) -> None:
        self.last_at = time.perf_counter()
        if future.exception() is not None:
            self.refused[-1] = self.refused.get(-1, 0) + 1
            return
        response = future.result()
        status = response.command_status
        if status != CommandStatus.ESME_ROK:
            self.refused[status] = self.refused.get(status, 0) + 1
            return
        self.accepted += 1
        if self._keep_ids:
            self.ids.add(response.message_id)  # type: ignore[attr-defined]

    async def wait_for(self, count: int) -> None:
        """Until `count` submits are answered."""
        while self.answered < count:
            await asyncio.sleep(0.01)
