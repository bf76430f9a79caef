"""The customer SMPP server itself (see the package docstring): listeners, binds and their
connections, each account's runtime (binds, outbox, tps, reassembly), submit intake in batches,
query/cancel, and delivering receipts and MOs from the outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from dlr.customer_receipt import wants_receipt
from dlr.status import MessageStatus, StatusSource, is_final, is_intermediate, message_state
from gateway.accounts import Account, AccountBook, BindGuard, TokenBucket, accounts_file
from gateway.batching import TurnBatch
from gateway.config import TandemConfig
from gateway.inbound.model import InboundMessage
from gateway.inbound.smpp_pdus import deliver_sm_for_message, deliver_sm_for_part
from gateway.intake import IntakeRefusal, MessageRequest
from gateway.logs import message_fields
from gateway.messages import Channel, Message, Tenant
from gateway.smpp_binds import BindChecker, CredentialCache, PasswordVerifier, VerifierBusy
from gateway.startup import startup_step
from gateway.store.base import CustomerDeliveryStore, StatusChange, StoreError
from smpp.aio import RequestResult, SmppConnection, SmppConnectionClosed, SmppHandler
from smpp.codec import PduError, decode, encode
from smpp.constants import CommandStatus
from smpp.pdu import (
    CancelSm,
    DataSm,
    DeliverSm,
    DistributionList,
    Pdu,
    QuerySm,
    ReplaceSm,
    SubmitMulti,
    SubmitSm,
    UnsuccessSme,
)
from smpp.reassembly import ConcatPart, ReassembledMessage, Reassembler
from smpp.session import Role, SessionConfig, SessionError, response_to
from smpp.timefmt import format_smpp_time

if TYPE_CHECKING:
    from gateway.services import GatewayServices
from gateway.smpp_server.receipts import _customer_receipt
from gateway.smpp_server.settings import (
    ACCOUNTS_RELOAD_SECONDS,
    BIND_KINDS,
    RECEIVING_STATES,
    SYSTEM_ID,
    TEMPORARY_DELIVERY_ERRORS,
    TICK_SECONDS,
    CustomerServerStats,
    ServerSettings,
    _Delivery,
    _Held,
    _Refused,
)
from gateway.smpp_server.submits import _answer_held, _Content, _content_of

log = logging.getLogger("tandem.smpp_server")
T = TypeVar("T")


class _AccountRuntime:
    """What the server keeps per account while running: binds, outbox, tps, reassembly."""

    def __init__(self, account: Account, settings: ServerSettings) -> None:
        self.account = account
        self.binds: list[_CustomerBind] = []
        self.outbox: deque[_Delivery] = deque()
        self.reserved = 0  # outbox places held for MOs being stored (they come in after)
        # (message id, status) of the receipts queued or in flight
        # How many of each (message id, status) are queued or in flight: in "segment" report
        # mode several parts' receipts can share one.
        self.receipts_held: Counter[tuple[str, MessageStatus]] = Counter()
        self.receipts_in_store = False  # receipts wait in the store for room in the outbox
        self.refilling = False
        self.next_receiver = 0
        tps = account.config.tps
        self.bucket = None if tps is None else TokenBucket(tps, max(tps, 1.0))
        self.submit_parts = Reassembler(
            settings.reassembly_timeout,
            settings.reassembly_max_pending,
            settings.reassembly_max_bytes,
        )
        self.held_seqnums: dict[tuple[object, int, int], set[int]] = {}

    @property
    def system_id(self) -> str:
        return self.account.system_id

    def receiving_bind(self) -> _CustomerBind | None:
        """The next receiving bind with room, round robin; None when none can take one now."""
        count = len(self.binds)
        for step in range(count):
            index = (self.next_receiver + step) % count
            bind = self.binds[index]
            if bind.can_deliver():
                self.next_receiver = index + 1
                return bind
        return None


class _CustomerConnection(SmppConnection):
    """SmppConnection plus what isolation needs: read pausing and the write buffer limit."""

    def __init__(self, server: CustomerSmppServer, handler: _CustomerBind) -> None:
        super().__init__(Role.SERVER, handler, server.session_config, SYSTEM_ID)
        self.bind_handler = handler
        self.transport: asyncio.Transport | None = None
        self.peer_address = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses but have the same methods.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer_address = str(peer[0]) if peer else ""
        settings = self.bind_handler.server.settings
        self.transport.set_write_buffer_limits(high=settings.write_buffer_high)
        super().connection_made(transport)

    def pause_writing(self) -> None:
        self.bind_handler.set_write_paused(True)

    def resume_writing(self) -> None:
        self.bind_handler.set_write_paused(False)

    def set_reading(self, reading: bool) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if reading:
            transport.resume_reading()
        else:
            transport.pause_reading()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class _CustomerBind(SmppHandler):
    """One customer connection: bind decision, requests, back-pressure."""

    def __init__(self, server: CustomerSmppServer) -> None:
        self.server = server
        self.connection: _CustomerConnection | None = None
        self.runtime: _AccountRuntime | None = None
        self.kind = ""
        self.in_flight = 0  # requests read and not yet answered
        self.delivering = 0  # our deliver_sm awaiting deliver_sm_resp
        self.window = 1
        self._paused_for_window = False
        self._write_paused = False
        self._draining = False  # the server is stopping: no more requests are read
        self._closing = False  # ... and the unbind follows: none is taken any more
        self._all_answered: asyncio.Event | None = None
        self._stall_timer: asyncio.TimerHandle | None = None

    # -- SmppHandler -------------------------------------------------------------------------

    def connection_made(self, connection: SmppConnection) -> None:
        assert isinstance(connection, _CustomerConnection)
        self.connection = connection
        self.server.stats.connections += 1

    def connection_lost(self, reason: str | None) -> None:
        if self._stall_timer is not None:
            self._stall_timer.cancel()
        runtime, self.runtime = self.runtime, None
        if runtime is not None:
            with contextlib.suppress(ValueError):
                runtime.binds.remove(self)
            log.info(
                "%s unbound (%s) from %s: %s",
                runtime.system_id,
                self.kind,
                self.address,
                reason or "closed",
            )

    def bind_requested(self, request: Pdu) -> int | Awaitable[int]:
        return self.server.decide_bind(self, request)

    def request_received(self, request: Pdu) -> RequestResult:
        runtime = self.runtime
        if runtime is None:  # the session only lets bound peers through; belt and braces
            return response_to(request, command_status=CommandStatus.ESME_RINVBNDSTS)
        if self._closing:
            return response_to(request, command_status=CommandStatus.ESME_RX_T_APPN)
        if self.in_flight >= self.window:
            # More outstanding than its window allows: it ignored the window it was given.
            self.server.stats.throttled += 1
            return response_to(request, command_status=CommandStatus.ESME_RTHROTTLED)
        result = self.server.handle_request(self, runtime, request)
        if result is None or isinstance(result, Pdu):
            return result
        # A future, not a coroutine: no task per request. This callback is registered before
        # smpp.aio's, so the count drops before the answer is written.
        pending = asyncio.ensure_future(result)
        self.in_flight += 1
        if self.in_flight >= self.window and not self._paused_for_window:
            self._paused_for_window = True
            self._update_reading()
        pending.add_done_callback(self._answered)
        return pending

    def _answered(self, _: asyncio.Future[Pdu]) -> None:
        self.in_flight -= 1
        if self._paused_for_window and self.in_flight < self.window:
            self._paused_for_window = False
            self._update_reading()
        if self.in_flight == 0 and self._all_answered is not None:
            self._all_answered.set()

    async def drain(self, seconds: float) -> None:
        """Stop reading requests and wait, at most `seconds`, until every request read has
        its answer (each submit stored and acknowledged); reading resumes after, for the
        unbind's answer."""
        self._draining = True
        self._update_reading()
        if self.in_flight:
            self._all_answered = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_answered.wait(), seconds)
        # Requests still in the last read's buffer, or sent after it: refused (not stored), as
        # their answers could not reach the customer once the unbind is on its way.
        self._closing = True
        self._draining = False
        self._update_reading()

    # -- back-pressure -----------------------------------------------------------------------

    @property
    def address(self) -> str:
        return "" if self.connection is None else self.connection.peer_address

    def set_write_paused(self, paused: bool) -> None:
        self._write_paused = paused
        loop = asyncio.get_running_loop()
        if paused and self._stall_timer is None:
            self._stall_timer = loop.call_later(
                self.server.settings.write_stall_timeout, self._drop_slow_reader
            )
        elif not paused and self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None
        self._update_reading()
        if not paused and self.runtime is not None:
            self.server.pump(self.runtime)

    def _drop_slow_reader(self) -> None:
        self._stall_timer = None
        if self.connection is not None and self._write_paused:
            self.server.stats.dropped_slow_readers += 1
            log.warning(
                "dropping %s from %s: it has not read its socket for %.0f s",
                self.runtime.system_id if self.runtime else "an unbound client",
                self.address,
                self.server.settings.write_stall_timeout,
            )
            self.connection.abort()

    def _update_reading(self) -> None:
        if self.connection is not None:
            self.connection.set_reading(
                not (self._paused_for_window or self._write_paused or self._draining)
            )

    def can_deliver(self) -> bool:
        connection = self.connection
        return (
            connection is not None
            and not self._write_paused
            and connection.state in RECEIVING_STATES
            and connection.session.window_free > 0
            and self.delivering < self.window
        )


