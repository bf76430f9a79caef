"""Outbound links: the contracts (`gateway.links.base`) and their implementations.

Every `[[links]]` entry names its kind in `type`; `LINK_KINDS` maps each kind to how its link is
built and what it can carry, so a new kind of link is one entry here and one config model
(`gateway.config`), never a branch inside another link. `build_link` and `link_capabilities`
dispatch through it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.config import LinkConfig
from gateway.links.base import (
    Link,
    LinkCapabilities,
    LinkSink,
    LinkState,
    MessageSource,
    ReceiptReport,
    SendFailure,
    SubmittedSegment,
)
from gateway.links.modem import ModemLink, ModemLinkStats, modem_capabilities
from gateway.links.smpp_client import SmppLink, SmppLinkStats, smpp_capabilities


@dataclass(frozen=True, slots=True)
class LinkKind:
    """One `type` of `[[links]]`: how to build its link and read its capabilities from its
    config entry (the config models are typed per kind; the registry takes any of them)."""

    build: Callable[[Any, MessageSource, LinkSink], Link]
    capabilities: Callable[[Any], LinkCapabilities]


LINK_KINDS: dict[str, LinkKind] = {
    "smpp": LinkKind(SmppLink, smpp_capabilities),
    "modem": LinkKind(ModemLink, modem_capabilities),
}


def build_link(config: LinkConfig, source: MessageSource, sink: LinkSink) -> Link:
    """The link for one `[[links]]` entry, of the kind its `type` names."""
    return LINK_KINDS[config.type].build(config, source, sink)


def link_capabilities(config: LinkConfig) -> LinkCapabilities:
    """What the link of a `[[links]]` entry can carry, without building it."""
    return LINK_KINDS[config.type].capabilities(config)


__all__ = [
    "LINK_KINDS",
    "Link",
    "LinkCapabilities",
    "LinkKind",
    "LinkSink",
    "LinkState",
    "MessageSource",
    "ModemLink",
    "ModemLinkStats",
    "ReceiptReport",
    "SendFailure",
    "SmppLink",
    "SmppLinkStats",
    "SubmittedSegment",
    "build_link",
    "link_capabilities",
]
