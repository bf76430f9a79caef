"""What an operator asks first: are the links up, who is bound, what waits and for how long,
is traffic flowing and arriving, what went wrong lately.

Owns `OperatorView` (the facts as one JSON-able document: `GET /admin/status`, which `tandem
status` prints, and `GET /status`, the same as an HTML page rendered here, no build step), the
rates over the last minutes (counters sampled every `SAMPLE_SECONDS` while the HTTP API runs),
the recent warnings and errors (a bounded logging handler), and `service_status_line` (systemd's
STATUS= line).

Reads the running `Gateway`'s state and counters; never changes anything, never shows message
content or numbers, and costs the message path one dict increment per final status.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dlr.status import MessageStatus, is_final
from gateway.links.base import LinkState
from gateway.logs import TextFormatter
from gateway.tasks import cancel_and_wait

if TYPE_CHECKING:
    from gateway.messages import Message
    from gateway.services import GatewayServices
    from gateway.store.base import StatusChange

SAMPLE_SECONDS = 10.0
WINDOWS = (60, 300)  # the rates shown: the last minute and the last five minutes
RECENT_ERRORS = 20
# The counters sampled for rates, each a cumulative count since start.
FINAL_COUNTERS = ("delivered", "undeliverable", "expired", "failed", "other_final")
RATE_COUNTERS = ("accepted", "submitted", "receipts", "inbound", *FINAL_COUNTERS)
_FINAL_NAMES = {
    MessageStatus.DELIVERED: "delivered",
    MessageStatus.UNDELIVERABLE: "undeliverable",
    MessageStatus.EXPIRED: "expired",
    MessageStatus.FAILED: "failed",
}


def customer_binds(gateway: GatewayServices) -> list[tuple[str, str, str]]:
    """(system_id, bind kind, address) of every bound customer; [] without an SMPP server."""
    bound = getattr(gateway.smpp_server, "bound", None)
    return list(bound()) if bound is not None else []


def service_status_line(gateway: GatewayServices) -> str:
    """One line for `systemctl status`: links up of links, customer binds, messages queued."""
    links = gateway.links
    up = sum(1 for link in links.values() if link.state is LinkState.UP)
    queued = sum(gateway.queue.size(name) for name in links)
    binds = len(customer_binds(gateway))
    return f"{up}/{len(links)} links up, {binds} customer binds, {queued} queued"


class RecentErrors(logging.Handler):
    """The last `RECENT_ERRORS` warnings and errors, as one line each (API keys blanked)."""

    def __init__(self, size: int = RECENT_ERRORS) -> None:
        super().__init__(logging.WARNING)
        self.lines: deque[dict[str, Any]] = deque(maxlen=size)
        self.setFormatter(TextFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record).partition("\n")[0]  # the line, not the traceback
            text = text.split(": ", 1)[1] if ": " in text else text  # without time and logger
            self.lines.append(
                {
                    "at": record.created,
                    "level": record.levelname,
                    "logger": record.name,
                    "text": text,
                }
            )
        except Exception:  # a log line is never worth an error of its own
            self.handleError(record)


@dataclass(slots=True)
class _Sample:
    at: float
    counts: dict[str, int]


class OperatorView:
    """The facts `GET /status`, `GET /admin/status` and `tandem status` show.

    `start()` subscribes to final statuses and warnings and samples the counters every
    `SAMPLE_SECONDS`; `stop()` undoes it."""

    def __init__(self, gateway: GatewayServices, clock: Any = time.time) -> None:
        self.gateway = gateway
        self.clock = clock
        self.started_at = clock()
        self.finals: Counter[str] = Counter()
        self.errors = RecentErrors()
        self.samples: deque[_Sample] = deque(maxlen=int(max(WINDOWS) / SAMPLE_SECONDS) + 2)
        self._task: asyncio.Task[None] | None = None

    # --- life cycle -------------------------------------------------------------------------

    def start(self) -> None:
        self.gateway.status_listeners.append(self)
        logging.getLogger().addHandler(self.errors)
        self.sample()
        self._task = asyncio.get_running_loop().create_task(
            self._sample_forever(), name="status-samples"
        )

    async def stop(self) -> None:
        with contextlib.suppress(ValueError):
            self.gateway.status_listeners.remove(self)
        logging.getLogger().removeHandler(self.errors)
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None

    async def _sample_forever(self) -> None:
        while True:
            await asyncio.sleep(SAMPLE_SECONDS)
            self.sample()

    # --- StatusListener -----------------------------------------------------------------------

    def message_status_changed(self, message: Message, change: StatusChange) -> None:
        status = message.status
        if is_final(status):
            self.finals[_FINAL_NAMES.get(status, "other_final")] += 1

    # --- the facts ----------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        gateway = self.gateway
        accepted = 0
        http_stats = getattr(gateway.http_api, "stats", None)
        if http_stats is not None:
            accepted += http_stats.messages_accepted
        smpp_stats = getattr(gateway.smpp_server, "stats", None)
        if smpp_stats is not None:
            accepted += smpp_stats.submits_accepted
        counts = {
            "accepted": accepted,
            "submitted": gateway.stats.submitted,
            "receipts": gateway.stats.receipts,
            "inbound": gateway.stats.mo_received,  # MO parts the links handed over
        }
        for name in FINAL_COUNTERS:
            counts[name] = self.finals[name]
        return counts

    def sample(self) -> None:
        self.samples.append(_Sample(self.clock(), self.counts()))

    def rates(self, now: float, counts: dict[str, int]) -> list[dict[str, Any]]:
        """Per window: per-second rates of each counter, and the delivery ratio (delivered of
        all final outcomes) when there were any."""
        windows = []
        for seconds in WINDOWS:
            base = next((s for s in self.samples if s.at >= now - seconds - 1), None)
            if base is None or now - base.at < 1:
                windows.append({"seconds": seconds, "covered": 0.0, "per_second": {}})
                continue
            span = now - base.at
            delta = {name: counts[name] - base.counts.get(name, 0) for name in RATE_COUNTERS}
            finals = sum(delta[name] for name in FINAL_COUNTERS)
            windows.append(
                {
                    "seconds": seconds,
                    "covered": round(span, 1),
                    "per_second": {name: round(delta[name] / span, 2) for name in RATE_COUNTERS},
                    "delivery_ratio": round(delta["delivered"] / finals, 4) if finals else None,
                }
            )
        return windows

    def document(self) -> dict[str, Any]:
        gateway = self.gateway
        now = self.clock()
        backlog = gateway.backlog
        links = []
        for name, link in gateway.links.items():
            oldest = gateway.queue.oldest_ready_at(name)
            links.append(
                {
                    "name": name,
                    "state": link.state.value,
                    "in_flight": getattr(link, "in_flight", None),
                    "queued": gateway.queue.size(name),
                    "oldest_queued_seconds": None if oldest is None else round(now - oldest, 1),
                    "throttle_level": round(link.throttle_level, 3),
                    "queue_limit": backlog.limits.links.get(name),
                    "refused_backlog_full": backlog.stats.by_link[name],
                }
            )
        binds = [
            {"account": account, "bind": kind, "address": address}
            for account, kind, address in customer_binds(gateway)
        ]
        return {
            "generated_at": now,
            "node": gateway.config.node.name,  # several nodes on one database: which one
            "uptime_seconds": round(now - self.started_at, 1),
            "summary": service_status_line(gateway),
            "links": links,
            "binds": binds,
            "rates": self.rates(now, self.counts()),
            "errors": list(self.errors.lines)[::-1],  # newest first
        }


# --- the page -----------------------------------------------------------------------------------

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fff}
h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.1em;margin:1.4em 0 .4em}
table{border-collapse:collapse;min-width:40em}
th,td{border:1px solid #bbb;padding:.3em .7em;text-align:left}
th{background:#e8eef6}td.n{text-align:right;font-variant-numeric:tabular-nums}
.up{background:#c8f0c8}.down{background:#f6c4c4}.starting,.stopped,.capped{background:#f6ecc4}
.muted{color:#666}.ERROR,.CRITICAL{color:#a00}
"""


