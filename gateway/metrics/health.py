"""`GET /healthz` (the process answers and its loop ticks) and `GET /readyz` (the store takes a
write, every route has a link up, the daemon is not stopping)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.links.base import LinkState
from gateway.metrics.loop_lag import LoopLag

if TYPE_CHECKING:
    from gateway.metrics.source import MetricsSource

# A loop that has not ticked for this long is not alive (`/healthz` answers 503).
STALLED_LOOP_SECONDS = 10.0
# `/readyz` probes the store with a real write at most this often.
STORE_PROBE_SECONDS = 1.0
STORE_PROBE_TIMEOUT = 5.0


def health(gateway: MetricsSource, loop_lag: LoopLag | None) -> tuple[bool, dict[str, Any]]:
    """`GET /healthz`: the process answers, and its loop ticks (a stuck loop would not
    answer at all; a loop that ticks rarely is reported stalled)."""
    stalled = loop_lag.stalled_for(time.monotonic()) if loop_lag is not None else 0.0
    alive = stalled < STALLED_LOOP_SECONDS
    document: dict[str, Any] = {"status": "ok" if alive else "stalled"}
    if loop_lag is not None:
        document["loop_lag_seconds"] = round(loop_lag.last, 6)
        document["loop_stalled_seconds"] = round(stalled, 3)
    return alive, document


@dataclass(slots=True)
class StoreProbe:
    """Whether the store takes a write: a real one through the writer (a purge that matches
    nothing), at most once per `STORE_PROBE_SECONDS`, bounded by `STORE_PROBE_TIMEOUT`."""

    checked_at: float = -1e9
    ok: bool = False
    reason: str = "not checked yet"
    _running: asyncio.Task[None] | None = None

    async def check(self, gateway: MetricsSource) -> tuple[bool, str]:
        now = time.monotonic()
        if now - self.checked_at >= STORE_PROBE_SECONDS:
            if self._running is None or self._running.done():
                self._running = asyncio.ensure_future(self._probe(gateway))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._running), STORE_PROBE_TIMEOUT)
            if not self._running.done():
                self.ok, self.reason = (
                    False,
                    f"no commit within {STORE_PROBE_TIMEOUT:g} s",
                )
        return self.ok, self.reason

    async def _probe(self, gateway: MetricsSource) -> None:
        store: Any = gateway.message_store  # every backend keeps idempotency records
        try:
            await store.purge_idempotency(0.0)  # nothing is that old: commits, changes nothing
        except Exception as exc:
            self.ok, self.reason = False, f"{type(exc).__name__}: {exc}"
        else:
            self.ok, self.reason = True, "committed a write"
        self.checked_at = time.monotonic()


async def readiness(gateway: MetricsSource, probe: StoreProbe) -> tuple[bool, dict[str, Any]]:
    """`GET /readyz`: the store takes writes, every route with targets has one of them up,
    and the daemon is not stopping. The body says which link is in what state."""
    store_ok, store_reason = await probe.check(gateway)
    data_dir = gateway.config.data_dir
    free = _free_bytes(data_dir)
    links = {
        name: {
            "state": link.state.value,
            "queued": gateway.queue.size(name),
            "in_flight": getattr(link, "in_flight", None),
        }
        for name, link in sorted(gateway.links.items())
    }
    routes = {}
    routes_ok = True
    for route in gateway.routes.routes:
        targets = [target.link for target in route.targets]
        if not targets:
            continue
        up = [name for name in targets if links.get(name, {}).get("state") == LinkState.UP.value]
        routes[route.name] = {"targets": targets, "up": up, "ready": bool(up)}
        routes_ok = routes_ok and bool(up)
    stopping = gateway.stopping
    ready = store_ok and routes_ok and not stopping
    return ready, {
        "status": "stopping" if stopping else "ready" if ready else "not ready",
        # Which node answers (several behind one load balancer share a database).
        "node": gateway.config.node.name,
        "store": {"writable": store_ok, "detail": store_reason, "free_bytes": free},
        "routes": routes,
        "links": links,
    }


def _free_bytes(path: Path) -> int | None:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None
