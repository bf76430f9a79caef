"""The HTTP API: requests by route and code, rate limiting, auth failures, connections;
OTP sends, checks and limits."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from gateway.metrics.families import counter_family

if TYPE_CHECKING:
    from gateway.metrics.source import MetricsSource


def http_families(gateway: MetricsSource) -> Iterator[Metric]:
    api: Any = gateway.http_api
    if api is None:
        return
    stats = api.stats
    requests = CounterMetricFamily(
        "tandem_http_requests",
        "HTTP requests answered, by route template and status code",
        labels=["route", "code"],
    )
    for (route, code), count in sorted(stats.by_route.items()):
        requests.add_metric([route, str(code)], count)
    yield requests
    yield counter_family("tandem_http_rate_limited", "Requests answered 429", stats.rate_limited)
    yield counter_family(
        "tandem_http_auth_failures",
        "Unknown bearer values presented",
        stats.failed_auth.failures,
    )
    yield GaugeMetricFamily(
        "tandem_http_connections_open",
        "HTTP connections open",
        value=stats.connections.open,
    )


def otp_families(gateway: MetricsSource) -> Iterator[Metric]:
    otp: Any = getattr(gateway.http_api, "otp", None)
    if otp is None:
        return
    stats = otp.stats
    family = CounterMetricFamily(
        "tandem_otp_verifications",
        "One-time passwords, by event: sent, resent, checked, approved, wrong_code, "
        "attempts_exhausted, expired",
        labels=["event"],
    )
    for event, attribute in (
        ("sent", "sent"),
        ("resent", "resent"),
        ("checked", "checks"),
        ("approved", "approved"),
        ("wrong_code", "wrong_codes"),
        ("attempts_exhausted", "attempts_exhausted"),
        ("expired", "expired"),
    ):
        family.add_metric([event], getattr(stats, attribute))
    yield family
    limited = CounterMetricFamily(
        "tandem_otp_limited",
        "OTP sends refused by a limit, by reason",
        labels=["reason"],
    )
    limited.add_metric(["destination"], stats.destination_limited)
    limited.add_metric(["prefix"], stats.prefix_limited)
    limited.add_metric(["country"], stats.country_refused)
    yield limited
    yield counter_family(
        "tandem_otp_pumping_guard_trips",
        "Times a number prefix went over its OTP velocity limit and was blocked",
        stats.prefix_trips,
    )