def _cell(value: Any, numeric: bool = False) -> str:
    text = "-" if value is None else html.escape(str(value))
    return f'<td class="n">{text}</td>' if numeric else f"<td>{text}</td>"


def _when(unix_time: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(unix_time)) + "Z"


def render_page(document: dict[str, Any], refresh_seconds: int = 10) -> str:
    """The operator's page: one HTML document, no script, refreshed every few seconds."""
    rows = []
    for link in document["links"]:
        state = html.escape(link["state"])
        rows.append(
            f'<tr class="link"><td>{html.escape(link["name"])}</td>'
            f'<td class="{state}">{state}</td>'
            + _cell(link["in_flight"], True)
            + _cell(link["queued"], True)
            + _cell(link["oldest_queued_seconds"], True)
            + _cell(link["throttle_level"], True)
            + _cell(link["queue_limit"], True)
            + _cell(link["refused_backlog_full"], True)
            + "</tr>"
        )
    links = (
        '<table id="links"><tr><th>link</th><th>state</th><th>in flight</th><th>queued</th>'
        "<th>oldest queued (s)</th><th>throttle</th><th>queue limit</th>"
        "<th>refused (backlog full)</th></tr>" + "".join(rows) + "</table>"
        if rows
        else '<p class="muted">No links are configured.</p>'
    )
    bind_rows = "".join(
        f"<tr>{_cell(b['account'])}{_cell(b['bind'])}{_cell(b['address'])}</tr>"
        for b in document["binds"]
    )
    binds = (
        '<table id="binds"><tr><th>account</th><th>bind</th><th>address</th></tr>'
        + bind_rows
        + "</table>"
        if bind_rows
        else '<p class="muted">No customer is bound.</p>'
    )
    head = "".join(f"<th>last {w['seconds'] // 60} min</th>" for w in document["rates"])
    rate_rows = []
    for name in RATE_COUNTERS:
        cells = "".join(_cell(w["per_second"].get(name), True) for w in document["rates"])
        rate_rows.append(f"<tr><td>{name.replace('_', ' ')} /s</td>{cells}</tr>")
    ratios = "".join(
        _cell(
            None if w.get("delivery_ratio") is None else f"{w['delivery_ratio'] * 100:.1f} %",
            True,
        )
        for w in document["rates"]
    )
    rate_rows.append(f"<tr><th>delivery ratio</th>{ratios}</tr>")
    rates = f'<table id="rates"><tr><th></th>{head}</tr>{"".join(rate_rows)}</table>'
    error_rows = "".join(
        f'<tr class="{html.escape(e["level"])}">{_cell(_when(e["at"]))}{_cell(e["level"])}'
        f"{_cell(e['logger'])}{_cell(e['text'])}</tr>"
        for e in document["errors"]
    )
    errors = (
        '<table id="errors"><tr><th>at</th><th>level</th><th>from</th><th>what</th></tr>'
        + error_rows
        + "</table>"
        if error_rows
        else '<p class="muted">No warnings or errors since start.</p>'
    )
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        f'<meta http-equiv="refresh" content="{refresh_seconds}">'
        f"<title>Tandem status</title><style>{_STYLE}</style></head><body>"
        "<h1>Tandem status</h1>"
        f'<p class="muted">{html.escape(document["summary"])} · up '
        f"{_duration(document['uptime_seconds'])} · {_when(document['generated_at'])}</p>"
        f"<h2>Links</h2>{links}<h2>Customer binds</h2>{binds}"
        f"<h2>Traffic</h2>{rates}<h2>Recent warnings and errors</h2>{errors}"
        "</body></html>"
    )


