"""What an operator asks first: are the links up, who is bound, what waits, is it flowing.

Owns `service_status_line(gateway)` (systemd's STATUS= line). Reads the running `Gateway`'s
state and counters; never changes anything and never shows message content.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.links.base import LinkState

if TYPE_CHECKING:
    from gateway.app import Gateway


def customer_binds(gateway: Gateway) -> list[tuple[str, str, str]]:
    """(system_id, bind kind, address) of every bound customer; [] without an SMPP server."""
    bound = getattr(gateway.smpp_server, "bound", None)
    return list(bound()) if bound is not None else []


def service_status_line(gateway: Gateway) -> str:
    """One line for `systemctl status`: links up of links, customer binds, messages queued."""
    links = gateway.links
    up = sum(1 for link in links.values() if link.state is LinkState.UP)
    queued = sum(gateway.queue.size(name) for name in links)
    binds = len(customer_binds(gateway))
    return f"{up}/{len(links)} links up, {binds} customer binds, {queued} queued"
