"""Building Prometheus families: the helpers every area's collector shares."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeVar

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

from gateway import stages

# A sample's label values: a tuple of them, or one string for a family with one label.
LabelValues = TypeVar("LabelValues", bound=tuple[str, ...] | str)


def histogram_family(
    name: str,
    documentation: str,
    labels: Iterable[tuple[tuple[str, ...], stages.Histogram]],
) -> HistogramMetricFamily | None:
    """One family from `gateway.stages` histograms (their buckets are Prometheus's `le`)."""
    family: HistogramMetricFamily | None = None
    for values, histogram in labels:
        if family is None:
            label_names = _HISTOGRAM_LABELS.get(name, [])
            family = HistogramMetricFamily(name, documentation, labels=label_names)
        cumulative, running = [], 0
        for le, in_bucket in zip(_LE, histogram.counts):
            running += in_bucket
            cumulative.append((le, float(running)))
        family.add_metric(list(values), cumulative, sum_value=histogram.total)
    return family


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(f"{bound:.6g}"))


_LE = tuple(_le(bound) for bound in (*stages.BOUNDS, float("inf")))  # the buckets' `le`, once


_HISTOGRAM_LABELS: dict[str, list[str]] = {
    "tandem_stage_duration_seconds": ["stage"],
    "tandem_message_accept_to_final_seconds": ["link"],
}


def counter_family(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


def counter_by_labels(
    name: str,
    documentation: str,
    labels: list[str],
    counts: Mapping[LabelValues, int],
) -> CounterMetricFamily:
    """A counter family with one sample per key of `counts`, in sorted order: a key is the
    label values (a tuple, or a string for one label)."""
    family = CounterMetricFamily(name, documentation, labels=labels)
    for key, count in sorted(counts.items()):
        family.add_metric(list(key) if isinstance(key, tuple) else [key], count)
    return family


def by_channel_then_route(item: tuple[tuple[str, str | None], int]) -> tuple[str, str]:
    (channel, route), _ = item
    return channel, route or ""
