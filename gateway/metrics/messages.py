"""Messages on their way: accepted, refused, submitted, final; queues and back-pressure;
receipts and MOs from carriers; how long messages take (accept to final, per stage)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from gateway import stages
from gateway.metrics.families import (
    by_channel_then_route,
    counter_by_labels,
    counter_family,
    histogram_family,
)

if TYPE_CHECKING:
    from gateway.metrics.source import MetricsSource


# The stage histograms exported under a name of their own; the others as
# tandem_stage_duration_seconds{stage=...}.
NAMED_STAGES = {
    "submit_round_trip": (
        "tandem_submit_response_seconds",
        "submit_sm written to its submit_sm_resp read, per segment",
    ),
    "writer_batch": (
        "tandem_store_writer_batch_seconds",
        "a batch of store writes sent to the writer until its commit is answered",
    ),
}


def message_families(gateway: MetricsSource) -> Iterator[Metric]:
    intake = gateway.intake.stats
    accepted = CounterMetricFamily(
        "tandem_messages_accepted",
        "Messages stored and acknowledged, by channel and route",
        labels=["channel", "route"],
    )
    for (channel, route), count in sorted(intake.accepted.items(), key=by_channel_then_route):
        accepted.add_metric([channel, route or ""], count)
    yield accepted
    segments = CounterMetricFamily(
        "tandem_message_segments_accepted",
        "SMS parts of the messages accepted, by channel and route",
        labels=["channel", "route"],
    )
    for (channel, route), count in sorted(intake.segments.items(), key=by_channel_then_route):
        segments.add_metric([channel, route or ""], count)
    yield segments
    yield counter_by_labels(
        "tandem_messages_refused",
        "Messages refused at intake (nothing stored), by channel and reason",
        ["channel", "reason"],
        intake.refused,
    )
    stats = gateway.stats
    yield counter_by_labels(
        "tandem_messages_submitted",
        "Messages whose every part the carrier accepted (submit_sm_resp OK), by channel and link",
        ["channel", "link"],
        stats.submitted_by,
    )
    yield counter_by_labels(
        "tandem_messages_final",
        "Messages that reached a final status (delivered, undeliverable, expired, failed, "
        "rejected, deleted, unknown), by channel, link (empty: never sent) and status",
        ["channel", "link", "status"],
        stats.finals,
    )
    yield counter_family(
        "tandem_message_retries",
        "Temporary send failures requeued",
        stats.temporary_failures,
    )
    yield counter_family(
        "tandem_message_failovers",
        "Messages a link refused with a route-level status, offered to the next target",
        stats.failovers,
    )
    yield counter_family(
        "tandem_message_expired_in_queue",
        "Messages whose validity ended before they were sent",
        stats.expired,
    )
    queued = GaugeMetricFamily(
        "tandem_queue_messages", "Messages waiting to be sent, by link", labels=["link"]
    )
    oldest = GaugeMetricFamily(
        "tandem_queue_oldest_age_seconds",
        "Age of the oldest message ready to go and waiting, by link (0: none waits)",
        labels=["link"],
    )
    limit = GaugeMetricFamily(
        "tandem_queue_limit_messages",
        "The queue_limit of a link (back-pressure past it)",
        labels=["link"],
    )
    queue, now = gateway.queue, time.time()
    limits = gateway.backlog.limits
    for name in sorted(gateway.links):
        queued.add_metric([name], queue.size(name))
        since = queue.oldest_ready_at(name)
        oldest.add_metric([name], 0.0 if since is None else max(now - since, 0.0))
        if name in limits.links:
            limit.add_metric([name], limits.links[name])
    yield queued
    yield oldest
    yield limit
    backlog = gateway.backlog.stats
    yield counter_by_labels(
        "tandem_backlog_refused_link",
        "Messages refused because a link's queue was at its limit, by link",
        ["link"],
        backlog.by_link,
    )
    yield counter_by_labels(
        "tandem_backlog_refused_route",
        "Messages refused because a route's queue was at its limit, by route",
        ["route"],
        backlog.by_route,
    )


def receipt_families(gateway: MetricsSource) -> Iterator[Metric]:
    stats = gateway.stats
    received = CounterMetricFamily(
        "tandem_receipts",
        "Delivery receipts from carriers, by outcome: received (all), correlated (applied "
        "to their message), held (waited for their submit result), orphaned (matched no "
        "message in time), unparseable",
        labels=["outcome"],
    )
    received.add_metric(["received"], stats.receipts)
    received.add_metric(["correlated"], stats.receipts_correlated)
    received.add_metric(["held"], stats.receipts_held)
    received.add_metric(["orphaned"], stats.receipts_unmatched)
    received.add_metric(["unparseable"], stats.receipts_unparseable)
    yield received
    yield GaugeMetricFamily(
        "tandem_receipts_held",
        "Receipts waiting now for their submit result (the early-receipt hold)",
        value=gateway.correlator.stats.held,
    )
    yield counter_family(
        "tandem_receipt_timeouts",
        "Segments given up on: no final receipt within the DLR timeout (unknown/expired)",
        stats.dlr_timeouts,
    )
    mos = CounterMetricFamily(
        "tandem_mo_messages",
        "Mobile-originated messages from carriers, by outcome",
        labels=["outcome"],
    )
    mos.add_metric(["received"], stats.mo_received)
    mos.add_metric(["unclaimed"], gateway.inbound.stats.unmatched)
    yield mos


def latency_families(gateway: MetricsSource) -> Iterator[Metric]:
    histograms = gateway.stats.accept_to_final
    family = histogram_family(
        "tandem_message_accept_to_final_seconds",
        "From a message's acceptance to its final status, by link",
        [((link,), histograms[link]) for link in sorted(histograms)],
    )
    if family is not None:
        yield family
    recorder = stages.recording()
    if recorder is None:
        return
    for stage, (name, documentation) in NAMED_STAGES.items():
        named = histogram_family(name, documentation, [((), recorder.histograms[stage])])
        if named is not None:
            yield named
    rest = [
        ((stage,), recorder.histograms[stage])
        for stage in stages.STAGES
        if stage not in NAMED_STAGES and (recorder.marks or stage not in stages.MARKED_STAGES)
    ]
    family = histogram_family(
        "tandem_stage_duration_seconds",
        "Where messages wait, per stage of their way (gateway.stages)",
        rest,
    )
    if family is not None:
        yield family