class CustomerSmppServer:
    """The customer-facing SMPP server of one gateway. `await start()`, `await stop()`.

    Subscribes itself to the gateway's status listeners (receipts) and MO listeners (MOs for
    numbers an account owns).
    """

    def __init__(
        self,
        gateway: GatewayServices,
        *,
        accounts: AccountBook | None = None,
        settings: ServerSettings | None = None,
        guard: BindGuard | None = None,
    ) -> None:
        self.gateway = gateway
        self.config = gateway.config.smpp_server
        self.accounts = (
            accounts
            if accounts is not None
            else AccountBook(gateway.config.accounts, accounts_file(gateway.config))
        )
        self._static_accounts = list(gateway.config.accounts)
        self.settings = settings if settings is not None else ServerSettings()
        self.guard = guard if guard is not None else BindGuard()
        self.stats = CustomerServerStats()
        self.session_config = SessionConfig(
            window=self.settings.max_deliver_window,
            response_timeout=self.settings.response_timeout,
            enquire_link_interval=self.settings.enquire_link_interval,
            inactivity_timeout=None,  # an idle receiver is normal; enquire_link finds dead ones
            bind_timeout=self.settings.bind_timeout,
            max_pdu_length=self.settings.max_pdu_length,
        )
        self.port: int | None = None
        self.tls_port: int | None = None
        self._servers: list[asyncio.Server] = []
        self._runtimes: dict[str, _AccountRuntime] = {}
        self._ticker: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Future[Any]] = set()
        # Password checks on a few threads of their own behind a bounded queue: a bind flood
        # waits there (or is refused), never in the loop's executor.
        self.binds = BindChecker(
            distinct_failures=self.config.distinct_bind_failures,
            verifier=PasswordVerifier(
                max_pending=self.settings.bind_checks_pending,
                max_pending_per_client=self.settings.bind_checks_per_address,
                wait_budget=self.settings.bind_check_wait,
            ),
            cache=CredentialCache(ttl=self.settings.credential_cache_seconds),
        )
        self._next_reload = 0.0
        self._next_forget = time.monotonic() + self.settings.forget_expired_interval
        self._loop: asyncio.AbstractEventLoop | None = None
        self._batch = _IntakeBatch(self)
        store = gateway.message_store
        # The outbox in memory is backed by the store: what a customer has not taken yet is
        # offered again after a restart. A store without that support keeps it in memory only.
        self._deliveries = store if isinstance(store, CustomerDeliveryStore) else None
        self._receipts_settled: TurnBatch[tuple[str, MessageStatus]] = TurnBatch(
            self._settle_receipts, self._spawn
        )
        self._mos_settled: TurnBatch[int] = TurnBatch(self._settle_mos, self._spawn)
        # Receipts settled in memory whose settling the store has not committed yet: a refill
        # reading the store meanwhile must not take them for owed.
        self._settling: set[tuple[str, MessageStatus]] = set()

    # -- life cycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        await self.binds.start()
        await self._restore_outboxes()
        plain = await loop.create_server(self._new_connection, self.config.host, self.config.port)
        self._servers.append(plain)
        self.port = plain.sockets[0].getsockname()[1]
        if self.config.tls_port is not None:
            with startup_step("smpp_server", f"{self.config.host}:{self.config.tls_port} (TLS)"):
                context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                assert self.config.tls_cert_file is not None
                assert self.config.tls_key_file is not None
                context.load_cert_chain(self.config.tls_cert_file, self.config.tls_key_file)
                secure = await loop.create_server(
                    self._new_connection, self.config.host, self.config.tls_port, ssl=context
                )
            self._servers.append(secure)
            self.tls_port = secure.sockets[0].getsockname()[1]
        self.gateway.status_listeners.append(self)
        self.gateway.inbound.accounts = self
        self._ticker = asyncio.create_task(self._tick_forever(), name="smpp-server-tick")
        log.info(
            "SMPP server listening on %s:%s%s (%d accounts)",
            self.config.host,
            self.port,
            "" if self.tls_port is None else f", TLS on {self.tls_port}",
            len(self.accounts),
        )

    async def stop(self) -> None:
        with contextlib.suppress(ValueError):
            self.gateway.status_listeners.remove(self)
        if self.gateway.inbound.accounts is self:
            self.gateway.inbound.accounts = None
        for server in self._servers:
            server.close()
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        binds = [bind for runtime in self._runtimes.values() for bind in runtime.binds]
        # Every submit already read is answered (stored first) before its customer is unbound,
        # within [shutdown] drain_seconds; nothing more is read meanwhile.
        drain = self.gateway.config.shutdown.drain_seconds
        await asyncio.gather(*(bind.drain(drain) for bind in binds), return_exceptions=True)
        await asyncio.gather(*(self._unbind(bind) for bind in binds), return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self.binds.shutdown()

    async def _unbind(self, bind: _CustomerBind) -> None:
        connection = bind.connection
        if connection is None:
            return
        try:
            await asyncio.wait_for(connection.unbind(), 2.0)
        except (TimeoutError, SmppConnectionClosed, SessionError):
            connection.close()

    def _new_connection(self) -> _CustomerConnection:
        return _CustomerConnection(self, _CustomerBind(self))

    def bound(self) -> list[tuple[str, str, str]]:
        """(system_id, bind kind, peer address) of every bound customer connection, for the
        operator's views (`GET /status`, `tandem status`, systemd's STATUS= line)."""
        return [
            (runtime.system_id, bind.kind, bind.address)
            for runtime in self._runtimes.values()
            for bind in runtime.binds
        ]

    def runtime(self, system_id: str) -> _AccountRuntime | None:
        runtime = self._runtimes.get(system_id)
        if runtime is None:
            account = self.accounts.get(system_id)
            if account is None:
                return None
            runtime = self._runtimes[system_id] = _AccountRuntime(account, self.settings)
        return runtime

    # -- binds ---------------------------------------------------------------------------------

    def decide_bind(self, bind: _CustomerBind, request: Pdu) -> Awaitable[int]:
        return self._decide_bind(bind, request)

    async def _decide_bind(self, bind: _CustomerBind, request: Pdu) -> int:
        """Credentials (gateway.smpp_binds) and the failed-bind guard, then `_finish_bind`."""
        address = bind.address
        now = time.monotonic()
        system_id = str(getattr(request, "system_id", ""))
        password = str(getattr(request, "password", ""))
        account = self.accounts.get(system_id)
        # A credential verified recently binds at once: no queue, and no ban of an address
        # it shares with a client that keeps failing.
        if self.binds.cached(address, account, password, now):
            self.stats.binds_cached += 1
        else:
            if self.guard.banned(address, system_id, now):
                self.stats.bind_refused_banned += 1
                log.warning("bind for %r from %s refused: banned for now", system_id, address)
                return CommandStatus.ESME_RBINDFAIL
            try:
                refusal = await self.binds.check(address, account, password, now)
            except VerifierBusy:
                self.stats.bind_refused_busy += 1
                if self.stats.bind_refused_busy % 100 == 1:  # a flood: one line per hundred
                    log.warning(
                        "bind for %r from %s refused: password checks at their bound "
                        "(%d waiting; %d binds refused so)",
                        system_id,
                        address,
                        self.binds.verifier.pending,
                        self.stats.bind_refused_busy,
                    )
                return CommandStatus.ESME_RBINDFAIL
            if refusal is not None:
                if refusal.network:
                    self.stats.bind_refused_network += 1
                answer = self._refuse_bind(address, system_id, refusal.status, refusal.reason)
                return answer if isinstance(answer, int) else await answer
        assert account is not None
        outcome = self._finish_bind(bind, request, account)
        return outcome if isinstance(outcome, int) else await outcome

    def _finish_bind(
        self, bind: _CustomerBind, request: Pdu, account: Account
    ) -> int | Awaitable[int]:
        system_id = account.system_id
        kind = BIND_KINDS.get(type(request), "")
        config = account.config
        if not config.enabled:
            return self._refuse_bind(bind.address, system_id, CommandStatus.ESME_RBINDFAIL, "off")
        if kind not in config.bind_types:
            return self._refuse_bind(
                bind.address, system_id, CommandStatus.ESME_RBINDFAIL, f"{kind} not allowed"
            )
        runtime = self.runtime(system_id)
        assert runtime is not None
        if len(runtime.binds) >= config.max_binds:
            log.warning("%s: bind refused, already %d binds", system_id, len(runtime.binds))
            return CommandStatus.ESME_RBINDFAIL  # not a credential failure: no guard count
        if bind.connection is None or bind.connection.transport is None:
            return CommandStatus.ESME_RBINDFAIL  # it left while the password was checked
        self.guard.succeeded(bind.address, system_id)
        bind.runtime = runtime
        bind.kind = kind
        bind.window = config.window
        runtime.binds.append(bind)
        self.stats.binds += 1
        log.info("%s bound as %s from %s", system_id, kind, bind.address)
        if kind != "transmitter":
            self._call_soon(functools.partial(self.pump, runtime))
        return CommandStatus.ESME_ROK

    def _refuse_bind(
        self, address: str, system_id: str, status: int, why: str
    ) -> int | Awaitable[int]:
        self.stats.bind_failures += 1
        delay = self.guard.failed(address, system_id, time.monotonic())
        log.warning(
            "bind refused for %r from %s: %s (0x%08X)%s",
            system_id,
            address,
            why,
            status,
            f", answered after {delay:.1f} s" if delay else "",
        )
        if not delay:
            return status
        return self._after(delay, status)

    @staticmethod
    async def _after(delay: float, status: int) -> int:
        await asyncio.sleep(delay)
        return status

    def _call_soon(self, callback: Callable[[], None]) -> None:
        assert self._loop is not None
        self._loop.call_soon(callback)

    # -- requests ------------------------------------------------------------------------------

    def handle_request(
        self, bind: _CustomerBind, runtime: _AccountRuntime, request: Pdu
    ) -> RequestResult:
        kind = type(request)
        if kind is SubmitSm or kind is DataSm:
            return self._submit(runtime, request)
        if kind is QuerySm:
            assert isinstance(request, QuerySm)
            return self._query(runtime, request)
        if kind is CancelSm:
            assert isinstance(request, CancelSm)
            return self._cancel(runtime, request)
        if kind is SubmitMulti:
            assert isinstance(request, SubmitMulti)
            return self._submit_multi(runtime, request)
        if kind is ReplaceSm:
            return response_to(request, command_status=CommandStatus.ESME_RREPLACEFAIL)
        return response_to(request, command_status=CommandStatus.ESME_RINVCMDID)

    def _submit(self, runtime: _AccountRuntime, pdu: Pdu) -> RequestResult:
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
        return self._batch.add(pdu, content.request(pdu, destination))

    async def _accept(self, pdu: Pdu, request: MessageRequest) -> Pdu:
        try:
            prepared = await self.gateway.intake.accept([request])
        except IntakeRefusal as refusal:
            self.stats.submits_refused += 1
            log.debug("%s: submit refused: %s", request.account, refusal)
            return response_to(pdu, command_status=refusal.smpp_status)
        self.stats.submits_accepted += 1
        return response_to(pdu, message_id=prepared[0].message.id)

    def _hold_part(self, runtime: _AccountRuntime, pdu: Pdu, content: _Content) -> RequestResult:
        part = content.part
        assert part is not None
        key = (content.source, content.destination)
        group = (key, part.concat.reference, part.concat.total)
        seen = runtime.held_seqnums.setdefault(group, set())
        if part.concat.seqnum in seen:
            self.stats.submits_refused += 1
            return response_to(pdu, command_status=CommandStatus.ESME_RSUBMITFAIL)
        seen.add(part.concat.seqnum)
        assert self._loop is not None
        future: asyncio.Future[Pdu] = self._loop.create_future()
        held = ConcatPart(part.concat, part.payload, part.data_coding, _Held(pdu, future))
        whole = runtime.submit_parts.add(key, held, time.monotonic())
        if whole is not None:
            runtime.held_seqnums.pop(group, None)
            self._spawn(self._accept_reassembled(runtime, whole, content))
        return future

    async def _accept_reassembled(
        self, runtime: _AccountRuntime, whole: ReassembledMessage, content: _Content
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

    def _submit_multi(self, runtime: _AccountRuntime, pdu: SubmitMulti) -> RequestResult:
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

    async def _query(self, runtime: _AccountRuntime, pdu: QuerySm) -> Pdu:
        message = await self._own_message(runtime, pdu.message_id)
        if message is None:
            return pdu.response(command_status=CommandStatus.ESME_RQUERYFAIL)
        final = is_final(message.status)
        return pdu.response(
            message_id=message.id,
            final_date=format_smpp_time(message.updated_at) if final else "",
            message_state=message_state(message.status),
            error_code=0,
        )

    async def _cancel(self, runtime: _AccountRuntime, pdu: CancelSm) -> Pdu:
        message = await self._own_message(runtime, pdu.message_id)
        if message is None:
            return pdu.response(command_status=CommandStatus.ESME_RCANCELFAIL)
        ids = [message.id]
        if self._deliveries is not None:  # a submit_multi's id: its other destinations too
            ids += await self._deliveries.find_references(message.tenant, message.id)
        cancelled = [await self._cancel_one(message_id) for message_id in ids]
        if not any(cancelled):
            return pdu.response(command_status=CommandStatus.ESME_RCANCELFAIL)
        return pdu.response()

    async def _cancel_one(self, message_id: str) -> bool:
        gateway = self.gateway
        # Only what still waits in the queue can be recalled; a link may be sending the rest.
        if not gateway.queue.remove(message_id):
            return False
        gateway.dispatcher.forget(message_id)
        change = await gateway.message_store.cancel(
            message_id, at=gateway.clock(), source=StatusSource.OPERATOR
        )
        if not change.changed:  # it was not left waiting after all: queue it again as it is
            record = await gateway.message_store.get(message_id)
            if record is not None and record.message.status in (
                MessageStatus.ACCEPTED,
                MessageStatus.QUEUED,
            ):
                gateway.dispatcher.enqueue(record.message)
            return False
        if change.message is not None:
            gateway.stats.count_final(change.message, gateway.clock())
        return True

    async def _own_message(self, runtime: _AccountRuntime, message_id: str) -> Message | None:
        if not message_id:
            return None
        record = await self.gateway.message_store.get(message_id)
        if record is None:
            return None
        message = record.message
        # Another tenant's id (another account's, or an HTTP key's of the same name) answers
        # exactly like an unknown one: nothing leaks.
        if message.tenant != Tenant(Channel.SMPP, runtime.system_id):
            return None
        return message

    # -- receipts and MOs ----------------------------------------------------------------------

    def message_status_changed(self, message: Message, change: StatusChange) -> None:
        """Status listener: a receipt for SMPP customers who asked for one."""
        if message.channel != Channel.SMPP:
            return
        status = message.status
        intermediate = is_intermediate(status)
        if not wants_receipt(message.registered_delivery, status, intermediate):
            return
        runtime = self.runtime(message.account)
        if runtime is None:
            return
        segment = change.segment
        error: int | str = 0
        if segment is not None and segment.error:
            error = segment.error
        elif message.last_error:
            error = message.last_error
        total = segment.total if segment is not None else 1
        self.stats.receipts_queued += 1
        self._enqueue(
            runtime,
            _customer_receipt(message, status, error, total),
            "receipt",
            receipt=(message.id, status),
        )

    # --- MOs (gateway.inbound.handler.MoAccounts) -------------------------------------------

    def owner_of(self, number: str) -> str | None:
        account = self.accounts.owner_of(number)
        return account.system_id if account is not None else None

    def has_room(self, account: str) -> bool:
        runtime = self.runtime(account)
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
        runtime = self.runtime(account)
        if runtime is None:
            return None
        self.stats.mo_queued += 1
        if runtime.account.config.multipart == "reassemble" or len(message.parts) == 1:
            pdus = [deliver_sm_for_message(message)]
        else:
            pdus = [deliver_sm_for_part(part) for part in message.parts]
        runtime.reserved += len(pdus)  # their places in the outbox, so nothing fills them
        return self._spawn(self._keep_mos(runtime, pdus))

    async def _keep_mos(self, runtime: _AccountRuntime, pdus: list[DeliverSm]) -> None:
        """Store the MOs, then queue them for a bind in the places `deliver_mo` reserved."""
        ttl = runtime.account.config.delivery_ttl
        ids: list[int | None] = [None] * len(pdus)
        try:
            if self._deliveries is not None:
                now = time.time()
                kept = [
                    self._deliveries.queue_mo(
                        runtime.system_id, encode(pdu), received_at=now, expires_at=now + ttl
                    )
                    for pdu in pdus
                ]
                ids = list(await asyncio.gather(*kept))
        finally:
            runtime.reserved -= len(pdus)
        for pdu, mo_id in zip(pdus, ids, strict=True):
            self._enqueue(runtime, pdu, "mo", mo_id=mo_id, reserved=True)

    def _enqueue(
        self,
        runtime: _AccountRuntime,
        pdu: DeliverSm,
        kind: str,
        *,
        expires_at: float | None = None,
        receipt: tuple[str, MessageStatus] | None = None,
        mo_id: int | None = None,
        reserved: bool = False,
    ) -> None:
        """Queue a deliver_sm for the account's binds. Beyond the outbox's bound a receipt is
        left to wait in the store (refilled later); anything else is dropped and counted, unless
        its place was `reserved` (an MO the carrier was answered for)."""
        config = runtime.account.config
        if expires_at is None:
            expires_at = time.monotonic() + config.delivery_ttl
        item = _Delivery(pdu, kind, expires_at, receipt=receipt, mo_id=mo_id)
        full = len(runtime.outbox) + runtime.reserved >= config.delivery_queue_max
        if full and receipt is not None and self._deliveries is not None:
            # Owed in the store already: it waits there until the outbox has room again.
            runtime.receipts_in_store = True
            self.stats.receipts_deferred += 1
            return
        if receipt is not None:
            runtime.receipts_held[receipt] += 1
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

    def _settle(
        self, runtime: _AccountRuntime, item: _Delivery, failure: str | None = None
    ) -> None:
        """The delivery is over (taken, refused for good, expired, dropped): the store may
        forget it. A receipt that did not reach the customer says so in its message's history."""
        if item.receipt is not None:
            held = runtime.receipts_held
            held[item.receipt] -= 1
            if held[item.receipt] <= 0:  # the last one out settles the mark
                del held[item.receipt]
                self._settling.add(item.receipt)
                self._receipts_settled.add(item.receipt)
            if failure is not None:
                self._spawn(self._record_receipt_failure(*item.receipt, failure))
        elif item.mo_id is not None:
            self._mos_settled.add(item.mo_id)

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
            if self._deliveries is not None:
                await self._deliveries.receipts_settled(settled)
        except StoreError as exc:  # they stay owed: offered again after a restart
            log.warning("recording %d receipts as delivered failed: %s", len(settled), exc)
        finally:
            self._settling.difference_update(settled)

    async def _settle_mos(self, ids: list[int]) -> None:
        if self._deliveries is None:
            return
        try:
            await self._deliveries.mos_settled(ids)
        except StoreError as exc:
            log.warning("recording %d MOs as delivered failed: %s", len(ids), exc)

    async def _restore_outboxes(self) -> None:
        """Queue what customers were owed when the daemon last stopped (or died)."""
        store = self._deliveries
        if store is None:
            return
        wall, loop_now = time.time(), time.monotonic()
        expired = await self._forget_expired()
        restored = 0
        for account in list(self.accounts):
            runtime = self.runtime(account.system_id)
            if runtime is not None:
                runtime.receipts_in_store = True
                restored += await self._refill(runtime)
        gone_mos: list[int] = []
        for mo in await store.queued_mos():
            runtime = self.runtime(mo.account)
            try:
                pdu = decode(mo.pdu)
            except PduError:
                pdu = None
            if runtime is None or mo.expires_at <= wall or not isinstance(pdu, DeliverSm):
                gone_mos.append(mo.id)
                continue
            # A part held for reassembly goes as the part it is (as when reassembly times out).
            self._enqueue(
                runtime, pdu, "mo", expires_at=loop_now + (mo.expires_at - wall), mo_id=mo.id
            )
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

    async def _forget_expired(self) -> int:
        """Clear the marks of receipts owed past their account's delivery_ttl (and, past the
        longest ttl, of accounts since removed); returns how many."""
        store = self._deliveries
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
        except StoreError as exc:
            log.warning("clearing expired receipts failed: %s", exc)
            return 0
        return forgotten

    async def _refill_and_pump(self, runtime: _AccountRuntime) -> None:
        if await self._refill(runtime):
            self.pump(runtime)

    async def _refill(self, runtime: _AccountRuntime) -> int:
        """Take receipts that wait in the store into the account's outbox while it has room;
        returns how many it took."""
        store = self._deliveries
        taken = 0
        if store is None:
            runtime.refilling = False
            return 0
        runtime.refilling = True
        try:
            config = runtime.account.config
            room = config.delivery_queue_max - len(runtime.outbox) - runtime.reserved
            if room <= 0:
                return 0
            # Taken before the read: what is settled while it runs may still be in its answer.
            skip = set(runtime.receipts_held) | self._settling
            limit = room + len(skip)
            wall, loop_now = time.time(), time.monotonic()
            owed = await store.owed_receipts(
                channel=Channel.SMPP,
                since=wall - config.delivery_ttl,
                account=runtime.system_id,
                limit=limit,
            )
            runtime.receipts_in_store = len(owed) == limit  # a full answer: there may be more
            for receipt in owed:
                message = receipt.message
                key = (message.id, receipt.status)
                if key in skip or key in runtime.receipts_held:
                    continue
                if len(runtime.outbox) + runtime.reserved >= config.delivery_queue_max:
                    runtime.receipts_in_store = True
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
        except StoreError as exc:
            log.warning("%s: reading receipts owed failed: %s", runtime.system_id, exc)
        finally:
            runtime.refilling = False
        self.stats.receipts_refilled += taken
        return taken

    def pump(self, runtime: _AccountRuntime) -> None:
        """Hand queued deliveries to receiving binds while they have room; when receipts wait
        in the store and the outbox is down to half, fetch the next of them."""
        outbox = runtime.outbox
        if (
            runtime.receipts_in_store
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
        runtime: _AccountRuntime,
        bind: _CustomerBind,
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

    # -- housekeeping --------------------------------------------------------------------------

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            try:
                self.tick(time.monotonic())
            except Exception:
                log.exception("SMPP server housekeeping failed")

    def tick(self, now: float) -> None:
        if now >= self._next_forget and self._deliveries is not None:
            # Receipts past their ttl that never reached memory (they waited in the store).
            self._next_forget = now + self.settings.forget_expired_interval
            self._spawn(self._forget_expired())
        if now >= self._next_reload:
            self._next_reload = now + ACCOUNTS_RELOAD_SECONDS
            if self.accounts.reload_if_changed():
                self._accounts_reloaded()
        for runtime in self._runtimes.values():
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
            self.pump(runtime)

    def reconfigure(self, config: TandemConfig) -> list[str]:
        """A reload (`Gateway.add_reconfigure_hook`): the config's accounts. Binds of an
        account removed or disabled are closed; the others take the new limits and stay
        bound. The listener needs a restart."""
        if config.accounts == self._static_accounts:
            return []
        self._static_accounts = list(config.accounts)
        self.accounts.replace_static(config.accounts)
        self._accounts_reloaded()
        return [f"{len(self.accounts)} accounts"]

    def _accounts_reloaded(self) -> None:
        if self.accounts.load_error is not None:
            log.error("accounts file not reloaded: %s", self.accounts.load_error)
            return
        log.info("accounts reloaded: %d accounts", len(self.accounts))
        for system_id, runtime in list(self._runtimes.items()):
            account = self.accounts.get(system_id)
            if account is None or not account.config.enabled:
                for bind in list(runtime.binds):
                    log.info("%s removed or disabled: closing its binds", system_id)
                    if bind.connection is not None:
                        bind.connection.close()
                continue
            runtime.account = account
            tps = account.config.tps
            if tps is None:
                runtime.bucket = None
            elif runtime.bucket is None or runtime.bucket.rate != tps:
                runtime.bucket = TokenBucket(tps, max(tps, 1.0))
            for bind in runtime.binds:
                bind.window = account.config.window

    def _spawn(self, work: Awaitable[T]) -> asyncio.Future[T]:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


class _IntakeBatch:
    """Submits read in one loop iteration go to intake together: one `accept`, one store write.

    Intake is all or nothing per call, so when a batch is refused the requests are accepted one
    by one and each gets its own answer (prepare is pure, running it twice changes nothing).
    """

    def __init__(self, server: CustomerSmppServer) -> None:
        self.server = server
        self.pending: list[tuple[Pdu, MessageRequest, asyncio.Future[Pdu]]] = []

    def add(self, pdu: Pdu, request: MessageRequest) -> asyncio.Future[Pdu]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Pdu] = loop.create_future()
        if not self.pending:
            loop.call_soon(self._flush)
        self.pending.append((pdu, request, future))
        return future

    def _flush(self) -> None:
        batch, self.pending = self.pending, []
        self.server._spawn(self._accept(batch))

    async def _accept(self, batch: list[tuple[Pdu, MessageRequest, asyncio.Future[Pdu]]]) -> None:
        server = self.server
        try:
            prepared = await server.gateway.intake.accept(
                [request for _, request, _ in batch], count_refused=len(batch) == 1
            )
        except IntakeRefusal as refusal:
            if len(batch) == 1:
                pdu, request, future = batch[0]
                server.stats.submits_refused += 1
                log.debug("%s: submit refused: %s", request.account, refusal)
                _settle(future, response_to(pdu, command_status=refusal.smpp_status))
                return
            answers = await asyncio.gather(
                *(server._accept(pdu, request) for pdu, request, _ in batch),
                return_exceptions=True,
            )
            for (pdu, _, future), answer in zip(batch, answers, strict=True):
                if isinstance(answer, BaseException):
                    answer = response_to(pdu, command_status=CommandStatus.ESME_RSYSERR)
                _settle(future, answer)
            return
        except Exception:
            log.exception("storing %d submits failed", len(batch))
            for pdu, _, future in batch:
                _settle(future, response_to(pdu, command_status=CommandStatus.ESME_RSYSERR))
            return
        server.stats.submits_accepted += len(batch)
        for (pdu, _, future), item in zip(batch, prepared, strict=True):
            _settle(future, response_to(pdu, message_id=item.message.id))


def _settle(future: asyncio.Future[Pdu], answer: Pdu) -> None:
    if not future.done():  # cancelled when its connection went away
        future.set_result(answer)


async def start_customer_server(gateway: GatewayServices) -> CustomerSmppServer:
    """Start the customer SMPP server of `gateway` and register its stop hook."""
    server = CustomerSmppServer(gateway)
    gateway.add_stop_hook(server.stop)  # first: a start cut short (a busy port) is undone too
    gateway.add_reconfigure_hook(server.reconfigure)
    await server.start()
    return server
