"""What the customer-facing channels see of the running gateway.

The SMPP server (`gateway.smpp_server`), the HTTP API (`gateway.http.api`) and its admin routes
and the operator view (`gateway.status`) are started by `gateway.app.Gateway` and call back into
it. They type against `GatewayServices`, never against `Gateway` itself: `gateway.app` imports
them, so an import of `gateway.app` from them (even under TYPE_CHECKING) would tie all of them
into one cycle. `Gateway` satisfies this protocol structurally; tests may pass anything that does.

This module holds only interfaces: it imports no channel and never `gateway.app`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from gateway.backlog import Backlog
    from gateway.config import TandemConfig
    from gateway.dispatch import Dispatcher, LinkStateView
    from gateway.inbound.handler import InboundHandler
    from gateway.intake import MessageIntake
    from gateway.links.base import Link
    from gateway.messages import Message
    from gateway.optouts.registry import OptOutRegistry
    from gateway.queue import AsyncSendQueue
    from gateway.reload import ReloadReport
    from gateway.store.base import MessageStore, StatusChange
    from routing import NumberResolver, RouteTable


class StatusListener(Protocol):
    """Told of every status change that took effect (receipts to customers, callbacks)."""

    def message_status_changed(self, message: Message, change: StatusChange) -> None: ...


class GatewayCounters(Protocol):
    """The gateway's counters the channels read or add to (`gateway.app.GatewayStats`)."""

    @property
    def submitted(self) -> int: ...
    @property
    def receipts(self) -> int: ...
    @property
    def mo_received(self) -> int: ...
    def count_final(self, message: Message, now: float) -> None: ...


class GatewayServices(Protocol):
    """The parts of the running gateway a channel uses. Read-only attributes: a channel never
    replaces one, it calls into it."""

    @property
    def config(self) -> TandemConfig: ...
    @property
    def config_path(self) -> Path | None: ...
    @property
    def clock(self) -> Callable[[], float]: ...
    @property
    def intake(self) -> MessageIntake: ...
    @property
    def message_store(self) -> MessageStore: ...
    @property
    def numbers(self) -> NumberResolver: ...
    @property
    def routes(self) -> RouteTable: ...
    @property
    def links(self) -> Mapping[str, Link]: ...
    @property
    def link_states(self) -> LinkStateView: ...
    @property
    def queue(self) -> AsyncSendQueue: ...
    @property
    def dispatcher(self) -> Dispatcher: ...
    @property
    def backlog(self) -> Backlog: ...
    @property
    def inbound(self) -> InboundHandler: ...
    @property
    def optouts(self) -> OptOutRegistry: ...
    @property
    def stats(self) -> GatewayCounters: ...
    @property
    def status_listeners(self) -> list[StatusListener]: ...
    @property
    def simulator(self) -> object | None: ...  # gateway.simulator.SmscSimulator when enabled
    @property
    def smpp_server(self) -> object | None: ...  # gateway.smpp_server.CustomerSmppServer
    @property
    def http_api(self) -> object | None: ...  # gateway.http.api.HttpApi

    def notify_status(self, change: StatusChange) -> None: ...
    def add_stop_hook(self, hook: Callable[[], Awaitable[None]]) -> None: ...
    def add_reconfigure_hook(self, hook: Callable[[TandemConfig], list[str]]) -> None: ...
    async def reload_report(self, config_path: Path | None = None) -> ReloadReport: ...
