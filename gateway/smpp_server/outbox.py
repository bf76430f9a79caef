"""Receipts and MOs to customers: each account's outbox of deliver_sm, handed to its receiving
binds round robin, retried on a temporary refusal, dropped on a permanent one or at expiry, and
bounded (an MO the carrier was answered for keeps its reserved place; a receipt beyond the bound
waits in the store and is refilled when the outbox is down to half).

The outbox in memory is backed by the store (`CustomerDeliveryStore`): what a customer has not
taken yet is offered again after a restart, and a delivery over (taken, refused for good,
expired) is settled there in batches. A store without that support keeps it in memory only.

Several nodes on one PostgreSQL (docs/scale-out.md): a customer's binds may be on any node, a
receipt is made where its carrier receipt arrived and an MO is kept where its carrier's
deliver_sm arrived. Both are customer deliveries owed in the store (a receipt's mark, an MO's
`mo_outbox` row) and go the same way: a node queues one only for an account it has a receiving
bind of, and only once it holds the delivery's claim in the store (`DeliveryClaims`), so two
nodes with binds of one account do not both deliver it; the others leave it owed, and each node
with a receiving bind looks for the account's owed deliveries every second.

Must never: read requests from customers (`submit_intake` does) or build a receipt's text
itself (`receipts` does).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Protocol

from dlr.customer_receipt import wants_receipt
from dlr.status import MessageStatus, StatusSource, is_intermediate
from gateway.accounts import AccountBook
from gateway.batching import TurnBatch
from gateway.inbound.model import InboundMessage
from gateway.inbound.smpp_pdus import deliver_sm_for_message, deliver_sm_for_part
from gateway.logs import message_fields
from gateway.messages import Channel, Message
from gateway.smpp_server.binds import AccountRuntime, CustomerBind
from gateway.smpp_server.receipts import _customer_receipt
from gateway.smpp_server.settings import (
    TEMPORARY_DELIVERY_ERRORS,
    CustomerServerStats,
    ServerSettings,
    Spawn,
    _Delivery,
)
from gateway.store.base import CustomerDeliveryStore, StatusChange, StoreError
from gateway.store.postgres import PostgresMessageStore
from smpp.aio import SmppConnectionClosed
from smpp.codec import PduError, decode, encode
from smpp.constants import CommandStatus
from smpp.pdu import DeliverSm, Pdu
from smpp.session import SessionError

if TYPE_CHECKING:
    from gateway.services import GatewayServices

log = logging.getLogger("tandem.smpp_server")


# What a claim names: a receipt's (message id, status), an MO's (its id in the store, "mo").
DeliveryKey = tuple[str, str]
MO_KIND = "mo"


class DeliveryClaims(Protocol):
    """Which node delivers an owed receipt or MO (`gateway.store.postgres`)."""

    async def claim_deliveries(
        self, keys: Sequence[DeliveryKey], *, stale_after: float = 30.0
    ) -> set[DeliveryKey]: ...

    async def forget_delivery_claims(self, *, older_than: float = 600.0) -> int: ...


def mo_key(mo_id: int) -> DeliveryKey:
    return (str(mo_id), MO_KIND)


def delivery_key(item: _Delivery) -> DeliveryKey | None:
    """The claim's name of what the store keeps of a delivery (None: nothing kept)."""
    if item.receipt is not None:
        return item.receipt
    return mo_key(item.mo_id) if item.mo_id is not None else None


# A delivery to claim before it is queued, and the account it is for.
_Claim = tuple[AccountRuntime, _Delivery]


def _consume(waiter: asyncio.Future[None]) -> None:
    """Nobody awaits a claim's outcome (failures are logged by the batch): read it."""
    if not waiter.cancelled():
        waiter.exception()


class SettleWatchers:
    """Of each claim or refill in flight, the deliveries settled since it began: what it read
    as owed (or claimed) may be over by the time the store answers."""

    def __init__(self) -> None:
        self._open: list[set[DeliveryKey]] = []

    def settled(self, key: DeliveryKey) -> None:
        for watcher in self._open:
            watcher.add(key)

    @contextlib.contextmanager
    def watch(self) -> Iterator[set[DeliveryKey]]:
        settled: set[DeliveryKey] = set()
        self._open.append(settled)
        try:
            yield settled
        finally:
            # By identity, not equality: two blocks open at once often hold equal sets (both
            # empty), and removing the other's would leave it blind to what settles next.
            self._open = [watcher for watcher in self._open if watcher is not settled]


