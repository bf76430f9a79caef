"""What a reload changes: the difference between the running config and a new one, as a plan.

Owns `plan_reload(running, new) -> ReloadPlan`: which links are added, removed or changed (a
link's settings compared whole: any difference restarts that link alone), and the config that
takes effect (`ReloadPlan.config`): the new file's reloadable parts, the running values of every
part that only a restart can change (listeners, the store, the data directory, ...), which
`ReloadPlan.needs_restart` names so the log can say so. `ReloadReport` is what a reload did,
for the log and `POST /admin/reload` (`tandem reload`).

A top-level section not named in `RELOADED` is restart-only, so a section added to the config
model is never half-applied by a reload before someone wires it.

Must never: touch the running daemon. `gateway.app.Gateway.reload` applies the plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.config import LinkConfig, TandemConfig

# Top-level sections a reload applies (`Gateway.reload` says how each one reaches its users).
RELOADED = frozenset(
    {
        "numbering",  # operator tables: NumberResolver.swap_tables
        "routes",  # RouteTable, and the routes' queue limits
        "links",  # added, removed, changed: started, drained and stopped, restarted alone
        "accounts",  # the SMPP server's AccountBook (binds of removed accounts are closed)
        "http",  # only the fields in HTTP_RELOADED; the rest of [http] needs a restart
        "egress",  # where callbacks may go
        "senders",  # the sender-id rule intake applies
        "dlr",  # report mode and receipt timeouts (read per use); the hold needs a restart
        "mqtt",  # event sinks: EventSinks.replace
        "keywords",  # the MO keyword matcher (Gateway.keywords)
        "sender_groups",  # which senders share opt-outs (OptOutRegistry.groups)
        "optouts",  # only the fields in PARTLY_RELOADED
        "inbound",  # only the fields in PARTLY_RELOADED
    }
)
# Sections a reload applies only in part: the fields listed follow; a change to any other field
# of the section waits for a restart (listeners, pools, timers set up at start).
PARTLY_RELOADED: dict[str, frozenset[str]] = {
    # Keys' default limits and per-request settings, and the callbacks' settings.
    "http": frozenset(
        {
            "requests_per_second",
            "messages_per_second",
            "max_recipients",
            "key_cache_seconds",
            "default_sender",
            "callback_events",
            "callback_timeout",
            "callback_retry_initial",
            "callback_retry_max_delay",
            "callback_retry_for",
        }
    ),
    # Receipt reporting and timeouts are read per use; the early-receipt hold is sized at start.
    "dlr": frozenset({"dlr_timeout", "report"}),
    # Enforcement on or off and the OTP exemptions; the sync task's period is set at start.
    "optouts": frozenset({"enabled", "otp_exempt"}),
    # Where MOs go and the keyword replies; reassembly and webhook retries are set up at start.
    "inbound": frozenset({"routes", "replies"}),
}


@dataclass(slots=True)
class ReloadPlan:
    config: TandemConfig  # what takes effect
    added: list[LinkConfig] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[LinkConfig] = field(default_factory=list)
    needs_restart: list[str] = field(default_factory=list)  # keys whose new value waits

    @property
    def links_touched(self) -> bool:
        return bool(self.added or self.removed or self.changed)


@dataclass(slots=True)
class ReloadReport:
    """What one reload did; `error` (one line: file, key, reason) when it was refused."""

    ok: bool
    source: str
    error: str | None = None
    changes: list[str] = field(default_factory=list)
    needs_restart: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "source": self.source,
            "error": self.error,
            "changes": self.changes,
            "needs_restart": self.needs_restart,
        }


def plan_reload(running: TandemConfig, new: TandemConfig) -> ReloadPlan:
    keep: dict[str, Any] = {}
    needs_restart: list[str] = []
    for name in TandemConfig.model_fields:
        if name in RELOADED or getattr(running, name) == getattr(new, name):
            continue
        keep[name] = getattr(running, name)
        needs_restart.append(name)
    for section, reloaded in PARTLY_RELOADED.items():
        running_section, new_section = getattr(running, section), getattr(new, section)
        waiting = {
            name: getattr(running_section, name)
            for name in type(new_section).model_fields
            if name not in reloaded and getattr(running_section, name) != getattr(new_section, name)
        }
        if waiting:
            keep[section] = new_section.model_copy(update=waiting)
            needs_restart += [f"{section}.{name}" for name in waiting]
    # model_copy keeps the validated sections as they are (no second validation).
    effective = new.model_copy(update=keep) if keep else new

    old_links = {link.name: link for link in running.links if link.enabled}
    new_links = {link.name: link for link in effective.links if link.enabled}
    plan = ReloadPlan(effective, needs_restart=needs_restart)
    for name, link in new_links.items():
        before = old_links.get(name)
        if before is None:
            plan.added.append(link)
        elif before != link:
            plan.changed.append(link)
    plan.removed = [name for name in old_links if name not in new_links]
    return plan
