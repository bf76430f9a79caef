"""Whether a customer's bind is taken: its credentials (checked by `gateway.smpp_binds` on
threads of their own, or found in the cache of recent ones), the failed-bind guard, the
account's switch, bind types and concurrent binds. A refusal is answered late when the guard
says so.

Must never: check a password itself (gateway.smpp_binds does) or read requests of a bound
customer (`submit_intake` and `queries` do).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable

from gateway.accounts import Account, AccountBook, BindGuard
from gateway.smpp_binds import BindChecker, VerifierBusy
from gateway.smpp_server.binds import AccountRuntime, CustomerBind
from gateway.smpp_server.settings import BIND_KINDS, CustomerServerStats
from smpp.constants import CommandStatus
from smpp.pdu import Pdu

log = logging.getLogger("tandem.smpp_server")


class BindDecisions:
    """Answers bind requests: `decide` returns the bind's command status (when it is known)."""

    def __init__(
        self,
        *,
        accounts: AccountBook,
        checker: BindChecker,
        guard: BindGuard,
        stats: CustomerServerStats,
        runtime_of: Callable[[str], AccountRuntime | None],
        pump: Callable[[AccountRuntime], None],
    ) -> None:
        self.accounts = accounts
        self.checker = checker
        self.guard = guard
        self.stats = stats
        self._runtime_of = runtime_of
        self._pump = pump

    async def decide(self, bind: CustomerBind, request: Pdu) -> int:
        """Credentials (gateway.smpp_binds) and the failed-bind guard, then `_finish`."""
        address = bind.address
        now = time.monotonic()
        system_id = str(getattr(request, "system_id", ""))
        password = str(getattr(request, "password", ""))
        account = self.accounts.get(system_id)
        # A credential verified recently binds at once: no queue, and no ban of an address
        # it shares with a client that keeps failing.
        if self.checker.cached(address, account, password, now):
            self.stats.binds_cached += 1
        else:
            if self.guard.banned(address, system_id, now):
                self.stats.bind_refused_banned += 1
                log.warning("bind for %r from %s refused: banned for now", system_id, address)
                return CommandStatus.ESME_RBINDFAIL
            try:
                refusal = await self.checker.check(address, account, password, now)
            except VerifierBusy:
                self.stats.bind_refused_busy += 1
                if self.stats.bind_refused_busy % 100 == 1:  # a flood: one line per hundred
                    log.warning(
                        "bind for %r from %s refused: password checks at their bound "
                        "(%d waiting; %d binds refused so)",
                        system_id,
                        address,
                        self.checker.verifier.pending,
                        self.stats.bind_refused_busy,
                    )
                return CommandStatus.ESME_RBINDFAIL
            if refusal is not None:
                if refusal.network:
                    self.stats.bind_refused_network += 1
                answer = self._refuse(address, system_id, refusal.status, refusal.reason)
                return answer if isinstance(answer, int) else await answer
        assert account is not None
        outcome = self._finish(bind, request, account)
        return outcome if isinstance(outcome, int) else await outcome

    def _finish(self, bind: CustomerBind, request: Pdu, account: Account) -> int | Awaitable[int]:
        system_id = account.system_id
        kind = BIND_KINDS.get(type(request), "")
        config = account.config
        if not config.enabled:
            return self._refuse(bind.address, system_id, CommandStatus.ESME_RBINDFAIL, "off")
        if kind not in config.bind_types:
            return self._refuse(
                bind.address, system_id, CommandStatus.ESME_RBINDFAIL, f"{kind} not allowed"
            )
        runtime = self._runtime_of(system_id)
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
            asyncio.get_running_loop().call_soon(functools.partial(self._pump, runtime))
        return CommandStatus.ESME_ROK

    def _refuse(self, address: str, system_id: str, status: int, why: str) -> int | Awaitable[int]:
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
        return _after(delay, status)


async def _after(delay: float, status: int) -> int:
    await asyncio.sleep(delay)
    return status
