"""`TandemCollector`: the prometheus-client custom collector that reads, at scrape time, what
each area's module makes of the daemon's counters."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import Metric

from gateway.metrics.customers import customer_families
from gateway.metrics.events import event_families
from gateway.metrics.http_api import http_families, otp_families
from gateway.metrics.inbound import inbound_families
from gateway.metrics.links import link_families
from gateway.metrics.loop_lag import LoopLag
from gateway.metrics.messages import latency_families, message_families, receipt_families
from gateway.metrics.optouts import optout_families
from gateway.metrics.process import process_families
from gateway.metrics.store import retention_families, store_families

if TYPE_CHECKING:
    from gateway.metrics.source import MetricsSource


class TandemCollector:
    """Reads the running daemon's counters when Prometheus scrapes (`collect`)."""

    def __init__(self, gateway: MetricsSource, loop_lag: LoopLag | None = None) -> None:
        self.gateway = gateway
        self.loop_lag = loop_lag
        self.started_at = time.time()

    def describe(self) -> list[Metric]:
        return []  # unchecked collector: names are not reserved in the registry

    def collect(self) -> Iterator[Metric]:
        gateway = self.gateway
        yield from process_families(gateway, self.started_at, self.loop_lag)
        yield from message_families(gateway)
        yield from link_families(gateway)
        yield from receipt_families(gateway)
        yield from customer_families(gateway)
        yield from http_families(gateway)
        yield from otp_families(gateway)
        yield from store_families(gateway)
        yield from latency_families(gateway)
        yield from optout_families(gateway)
        yield from event_families(gateway)
        yield from retention_families(gateway)
        yield from inbound_families(gateway)
