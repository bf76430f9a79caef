"""Submits from bound customers into `gateway.intake`: submit_sm and data_sm (batched per loop
turn: one `accept`, one store write), submit_multi (one message per destination, answered with
the first id), the account's tps, and parts of a multipart submit held until their message is
whole (for accounts that reassemble) or answered with a failure when the rest never comes.

Must never: check a submit's content itself (`submits` does, pure) or decide policy (intake
does); each answer carries our message id only once the message is durable.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from gateway.intake import IntakeRefusal, MessageRequest
from gateway.smpp_server.binds import AccountRuntime
from gateway.smpp_server.settings import CustomerServerStats, Spawn, _Held, _Refused
from gateway.smpp_server.submits import _answer_held, _Content, _content_of
from smpp.aio import RequestResult
from smpp.constants import CommandStatus
from smpp.pdu import DistributionList, Pdu, SubmitMulti, UnsuccessSme
from smpp.reassembly import ConcatPart, ReassembledMessage
from smpp.session import response_to

if TYPE_CHECKING:
    from gateway.services import GatewayServices

log = logging.getLogger("tandem.smpp_server")


class SubmitIntake:
    """Turns a bound customer's submits into `MessageRequest`s and answers them."""

    def __init__(self, gateway: GatewayServices, stats: CustomerServerStats, spawn: Spawn) -> None:
        self.gateway = gateway
        self.stats = stats
        self._spawn = spawn
        self._batch = _IntakeBatch(self, spawn)

    def submit(
        self, runtime: AccountRuntime, pdu: Pdu, answer: Callable[[Pdu], None]
    ) -> RequestResult:
        """A submit_sm or data_sm. None: `answer` is called with the response once the
        message is stored (or refused)."""
        account = runtime.account
        try:
            destination = str(getattr(pdu, "destination_addr", ""))
            content = _content_of(
                account, pdu, destination, self.gateway.clock(), self.gateway.intake.senders
            )
        except _Refused as refusal:
            self.stats.submits_refused += 1
            return response_to(pdu, command_status=refusal.status)
        if runtime.bucket is not None and not runtime.bucket.take(
            content.segments, time.monotonic()
        ):
            self.stats.throttled += 1
            return response_to(pdu, command_status=CommandStatus.ESME_RTHROTTLED)
        part = content.part
        if (
            part is not None
            and account.config.multipart == "reassemble"
            and part.concat.total <= account.config.window
        ):
            return self._hold_part(runtime, pdu, content)
        self._batch.add(pdu, content.request(pdu, destination), answer)
        return None

    async def accept_one(self, pdu: Pdu, request: MessageRequest) -> Pdu:
        try:
            prepared = await self.gateway.intake.accept([request])
        except IntakeRefusal as refusal:
            self.stats.submits_refused += 1
            log.debug("%s: submit refused: %s", request.account, refusal)
            return response_to(pdu, command_status=refusal.smpp_status)
        self.stats.submits_accepted += 1
        return response_to(pdu, message_id=prepared[0].message.id)

    def _hold_part(self, runtime: AccountRuntime, pdu: Pdu, content: _Content) -> RequestResult:
        part = content.part
        assert part is not None
        key = (content.source, content.destination)
        group = (key, part.concat.reference, part.concat.total)
        seen = runtime.held_seqnums.setdefault(group, set())
        if part.concat.seqnum in seen:
            self.stats.submits_refused += 1
            return response_to(pdu, command_status=CommandStatus.ESME_RSUBMITFAIL)
        seen.add(part.concat.seqnum)
        future: asyncio.Future[Pdu] = asyncio.get_running_loop().create_future()
        held = ConcatPart(part.concat, part.payload, part.data_coding, _Held(pdu, future))
        whole = runtime.submit_parts.add(key, held, time.monotonic())
        if whole is not None:
            runtime.held_seqnums.pop(group, None)
            self._spawn(self._accept_reassembled(runtime, whole, content))
        return future

    async def _accept_reassembled(
        self, runtime: AccountRuntime, whole: ReassembledMessage, content: _Content
    ) -> None:
        held = [part.context for part in whole.parts]
        first = held[0]
        assert isinstance(first, _Held)
        request = content.request(first.pdu, content.destination, body=whole.payload, esm_class=0)
        request.data_coding = whole.data_coding
        try:
            prepared = await self.gateway.intake.accept([request])
        except IntakeRefusal as refusal:
            self.stats.submits_refused += len(held)
            _answer_held(held, status=refusal.smpp_status)
            return
        except Exception:
            log.exception("%s: storing a reassembled message failed", runtime.system_id)
            _answer_held(held, status=CommandStatus.ESME_RSYSERR)
            return
        self.stats.submits_accepted += len(held)
        _answer_held(held, message_id=prepared[0].message.id)

    def expire_parts(self, runtime: AccountRuntime, now: float) -> None:
        """Answer the held parts of multipart submits whose other parts never arrived."""
        for incomplete in runtime.submit_parts.expire(now):
            held = [part.context for part in incomplete.parts]
            key = incomplete.key
            runtime.held_seqnums.pop((key, incomplete.reference, incomplete.total), None)
            self.stats.submits_refused += len(held)
            log.info(
                "%s: parts %s of a %d-part submit never arrived",
                runtime.system_id,
                incomplete.missing,
                incomplete.total,
            )
            _answer_held(held, status=CommandStatus.ESME_RSUBMITFAIL)

    def submit_multi(self, runtime: AccountRuntime, pdu: SubmitMulti) -> RequestResult:
        account = runtime.account
        now = self.gateway.clock()
        requests: list[MessageRequest] = []
        unsuccess: list[UnsuccessSme] = []
        segments = 0  # tps counts every segment to every destination
        for address in pdu.dest_addresses:
            if isinstance(address, DistributionList):
                unsuccess.append(UnsuccessSme(0, 0, address.dl_name, CommandStatus.ESME_RINVDLNAME))
                continue
            try:
                content = _content_of(
                    account, pdu, address.destination_addr, now, self.gateway.intake.senders
                )
            except _Refused as refusal:
                unsuccess.append(
                    UnsuccessSme(
                        address.dest_addr_ton,
                        address.dest_addr_npi,
                        address.destination_addr,
                        refusal.status,
                    )
                )
                continue
            request = content.request(pdu, address.destination_addr)
            request.assume_international = address.dest_addr_ton == 1
            requests.append(request)
            segments += content.segments
        if (
            runtime.bucket is not None
            and segments
            and not runtime.bucket.take(segments, time.monotonic())
        ):
            self.stats.throttled += 1
            return response_to(pdu, command_status=CommandStatus.ESME_RTHROTTLED)
        return self._accept_multi(pdu, requests, unsuccess)

    async def _accept_multi(
        self, pdu: SubmitMulti, requests: list[MessageRequest], unsuccess: list[UnsuccessSme]
    ) -> Pdu:
        message_id = ""
        for request in requests:  # one message per destination; the first id is answered
            # The others carry it as their reference: their receipts report it, the one id
            # the customer knows (and their destinations tell them apart), as an SMSC's do.
            request.reference = message_id or None
            try:
                prepared = await self.gateway.intake.accept([request])
            except IntakeRefusal as refusal:
                unsuccess.append(UnsuccessSme(0, 0, request.to, refusal.smpp_status))
                continue
            self.stats.submits_accepted += 1
            message_id = message_id or prepared[0].message.id
        if not message_id:
            self.stats.submits_refused += 1
            status = (
                unsuccess[0].error_status_code if unsuccess else CommandStatus.ESME_RINVNUMDESTS
            )
            return pdu.response(command_status=status, unsuccess_sme=unsuccess)
        return pdu.response(message_id=message_id, unsuccess_sme=unsuccess)


