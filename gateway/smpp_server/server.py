"""The customer SMPP server itself (see the package docstring): its listeners and life cycle,
each account's runtime, which part answers which request, housekeeping and reloads. The work is
done by its parts: `bind_decisions` (binds), `submit_intake` (submits), `queries` (query_sm,
cancel_sm) and `outbox` (receipts and MOs to customers).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, TypeVar

from gateway.accounts import AccountBook, BindGuard, accounts_file
from gateway.config import TandemConfig
from gateway.smpp_binds import BindChecker, CredentialCache, PasswordVerifier
from gateway.smpp_server.bind_decisions import BindDecisions
from gateway.smpp_server.binds import AccountRuntime, CustomerBind, CustomerConnection
from gateway.smpp_server.outbox import CustomerOutbox
from gateway.smpp_server.queries import OwnMessages
from gateway.smpp_server.settings import (
    ACCOUNTS_RELOAD_SECONDS,
    OWED_CHECK_SECONDS,
    TICK_SECONDS,
    CustomerServerStats,
    ServerSettings,
)
from gateway.smpp_server.submit_intake import SubmitIntake
from gateway.startup import startup_step
from gateway.tasks import cancel_and_wait
from smpp.aio import RequestResult, SmppConnectionClosed
from smpp.constants import CommandStatus
from smpp.pdu import CancelSm, DataSm, Pdu, QuerySm, ReplaceSm, SubmitMulti, SubmitSm
from smpp.session import SessionConfig, SessionError, response_to

if TYPE_CHECKING:
    from gateway.services import GatewayServices

log = logging.getLogger("tandem.smpp_server")
T = TypeVar("T")


class CustomerSmppServer:
    """The customer-facing SMPP server of one gateway. `await start()`, `await stop()`.

    Subscribes its outbox to the gateway's status listeners (receipts) and MO listeners (MOs
    for numbers an account owns).
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
        self._runtimes: dict[str, AccountRuntime] = {}
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
        self._next_owed_check = 0.0
        self.outbox = CustomerOutbox(
            gateway,
            accounts=self.accounts,
            settings=self.settings,
            stats=self.stats,
            runtime_of=self.runtime,
            spawn=self._spawn,
        )
        self.bind_decisions = BindDecisions(
            accounts=self.accounts,
            checker=self.binds,
            guard=guard if guard is not None else BindGuard(),
            stats=self.stats,
            runtime_of=self.runtime,
            pump=self.pump,
        )
        self.submits = SubmitIntake(gateway, self.stats, self._spawn)
        self.own_messages = OwnMessages(gateway, self.outbox.store)

    @property
    def guard(self) -> BindGuard:
        """The failed-bind guard (slows, then bans, clients that keep failing)."""
        return self.bind_decisions.guard

    @guard.setter
    def guard(self, guard: BindGuard) -> None:
        self.bind_decisions.guard = guard

    # -- life cycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await self.binds.start()
        await self.outbox.restore()
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
        self.gateway.status_listeners.append(self.outbox)
        self.gateway.inbound.accounts = self.outbox
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
            self.gateway.status_listeners.remove(self.outbox)
        if self.gateway.inbound.accounts is self.outbox:
            self.gateway.inbound.accounts = None
        for server in self._servers:
            server.close()
        if self._ticker is not None:
            await cancel_and_wait(self._ticker)
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

    async def _unbind(self, bind: CustomerBind) -> None:
        connection = bind.connection
        if connection is None:
            return
        try:
            await asyncio.wait_for(connection.unbind(), 2.0)
        except (TimeoutError, SmppConnectionClosed, SessionError):
            connection.close()

    def _new_connection(self) -> CustomerConnection:
        return CustomerConnection(self, CustomerBind(self))

    def bound(self) -> list[tuple[str, str, str]]:
        """(system_id, bind kind, peer address) of every bound customer connection, for the
        operator's views (`GET /status`, `tandem status`, systemd's STATUS= line)."""
        return [
            (runtime.system_id, bind.kind, bind.address)
            for runtime in self._runtimes.values()
            for bind in runtime.binds
        ]

    def runtime(self, system_id: str) -> AccountRuntime | None:
        runtime = self._runtimes.get(system_id)
        if runtime is None:
            account = self.accounts.get(system_id)
            if account is None:
                return None
            runtime = self._runtimes[system_id] = AccountRuntime(account, self.settings)
        return runtime

    # -- what binds ask of the server (binds.BindHost) -----------------------------------------

    def decide_bind(self, bind: CustomerBind, request: Pdu) -> Awaitable[int]:
        return self.bind_decisions.decide(bind, request)

    def handle_request(
        self, bind: CustomerBind, runtime: AccountRuntime, request: Pdu
    ) -> RequestResult:
        kind = type(request)
        if kind is SubmitSm or kind is DataSm:
            return self.submits.submit(runtime, request, bind.answer)
        if kind is QuerySm:
            assert isinstance(request, QuerySm)
            return self.own_messages.query(runtime, request)
        if kind is CancelSm:
            assert isinstance(request, CancelSm)
            return self.own_messages.cancel(runtime, request)
        if kind is SubmitMulti:
            assert isinstance(request, SubmitMulti)
            return self.submits.submit_multi(runtime, request)
        if kind is ReplaceSm:
            return response_to(request, command_status=CommandStatus.ESME_RREPLACEFAIL)
        return response_to(request, command_status=CommandStatus.ESME_RINVCMDID)

    def pump(self, runtime: AccountRuntime) -> None:
        """Hand the account's queued deliveries to its receiving binds (`CustomerOutbox.pump`)."""
        self.outbox.pump(runtime)

    # -- housekeeping --------------------------------------------------------------------------

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            try:
                self.tick(time.monotonic())
            except Exception:
                log.exception("SMPP server housekeeping failed")

    def tick(self, now: float) -> None:
        if now >= self._next_forget and self.outbox.store is not None:
            # Receipts past their ttl that never reached memory (they waited in the store).
            self._next_forget = now + self.settings.forget_expired_interval
            self._spawn(self.outbox.forget_expired())
        if now >= self._next_reload:
            self._next_reload = now + ACCOUNTS_RELOAD_SECONDS
            if self.accounts.reload_if_changed():
                self._accounts_reloaded()
        look_for_owed = self.outbox.claims is not None and now >= self._next_owed_check
        if look_for_owed:
            # A cluster: receipts and MOs other nodes left owed for this node's binds.
            self._next_owed_check = now + OWED_CHECK_SECONDS
        for runtime in self._runtimes.values():
            self.submits.expire_parts(runtime, now)
            if look_for_owed and runtime.receives():
                runtime.owed_in_store = True
            self.outbox.pump(runtime)

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
            runtime.take_account(account)

    def _spawn(self, work: Awaitable[T]) -> asyncio.Future[T]:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


async def start_customer_server(gateway: GatewayServices) -> CustomerSmppServer:
    """Start the customer SMPP server of `gateway` and register its stop hook."""
    server = CustomerSmppServer(gateway)
    gateway.add_stop_hook(server.stop)  # first: a start cut short (a busy port) is undone too
    gateway.add_reconfigure_hook(server.reconfigure)
    await server.start()
    return server
