"""The inbound (MO) path after reassembly: where MOs went, keywords, webhooks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, Metric

if TYPE_CHECKING:
    from gateway.metrics.source import MetricsSource


# The inbound path's counters (`gateway.inbound.stats.InboundStats`, every field): field ->
# (family, label value); a family's label name and help are in `_INBOUND_FAMILIES`.
_INBOUND_FIELDS: dict[str, tuple[str, str | None]] = {
    "parts": ("tandem_inbound_parts", None),
    "messages": ("tandem_inbound_messages", None),
    "reassembled": ("tandem_inbound_reassembled", None),
    "parts_held": ("tandem_inbound_parts_held", None),
    "parts_timed_out": ("tandem_inbound_parts_timed_out", None),
    "routed": ("tandem_inbound_routed", None),
    "to_accounts": ("tandem_inbound_forwarded", "account"),
    "to_webhooks": ("tandem_inbound_forwarded", "webhook"),
    "to_event_sinks": ("tandem_inbound_forwarded", "event_sink"),
    "unmatched": ("tandem_inbound_not_forwarded", "unmatched"),
    "blocked": ("tandem_inbound_not_forwarded", "blocked"),
    "account_missing": ("tandem_inbound_not_forwarded", "account_missing"),
    "event_sink_missing": ("tandem_inbound_not_forwarded", "event_sink_missing"),
    "refused_full": ("tandem_inbound_not_forwarded", "refused_full"),
    "store_failures": ("tandem_inbound_not_forwarded", "store_failure"),
    "duplicate_parts": ("tandem_inbound_not_forwarded", "duplicate_part"),
    "keyword_opt_outs": ("tandem_inbound_keywords", "opt_out"),
    "keyword_opt_ins": ("tandem_inbound_keywords", "opt_in"),
    "keyword_help": ("tandem_inbound_keywords", "help"),
    "keyword_failures": ("tandem_inbound_keywords", "failure"),
    "webhook_attempts": ("tandem_inbound_webhooks", "attempt"),
    "webhook_delivered": ("tandem_inbound_webhooks", "delivered"),
    "webhook_retries": ("tandem_inbound_webhooks", "retried"),
    "webhook_given_up": ("tandem_inbound_webhooks", "given_up"),
    "replies": ("tandem_inbound_keyword_replies", "accepted"),
    "replies_refused": ("tandem_inbound_keyword_replies", "refused"),
}
_INBOUND_FAMILIES: dict[str, tuple[str, str | None]] = {
    "tandem_inbound_parts": ("MO parts links handed to the gateway", None),
    "tandem_inbound_messages": (
        "MOs kept (whole, single, or the parts of one given up on)",
        None,
    ),
    "tandem_inbound_reassembled": ("MOs joined from several parts", None),
    "tandem_inbound_parts_held": ("Parts kept waiting for the rest of their MO", None),
    "tandem_inbound_parts_timed_out": (
        "Parts delivered as they were: the rest never came",
        None,
    ),
    "tandem_inbound_routed": ("MOs an inbound route or account claimed", None),
    "tandem_inbound_forwarded": ("MOs forwarded, by destination kind", "destination"),
    "tandem_inbound_not_forwarded": (
        "MOs not forwarded, by reason: unmatched, blocked, account_missing, event_sink_missing "
        "(kept); refused_full, store_failure (the carrier offers them again); duplicate_part "
        "(a part resent after its MO was joined: answered, dropped)",
        "reason",
    ),
    "tandem_inbound_keywords": (
        "Keyword MOs by class, and failures to act on one",
        "keyword",
    ),
    "tandem_inbound_webhooks": ("Inbound webhook POSTs, by outcome", "outcome"),
    "tandem_inbound_keyword_replies": ("Keyword replies, by outcome", "outcome"),
}


def inbound_families(gateway: MetricsSource) -> Iterator[Metric]:
    """The inbound handler's counters."""
    inbound: Any = getattr(gateway, "inbound", None)
    if inbound is not None:
        yield from inbound_stats_families(inbound.stats)


def inbound_stats_families(stats: Any) -> Iterator[Metric]:
    """The inbound path: MOs after reassembly, where they went, keywords, webhooks."""
    families: dict[str, CounterMetricFamily] = {}
    for name, (documentation, label) in _INBOUND_FAMILIES.items():
        labels = [label] if label is not None else None
        families[name] = CounterMetricFamily(name, documentation, labels=labels)
    for attribute, (name, value) in _INBOUND_FIELDS.items():
        count = getattr(stats, attribute, None)
        if count is None:
            continue
        families[name].add_metric([value] if value is not None else [], count)
    yield from families.values()