class _IntakeBatch:
    """Submits read in one loop iteration go to intake together: one `accept`, one store write,
    and their answers are written together, each through its bind's `answer` (no future or
    callback per submit).

    Intake is all or nothing per call, so when a batch is refused the requests are accepted one
    by one and each gets its own answer (prepare is pure, running it twice changes nothing).
    """

    def __init__(self, intake: SubmitIntake, spawn: Spawn) -> None:
        self.intake = intake
        self._spawn = spawn
        self.pending: list[tuple[Pdu, MessageRequest, Callable[[Pdu], None]]] = []

    def add(self, pdu: Pdu, request: MessageRequest, answer: Callable[[Pdu], None]) -> None:
        if not self.pending:
            # The task's first step runs on the next turn, after the rest of this turn's
            # submits: it takes the batch then.
            self._spawn(self._accept())
        self.pending.append((pdu, request, answer))

    async def _accept(self) -> None:
        batch, self.pending = self.pending, []
        intake = self.intake
        stats = intake.stats
        try:
            prepared = await intake.gateway.intake.accept(
                [request for _, request, _ in batch], count_refused=len(batch) == 1
            )
        except IntakeRefusal as refusal:
            if len(batch) == 1:
                pdu, request, answer = batch[0]
                stats.submits_refused += 1
                log.debug("%s: submit refused: %s", request.account, refusal)
                answer(response_to(pdu, command_status=refusal.smpp_status))
                return
            answers = await asyncio.gather(
                *(intake.accept_one(pdu, request) for pdu, request, _ in batch),
                return_exceptions=True,
            )
            for (pdu, _, answer), response in zip(batch, answers, strict=True):
                if isinstance(response, BaseException):
                    response = response_to(pdu, command_status=CommandStatus.ESME_RSYSERR)
                answer(response)
            return
        except Exception:
            log.exception("storing %d submits failed", len(batch))
            for pdu, _, answer in batch:
                answer(response_to(pdu, command_status=CommandStatus.ESME_RSYSERR))
            return
        stats.submits_accepted += len(batch)
        for (pdu, _, answer), item in zip(batch, prepared, strict=True):
            answer(response_to(pdu, message_id=item.message.id))
