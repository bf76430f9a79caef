"""Outbound links: state, throttling, window, sessions, their counters; a modem link's signal,
registration, SIM and daily cap."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    StateSetMetricFamily,
)

from gateway.links.base import LinkState
from gateway.links.modem import REGISTRATION_NAMES
from smpp.constants import status_name

if TYPE_CHECKING:
    from gateway.metrics.source import MetricsSource


LINK_STATES = tuple(state.value for state in LinkState)

# Counters every link kind may have (attribute of its stats -> metric), labelled by link.
_LINK_ATTRIBUTES = {
    "tandem_link_submits": "submits",
    "tandem_link_throttled": "throttles",
    "tandem_link_submit_timeouts": "timeouts",
    "tandem_link_reconnects": "reconnects",
    "tandem_link_connect_failures": "connect_failures",
    "tandem_link_bind_failures": "bind_failures",
    "tandem_link_messages_submitted": "messages_submitted",
    "tandem_link_parts_submitted": "parts_submitted",
    "tandem_link_messages_requeued": "messages_requeued",
    "tandem_link_messages_failed": "messages_failed",
    "tandem_link_receipts": "receipts",
    "tandem_link_receipts_unreadable": "unreadable_receipts",
    "tandem_link_mo_messages": "mos",
    "tandem_modem_port_opens": "opens",
    "tandem_modem_resets": "resets",
    "tandem_modem_unresponsive": "unresponsive",
    "tandem_modem_handed_back": "handed_back",
    "tandem_modem_unreadable_pdus": "unreadable",
    "tandem_modem_routed_acknowledged": "routed_acknowledged",
    "tandem_modem_routed_refused": "routed_rejected",
    "tandem_modem_acknowledgements_late": "acknowledgements_late",
}
_LINK_COUNTERS = {
    "tandem_link_submits": "submit_sm sent (segments, throttle retries included)",
    "tandem_link_throttled": "Throttling answers from the carrier (ESME_RTHROTTLED and kin)",
    "tandem_link_submit_timeouts": "Submits with no answer in time",
    "tandem_link_reconnects": "Binds after the first, per session",
    "tandem_link_connect_failures": "Connections to the carrier that failed",
    "tandem_link_bind_failures": "Binds the carrier refused",
    "tandem_link_messages_submitted": "Messages a link submitted",
    "tandem_link_parts_submitted": "Parts a modem link submitted",
    "tandem_link_messages_requeued": "Messages a link handed back as temporary failures",
    "tandem_link_messages_failed": "Messages a link reported as permanent failures",
    "tandem_link_receipts": "Receipts a link received",
    "tandem_link_receipts_unreadable": "Receipts a link could not read",
    "tandem_link_mo_messages": "MOs a link received",
    "tandem_modem_port_opens": "Serial ports opened (reconnects after the first)",
    "tandem_modem_resets": "Silent modems reset",
    "tandem_modem_unresponsive": "Times a modem stopped answering",
    "tandem_modem_handed_back": "Messages a modem did not try (gone, at its cap): re-homed",
    "tandem_modem_unreadable_pdus": "PDUs a modem could not decode: logged in hex, then deleted",
    "tandem_modem_routed_acknowledged": "Routed MOs/reports acknowledged (+CNMA) once kept",
    "tandem_modem_routed_refused": "Routed MOs/reports not kept: RP-ERROR, offered again",
    "tandem_modem_acknowledgements_late": "+CNMA the modem refused or ignored (it gave up)",
}

_MODEM_GAUGES = {
    "tandem_modem_signal_dbm": "A modem's signal strength, dBm",
    "tandem_modem_sends_today": "Parts a modem sent today",
    "tandem_modem_daily_cap": "A modem's daily cap in parts",
}

_REGISTRATIONS = tuple(REGISTRATION_NAMES.values())


def link_families(gateway: MetricsSource) -> Iterator[Metric]:
    up = GaugeMetricFamily("tandem_link_up", "1 while a link has a bound session", labels=["link"])
    state = StateSetMetricFamily("tandem_link_state", "A link's state", labels=["link"])
    throttle = GaugeMetricFamily(
        "tandem_link_throttle_level",
        "How much the carrier throttles a link, 0 (not) to 1 (everything)",
        labels=["link"],
    )
    window = GaugeMetricFamily(
        "tandem_link_window_in_use",
        "Submits sent and not answered yet, over a link's sessions",
        labels=["link"],
    )
    window_size = GaugeMetricFamily(
        "tandem_link_window_size", "A link's window times its sessions", labels=["link"]
    )
    sessions = GaugeMetricFamily(
        "tandem_link_sessions_bound", "Sessions of a link bound now", labels=["link"]
    )
    counters = {
        name: CounterMetricFamily(name, documentation, labels=["link"])
        for name, documentation in _LINK_COUNTERS.items()
    }
    responses = CounterMetricFamily(
        "tandem_smpp_submit_sm_resp",
        "submit_sm_resp received, by link and command_status",
        labels=["link", "status"],
    )
    modem_gauges = {
        name: GaugeMetricFamily(name, documentation, labels=["link"])
        for name, documentation in _MODEM_GAUGES.items()
    }
    registration = StateSetMetricFamily(
        "tandem_modem_registration", "A modem's network registration", labels=["link"]
    )
    sim = GaugeMetricFamily(
        "tandem_modem_sim_ready",
        "1 while a modem's SIM is ready (the reason it is not is in the log and /status)",
        labels=["link"],
    )
    for name in sorted(gateway.links):
        link = gateway.links[name]
        current = link.state
        up.add_metric([name], 1.0 if current is LinkState.UP else 0.0)
        state.add_metric([name], {value: value == current.value for value in LINK_STATES})
        throttle.add_metric([name], link.throttle_level)
        in_flight = getattr(link, "in_flight", None)
        if in_flight is not None:
            window.add_metric([name], in_flight)
        config = getattr(link, "config", None)
        if config is not None and hasattr(config, "window"):
            window_size.add_metric([name], config.window * config.sessions)
        stats: Any = getattr(link, "stats", None)
        if stats is None:
            continue
        if hasattr(stats, "sessions_up"):  # an SMPP link (gateway.links.smpp_client)
            sessions.add_metric([name], stats.sessions_up)
            for status, count in sorted(stats.responses.items()):
                responses.add_metric([name, status_name(status)], count)
        if hasattr(stats, "signal_dbm"):  # a modem link (gateway.links.modem)
            _modem_families(name, stats, modem_gauges, registration, sim)
        for metric_name, attribute in _LINK_ATTRIBUTES.items():
            value = getattr(stats, attribute, None)
            if value is not None:
                counters[metric_name].add_metric([name], value)
    yield up
    yield state
    yield throttle
    yield window
    yield window_size
    yield sessions
    yield from counters.values()
    yield responses
    yield from modem_gauges.values()
    yield registration
    yield sim


def _modem_families(
    name: str,
    stats: Any,
    gauges: dict[str, GaugeMetricFamily],
    registration: StateSetMetricFamily,
    sim: GaugeMetricFamily,
) -> None:
    if stats.signal_dbm is not None:
        gauges["tandem_modem_signal_dbm"].add_metric([name], stats.signal_dbm)
    gauges["tandem_modem_sends_today"].add_metric([name], stats.sends_today)
    if stats.daily_cap is not None:
        gauges["tandem_modem_daily_cap"].add_metric([name], stats.daily_cap)
    # +CREG's words (gateway.links.modem): a bounded set, each shown 0 or 1.
    known = {*_REGISTRATIONS, stats.registration}
    registration.add_metric([name], {value: value == stats.registration for value in known})
    sim.add_metric([name], 1.0 if stats.sim_state == "ready" else 0.0)
