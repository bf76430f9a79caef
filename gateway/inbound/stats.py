"""`InboundStats`: the inbound path's counters (the metrics exporter reads every field)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class InboundStats:
    """Counters a sysadmin graphs; the metrics exporter reads them (`Gateway.inbound.stats`)."""

    parts: int = 0  # parts links handed us
    messages: int = 0  # MOs kept (whole, single, or parts given up on)
    reassembled: int = 0  # of those, joined from several parts
    parts_held: int = 0  # parts kept waiting for the rest of their message
    parts_timed_out: int = 0  # delivered as parts: the rest never arrived
    duplicate_parts: int = 0  # offered again after their message was joined: answered, dropped
    routed: int = 0
    to_accounts: int = 0
    to_webhooks: int = 0
    to_event_sinks: int = 0
    event_sink_missing: int = 0
    account_missing: int = 0  # routed to an account that is not running
    unmatched: int = 0  # kept, claimed by no route or account
    blocked: int = 0  # from a number on the block list: kept, not forwarded
    refused_full: int = 0  # the account's outbox was full: the carrier offers it again
    store_failures: int = 0  # answered with a temporary error: the carrier offers it again
    keyword_opt_outs: int = 0
    keyword_opt_ins: int = 0
    keyword_help: int = 0
    keyword_failures: int = 0
    webhook_attempts: int = 0  # POSTs made (retries included)
    webhook_delivered: int = 0  # answered 2xx
    webhook_retries: int = 0  # failed and scheduled again
    webhook_given_up: int = 0  # failed for good (4xx, refused by [egress], out of time)
    replies: int = 0  # keyword replies accepted by intake
    replies_refused: int = 0