class CustomerOutbox:
    """Every account's deliveries: a status listener (receipts for SMPP customers who asked for
    one) and the inbound path's `MoAccounts` (MOs for numbers an account owns)."""

    def __init__(
        self,
        gateway: GatewayServices,
        *,
        accounts: AccountBook,
        settings: ServerSettings,
        stats: CustomerServerStats,
        runtime_of: Callable[[str], AccountRuntime | None],
        spawn: Spawn,
    ) -> None:
        self.gateway = gateway
        self.accounts = accounts
        self.settings = settings
        self.stats = stats
        self._runtime_of = runtime_of
        self._spawn = spawn
        message_store = gateway.message_store
        self.store = message_store if isinstance(message_store, CustomerDeliveryStore) else None
        # A cluster: deliveries are claimed before they are queued (see the module docstring).
        self.claims: DeliveryClaims | None = (
            message_store if isinstance(message_store, PostgresMessageStore) else None
        )
        self._receipts_settled: TurnBatch[tuple[str, MessageStatus]] = TurnBatch(
            self._settle_receipts, spawn
        )
        self._mos_settled: TurnBatch[int] = TurnBatch(self._settle_mos, spawn)
        # A cluster: one turn's deliveries claimed with one statement.
        self._to_claim: TurnBatch[_Claim] = TurnBatch(self._claim_and_enqueue, spawn)
        # Deliveries being claimed for the outbox: a refill meanwhile must not queue them too.
        self._claiming: set[DeliveryKey] = set()
        # Deliveries settled in memory whose settling the store has not committed yet: a refill
        # reading the store meanwhile must not take them for owed.
        self._settling: set[DeliveryKey] = set()
        self._settle_watchers = SettleWatchers()

    # -- receipts (a status listener) ----------------------------------------------------------

    def message_status_changed(self, message: Message, change: StatusChange) -> None:
        """Status listener: a receipt for SMPP customers who asked for one."""
        if message.channel != Channel.SMPP:
            return
        status = message.status
        intermediate = is_intermediate(status)
        if not wants_receipt(message.registered_delivery, status, intermediate):
            return
        runtime = self._runtime_of(message.account)
        if runtime is None:
            return
        segment = change.segment
        error: int | str = 0
        if segment is not None and segment.error:
            error = segment.error
        elif message.last_error:
            error = message.last_error
        total = segment.total if segment is not None else 1
        pdu = _customer_receipt(message, status, error, total)
        if self.claims is not None:
            item = self._delivery(runtime, pdu, "receipt", receipt=(message.id, status))
            self._claim(runtime, item)
            return
        self.stats.receipts_queued += 1
        self._enqueue(runtime, pdu, "receipt", receipt=(message.id, status))

    # -- a cluster: claims ---------------------------------------------------------------------

    def _claim(self, runtime: AccountRuntime, item: _Delivery) -> None:
        """Queue a delivery the store keeps once this node holds its claim; without a receiving
        bind here it stays owed for a node the customer is bound to."""
        key = delivery_key(item)
        assert key is not None
        if not runtime.receives():
            return
        self._claiming.add(key)
        self._to_claim.add((runtime, item)).add_done_callback(_consume)

    async def _claim_and_enqueue(self, batch: list[_Claim]) -> None:
        assert self.claims is not None
        keys = [key for _, item in batch if (key := delivery_key(item)) is not None]
        with self._watching_settles() as settled:
            try:
                claimed = await self.claims.claim_deliveries(keys)
            except StoreError as exc:  # they stay owed: a refill offers them again
                log.warning("claiming %d customer deliveries failed: %s", len(batch), exc)
                for runtime, _ in batch:
                    runtime.owed_in_store = True
                return
            finally:
                self._claiming.difference_update(keys)
        for runtime, item in batch:
            key = delivery_key(item)
            # A refill may have queued it (or even delivered it) meanwhile.
            over = key in settled or key in self._settling
            if key not in claimed or self._held(runtime, key) or over:
                continue
            if item.receipt is not None:
                self.stats.receipts_queued += 1
            self._queue(runtime, item, reserved=item.mo_id is not None)

    @staticmethod
    def _held(runtime: AccountRuntime, key: DeliveryKey | None) -> bool:
        """Whether the account's outbox here has the delivery queued or in flight."""
        if key is None:
            return False
        if key[1] == MO_KIND:
            return int(key[0]) in runtime.mos_held
        return key in runtime.receipts_held

    # --- MOs (gateway.inbound.handler.MoAccounts) -------------------------------------------

    def owner_of(self, number: str) -> str | None:
        account = self.accounts.owner_of(number)
        return account.system_id if account is not None else None

    def has_room(self, account: str) -> bool:
        runtime = self._runtime_of(account)
        if runtime is None:
            return True  # not running: nothing to fill (the handler counts it)
        full = len(runtime.outbox) + runtime.reserved >= runtime.account.config.delivery_queue_max
        if full:
            self.stats.mo_refused_full += 1
        return not full

    def deliver_mo(self, account: str, message: InboundMessage) -> Awaitable[None] | None:
        """Queue an MO (reassembled by the gateway) for the account's binds: as one deliver_sm
        for an account that reassembles, else as the parts it came in. Done once kept in the
        store's MO outbox, so the carrier is answered after that."""
        runtime = self._runtime_of(account)
        if runtime is None:
            return None
        self.stats.mo_queued += 1
        if runtime.account.config.multipart == "reassemble" or len(message.parts) == 1:
            pdus = [deliver_sm_for_message(message)]
        else:
            pdus = [deliver_sm_for_part(part) for part in message.parts]
        runtime.reserved += len(pdus)  # their places in the outbox, so nothing fills them
        return self._spawn(self._keep_mos(runtime, pdus))

    async def _keep_mos(self, runtime: AccountRuntime, pdus: list[DeliverSm]) -> None:
        """Store the MOs, then queue them for a bind in the places `deliver_mo` reserved."""
        ttl = runtime.account.config.delivery_ttl
        ids: list[int | None] = [None] * len(pdus)
        try:
            if self.store is not None:
                now = time.time()
                kept = [
                    self.store.queue_mo(
                        runtime.system_id, encode(pdu), received_at=now, expires_at=now + ttl
                    )
                    for pdu in pdus
                ]
                ids = list(await asyncio.gather(*kept))
        finally:
            runtime.reserved -= len(pdus)
        for pdu, mo_id in zip(pdus, ids, strict=True):
            if self.claims is not None and mo_id is not None:
                self._claim(runtime, self._delivery(runtime, pdu, "mo", mo_id=mo_id))
            else:
                self._enqueue(runtime, pdu, "mo", mo_id=mo_id, reserved=True)

    # -- the outbox ----------------------------------------------------------------------------

    @staticmethod
    def _delivery(
        runtime: AccountRuntime,
        pdu: DeliverSm,
        kind: str,
        *,
        expires_at: float | None = None,
        receipt: tuple[str, MessageStatus] | None = None,
        mo_id: int | None = None,
    ) -> _Delivery:
        if expires_at is None:
            expires_at = time.monotonic() + runtime.account.config.delivery_ttl
        return _Delivery(pdu, kind, expires_at, receipt=receipt, mo_id=mo_id)

    def _enqueue(
        self,
        runtime: AccountRuntime,
        pdu: DeliverSm,
        kind: str,
        *,
        expires_at: float | None = None,
        receipt: tuple[str, MessageStatus] | None = None,
        mo_id: int | None = None,
        reserved: bool = False,
    ) -> None:
        item = self._delivery(
            runtime, pdu, kind, expires_at=expires_at, receipt=receipt, mo_id=mo_id
        )
        self._queue(runtime, item, reserved=reserved)

    def _queue(self, runtime: AccountRuntime, item: _Delivery, *, reserved: bool) -> None:
        """Queue a deliver_sm for the account's binds. Beyond the outbox's bound a receipt is
        left to wait in the store (refilled later); anything else is dropped and counted, unless
        its place was `reserved` (an MO the carrier was answered for)."""
        config = runtime.account.config
        receipt, kind = item.receipt, item.kind
        full = len(runtime.outbox) + runtime.reserved >= config.delivery_queue_max
        if full and receipt is not None and self.store is not None:
            # Owed in the store already: it waits there until the outbox has room again.
            runtime.owed_in_store = True
            self.stats.receipts_deferred += 1
            return
        if receipt is not None:
            runtime.receipts_held[receipt] += 1
        elif item.mo_id is not None:
            runtime.mos_held.add(item.mo_id)
        if full and not reserved:
            self.stats.delivery_dropped_full += 1
            if self.stats.delivery_dropped_full % 1000 == 1:
                log.warning(
                    "%s: delivery queue full (%d); dropping %s",
                    runtime.system_id,
                    len(runtime.outbox),
                    kind,
                )
            self._settle(runtime, item, "not sent: the delivery queue was full")
            return
        runtime.outbox.append(item)
        self.pump(runtime)

    def pump(self, runtime: AccountRuntime) -> None:
        """Hand queued deliveries to receiving binds while they have room; when receipts wait
        in the store and the outbox is down to half, fetch the next of them."""
        outbox = runtime.outbox
        if (
            runtime.owed_in_store
            and not runtime.refilling
            and len(outbox) <= runtime.account.config.delivery_queue_max // 2
            and any(bind.can_deliver() for bind in runtime.binds)
        ):
            runtime.refilling = True  # one refill at a time; it clears this when done
            self._spawn(self._refill_and_pump(runtime))
        if not outbox:
            return
        now = time.monotonic()
        while outbox:
            item = outbox[0]
            if item.expires_at <= now:
                outbox.popleft()
                self.stats.delivery_expired += 1
                self._settle(runtime, item, "not sent: no receiving bind took it before it expired")
                continue
            if item.not_before > now:
                return
            bind = runtime.receiving_bind()
            if bind is None:
                return
            connection = bind.connection
            assert connection is not None
            try:
                future = connection.send_request_nowait(item.pdu)
            except (SessionError, SmppConnectionClosed):
                return  # that bind is going away; the next pump finds another
            outbox.popleft()
            bind.delivering += 1
            future.add_done_callback(functools.partial(self._delivered, runtime, bind, item))

    def _delivered(
        self,
        runtime: AccountRuntime,
        bind: CustomerBind,
        item: _Delivery,
        future: asyncio.Future[Pdu],
    ) -> None:
        bind.delivering -= 1
        status: int | None
        if future.cancelled() or future.exception() is not None:
            status = None  # no answer (timeout, connection gone): try again
        else:
            status = future.result().command_status
        if status == CommandStatus.ESME_ROK:
            self.stats.delivered += 1
            self._settle(runtime, item)
        elif status is None or status in TEMPORARY_DELIVERY_ERRORS:
            item.attempts += 1
            delay = min(
                self.settings.delivery_retry_max,
                self.settings.delivery_retry_initial * 2 ** (item.attempts - 1),
            )
            item.not_before = time.monotonic() + (0.0 if status is None else delay)
            self.stats.delivery_retries += 1
            runtime.outbox.appendleft(item)
        else:
            self.stats.delivery_failed += 1
            self._settle(runtime, item, f"refused by the customer with 0x{status:08X}")
            log.warning(
                "%s refused a %s deliver_sm with 0x%08X; dropped (to %s from %s)",
                runtime.system_id,
                item.kind,
                status,
                item.pdu.destination_addr,
                item.pdu.source_addr,
            )
        self.pump(runtime)

    # -- what the store keeps of it ------------------------------------------------------------

    def _settle(self, runtime: AccountRuntime, item: _Delivery, failure: str | None = None) -> None:
        """The delivery is over (taken, refused for good, expired, dropped): the store may
        forget it. A receipt that did not reach the customer says so in its message's history."""
        if item.receipt is not None:
            held = runtime.receipts_held
            held[item.receipt] -= 1
            if held[item.receipt] <= 0:  # the last one out settles the mark
                del held[item.receipt]
                self._settling_now(item.receipt)
                self._receipts_settled.add(item.receipt)
            if failure is not None:
                self._spawn(self._record_receipt_failure(*item.receipt, failure))
        elif item.mo_id is not None:
            runtime.mos_held.discard(item.mo_id)
            if self.claims is not None:
                self._settling_now(mo_key(item.mo_id))
            self._mos_settled.add(item.mo_id)

    def _settling_now(self, key: DeliveryKey) -> None:
        self._settling.add(key)
        self._settle_watchers.settled(key)

    def _watching_settles(self) -> contextlib.AbstractContextManager[set[DeliveryKey]]:
        """The deliveries settled while the block runs (see `_settle_watchers`)."""
        return self._settle_watchers.watch()

    async def _record_receipt_failure(
        self, message_id: str, status: MessageStatus, failure: str
    ) -> None:
        try:
            await self.gateway.message_store.record_history(
                message_id,
                status=status,
                source=StatusSource.SMPP_RECEIPT,
                at=time.time(),
                detail=f"receipt {failure}",
            )
        except StoreError as exc:
            log.warning(
                "recording the receipt failure of %s failed: %s",
                message_id,
                exc,
                extra=message_fields(message_id),
            )

    async def _settle_receipts(self, settled: list[tuple[str, MessageStatus]]) -> None:
        try:
            if self.store is not None:
                await self.store.receipts_settled(settled)
        except StoreError as exc:  # they stay owed: offered again after a restart
            log.warning("recording %d receipts as delivered failed: %s", len(settled), exc)
        finally:
            self._settling.difference_update(settled)

    async def _settle_mos(self, ids: list[int]) -> None:
        if self.store is None:
            return
        try:
            await self.store.mos_settled(ids)
        except StoreError as exc:
            log.warning("recording %d MOs as delivered failed: %s", len(ids), exc)
        finally:
            self._settling.difference_update(mo_key(mo_id) for mo_id in ids)

    async def restore(self) -> None:
        """Queue what customers were owed when the daemon last stopped (or died). A cluster
        queues nothing yet: each owed delivery goes to a node with a receiving bind of its
        account once that node claims it (`_refill`, every second)."""
        store = self.store
        if store is None:
            return
        wall, loop_now = time.time(), time.monotonic()
        expired = await self.forget_expired()
        restored = 0
        for account in list(self.accounts):
            runtime = self._runtime_of(account.system_id)
            if runtime is not None:
                runtime.owed_in_store = True
                if self.claims is None:
                    restored += await self._refill(runtime)
        gone_mos: list[int] = []
        for mo in await store.queued_mos():
            runtime = self._runtime_of(mo.account)
            pdu = _decoded(mo.pdu)
            if runtime is None or mo.expires_at <= wall or pdu is None:
                gone_mos.append(mo.id)
            elif self.claims is None:
                # A part held for reassembly goes as the part it is (as when reassembly times
                # out).
                expires_at = loop_now + (mo.expires_at - wall)
                self._enqueue(runtime, pdu, "mo", expires_at=expires_at, mo_id=mo.id)
                restored += 1
        if gone_mos:
            await store.mos_settled(gone_mos)
        if restored or expired or gone_mos:
            log.info(
                "customer outboxes: %d receipts and MOs restored, %d expired or for removed "
                "accounts",
                restored,
                expired + len(gone_mos),
            )

    async def forget_expired(self) -> int:
        """Clear the marks of receipts owed past their account's delivery_ttl (and, past the
        longest ttl, of accounts since removed); returns how many."""
        store = self.store
        if store is None:
            return 0
        wall = time.time()
        accounts = list(self.accounts)
        longest_ttl = max((a.config.delivery_ttl for a in accounts), default=0.0)
        try:
            forgotten = await store.forget_owed_receipts(
                before=wall - longest_ttl, channel=Channel.SMPP
            )
            for account in accounts:
                forgotten += await store.forget_owed_receipts(
                    before=wall - account.config.delivery_ttl,
                    channel=Channel.SMPP,
                    account=account.system_id,
                )
            if self.claims is not None:
                await self.claims.forget_delivery_claims()
        except StoreError as exc:
            log.warning("clearing expired receipts failed: %s", exc)
            return 0
        return forgotten

    async def _refill_and_pump(self, runtime: AccountRuntime) -> None:
        if await self._refill(runtime):
            self.pump(runtime)

    async def _refill(self, runtime: AccountRuntime) -> int:
        """Take deliveries that wait in the store into the account's outbox while it has room
        (receipts; on a cluster MOs too, kept by other nodes); returns how many it took."""
        store = self.store
        taken = 0
        if store is None:
            runtime.refilling = False
            return 0
        runtime.refilling = True
        try:
            with self._watching_settles() as settled:
                taken = await self._refill_receipts(runtime, store, settled)
            if self.claims is not None:
                with self._watching_settles() as settled:
                    taken += await self._refill_mos(runtime, store, settled)
        except StoreError as exc:
            log.warning("%s: reading deliveries owed failed: %s", runtime.system_id, exc)
        finally:
            runtime.refilling = False
        return taken

    def _room(self, runtime: AccountRuntime) -> int:
        config = runtime.account.config
        return config.delivery_queue_max - len(runtime.outbox) - runtime.reserved

    async def _refill_receipts(
        self, runtime: AccountRuntime, store: CustomerDeliveryStore, settled: set[DeliveryKey]
    ) -> int:
        taken = 0
        config = runtime.account.config
        room = self._room(runtime)
        if room <= 0:
            return 0
        # Taken before the read: what is settled while it runs may still be in its answer.
        skip = set(runtime.receipts_held) | self._settling | self._claiming
        limit = room + len(skip)
        wall, loop_now = time.time(), time.monotonic()
        owed = await store.owed_receipts(
            channel=Channel.SMPP,
            since=wall - config.delivery_ttl,
            account=runtime.system_id,
            limit=limit,
        )
        runtime.owed_in_store = len(owed) == limit  # a full answer: there may be more
        if self.claims is not None:  # only those this node is to deliver
            candidates: list[DeliveryKey] = [
                (r.message.id, r.status) for r in owed if (r.message.id, r.status) not in skip
            ]
            mine = await self.claims.claim_deliveries(candidates)
            owed = [r for r in owed if (r.message.id, r.status) in mine]
        for receipt in owed:
            message = receipt.message
            key = (message.id, receipt.status)
            if key in skip or key in runtime.receipts_held or key in settled:
                continue
            if self._room(runtime) <= 0:
                runtime.owed_in_store = True
                break
            self._enqueue(
                runtime,
                _customer_receipt(message, receipt.status, message.last_error or 0,
                                  receipt.segments),
                "receipt",
                expires_at=loop_now + (message.updated_at + config.delivery_ttl - wall),
                receipt=key,
            )  # fmt: skip
            taken += 1
        self.stats.receipts_refilled += taken
        return taken

    async def _refill_mos(
        self, runtime: AccountRuntime, store: CustomerDeliveryStore, settled: set[DeliveryKey]
    ) -> int:
        """A cluster: the account's MOs that other nodes kept (their carrier binds received
        them) and left owed, claimed for this node's binds."""
        assert self.claims is not None
        room = self._room(runtime)
        if room <= 0:
            return 0
        skip = {mo_key(mo_id) for mo_id in runtime.mos_held} | self._settling | self._claiming
        limit = room + len(skip)
        wall, loop_now = time.time(), time.monotonic()
        owed = await store.queued_mos(account=runtime.system_id, limit=limit)
        if len(owed) == limit:  # a full answer: there may be more
            runtime.owed_in_store = True
        pdus = {mo.id: _decoded(mo.pdu) for mo in owed}
        gone = [mo.id for mo in owed if mo.expires_at <= wall or pdus[mo.id] is None]
        if gone:  # expired before any bind took them (or not a deliver_sm at all)
            await store.mos_settled(gone)
            self.stats.delivery_expired += len(gone)
        candidates = [
            mo_key(mo.id) for mo in owed if mo.id not in gone and mo_key(mo.id) not in skip
        ]
        mine = await self.claims.claim_deliveries(candidates)
        taken = 0
        for mo in owed:
            pdu = pdus[mo.id]
            key = mo_key(mo.id)
            if key not in mine or mo.id in runtime.mos_held or key in settled or pdu is None:
                continue
            if self._room(runtime) <= 0:
                runtime.owed_in_store = True
                break
            expires_at = loop_now + (mo.expires_at - wall)
            self._enqueue(runtime, pdu, "mo", expires_at=expires_at, mo_id=mo.id, reserved=True)
            taken += 1
        self.stats.mos_refilled += taken
        return taken


def _decoded(pdu: bytes) -> DeliverSm | None:
    """A kept MO's deliver_sm (None if what is kept is not one)."""
    try:
        decoded = decode(pdu)
    except PduError:
        return None
    return decoded if isinstance(decoded, DeliverSm) else None