def _duration(seconds: float) -> str:
    minutes, second = divmod(int(seconds), 60)
    hours, minute = divmod(minutes, 60)
    days, hour = divmod(hours, 24)
    if days:
        return f"{days}d {hour}h"
    if hours:
        return f"{hours}h {minute}m"
    return f"{minutes}m {second}s"


def render_terminal(document: dict[str, Any]) -> str:
    """The same facts as plain text for `tandem status`."""
    lines = [f"tandem: {document['summary']}, up {_duration(document['uptime_seconds'])}", ""]
    header = ("link", "state", "in flight", "queued", "oldest (s)", "throttle")
    table = [header] + [
        (
            link["name"],
            link["state"],
            _text(link["in_flight"]),
            _text(link["queued"]),
            _text(link["oldest_queued_seconds"]),
            _text(link["throttle_level"]),
        )
        for link in document["links"]
    ]
    lines += _columns(table) if document["links"] else ["no links"]
    lines.append("")
    if document["binds"]:
        lines += _columns(
            [("account", "bind", "address")]
            + [(b["account"], b["bind"], b["address"]) for b in document["binds"]]
        )
    else:
        lines.append("no customer binds")
    lines.append("")
    windows = document["rates"]
    rate_table = [("per second", *(f"last {w['seconds'] // 60} min" for w in windows))]
    for name in RATE_COUNTERS:
        rate_table.append(
            (name.replace("_", " "), *(_text(w["per_second"].get(name)) for w in windows))
        )
    rate_table.append(
        (
            "delivery ratio",
            *(
                "-" if w.get("delivery_ratio") is None else f"{w['delivery_ratio'] * 100:.1f} %"
                for w in windows
            ),
        )
    )
    lines += _columns(rate_table)
    lines.append("")
    if document["errors"]:
        lines.append("recent warnings and errors (newest first):")
        for error in document["errors"]:
            lines.append(f"  {_when(error['at'])} {error['level']} {error['text']}")
    else:
        lines.append("no warnings or errors since start")
    return "\n".join(lines)


def _text(value: Any) -> str:
    return "-" if value is None else str(value)


def _columns(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows
    ]
