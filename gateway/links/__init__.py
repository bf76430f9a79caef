"""Outbound links: the contracts (`gateway.links.base`) and their implementations.

`SmppLink` (gateway.links.smpp_client) connects to a carrier's SMSC; a GSM modem link joins later
behind the same `Link` protocol. `build_link` turns one `[[links]]` entry into a link.
"""

from __future__ import annotations

from gateway.config import LinkConfig
from gateway.links.base import (
    Link,
    LinkSink,
    LinkState,
    MessageSource,
    SendFailure,
    SubmittedSegment,
)
from gateway.links.smpp_client import SmppLink, SmppLinkStats


def build_link(config: LinkConfig, source: MessageSource, sink: LinkSink) -> SmppLink:
    """The link for one `[[links]]` entry (dispatches on `type` as more kinds arrive)."""
    return SmppLink(config, source, sink)


__all__ = [
    "Link",
    "LinkSink",
    "LinkState",
    "MessageSource",
    "SendFailure",
    "SmppLink",
    "SmppLinkStats",
    "SubmittedSegment",
    "build_link",
]
