"""Customers: binds and submits on the SMPP server, deliveries to them, HTTP receipt callbacks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from gateway.metrics.families import counter_family

if TYPE_CHECKING:
    from gateway.metrics.source import MetricsSource


_SERVER_COUNTERS = {
    "tandem_customer_binds_accepted": ("Customer binds accepted", "binds"),
    "tandem_customer_bind_failures": (
        "Customer binds refused (credentials)",
        "bind_failures",
    ),
    "tandem_customer_binds_refused_banned": (
        "Customer binds refused while banned",
        "bind_refused_banned",
    ),
    "tandem_customer_submits_accepted": (
        "submit_sm from customers accepted",
        "submits_accepted",
    ),
    "tandem_customer_submits_refused": (
        "submit_sm from customers refused",
        "submits_refused",
    ),
    "tandem_customer_throttled": ("Customers answered ESME_RTHROTTLED", "throttled"),
    "tandem_customer_receipts_queued": (
        "Receipts queued for customers",
        "receipts_queued",
    ),
    "tandem_customer_deliveries": ("deliver_sm customers answered OK", "delivered"),
    "tandem_customer_delivery_retries": ("deliver_sm sent again", "delivery_retries"),
    "tandem_customer_delivery_failures": (
        "deliver_sm refused for good",
        "delivery_failed",
    ),
    "tandem_customer_deliveries_expired": (
        "deliver_sm that expired unsent",
        "delivery_expired",
    ),
}


def customer_families(gateway: MetricsSource) -> Iterator[Metric]:
    server: Any = gateway.smpp_server
    if server is not None:
        binds = GaugeMetricFamily(
            "tandem_customer_binds",
            "Customer SMPP binds now, by account",
            labels=["account"],
        )
        per_account: dict[str, int] = {}
        for account, _kind, _address in server.bound():
            per_account[account] = per_account.get(account, 0) + 1
        for account in sorted(per_account):
            binds.add_metric([account], per_account[account])
        yield binds
        stats = server.stats
        for metric_name, (documentation, attribute) in _SERVER_COUNTERS.items():
            yield counter_family(metric_name, documentation, getattr(stats, attribute))
        guard = server.guard.stats
        yield counter_family(
            "tandem_customer_bind_bans",
            "Addresses or accounts banned for failures",
            guard.bans,
        )
    callbacks: Any = getattr(gateway.http_api, "callbacks", None)
    if callbacks is not None:
        stats = callbacks.stats
        family = CounterMetricFamily(
            "tandem_callbacks",
            "HTTP receipt callbacks, by outcome: queued (owed), attempts, delivered, "
            "retried, given_up",
            labels=["outcome"],
        )
        for outcome in ("queued", "attempts", "delivered", "retried", "given_up"):
            family.add_metric([outcome], getattr(stats, outcome))
        yield family
        yield GaugeMetricFamily(
            "tandem_callbacks_owed",
            "Callbacks owed now: queued, not delivered nor given up",
            value=max(stats.queued - stats.delivered - stats.given_up, 0),
        )
