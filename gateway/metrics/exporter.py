"""`MetricsExporter`: ties the collector, the loop lag, the store probe and the metrics token to
the daemon, serves `/metrics`, `/healthz` and `/readyz` on the HTTP API's port (`add_routes`)
and on a listener of its own when `[metrics] listen` is set."""

from __future__ import annotations

import hmac
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client.core import CollectorRegistry
from prometheus_client.exposition import generate_latest

from gateway.metrics.collector import TandemCollector
from gateway.metrics.health import StoreProbe, health, readiness
from gateway.metrics.loop_lag import LoopLag

if TYPE_CHECKING:
    from aiohttp import web

    from gateway.metrics.source import MetricsSource

log = logging.getLogger("tandem.metrics")


# The text format every Prometheus 2.x reads (newer clients say version=1.0.0 for the same
# body with escaped names; ours need no escaping).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
METRICS_PATH = "/metrics"
HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
TOKEN_FILE = "metrics.token"


class MetricsExporter:
    """The daemon's exporter: registry, collector, loop lag, store probe, token, and the
    listener of its own when `[metrics] listen` is set."""

    def __init__(self, gateway: MetricsSource) -> None:
        self.gateway = gateway
        self.config = gateway.config.metrics
        self.loop_lag = LoopLag(self.config.loop_lag_interval)
        self.collector = TandemCollector(gateway, self.loop_lag)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)
        self.probe = StoreProbe()
        self.token = load_or_create_token(metrics_token_path(gateway))
        self._runner: web.AppRunner | None = None
        self.port: int | None = None  # of the listener of its own, once started

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def token_matches(self, authorization: str) -> bool:
        scheme, _, value = authorization.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            value.strip().encode(), self.token.encode()
        )

    async def start(self) -> None:
        self.loop_lag.start()
        address = self.config.listen_address
        if address is not None:
            await self._listen(*address)

    async def stop(self) -> None:
        await self.loop_lag.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _listen(self, host: str, port: int) -> None:
        from aiohttp import web

        app = web.Application()
        add_routes(app, self, token=False)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise OSError(
                exc.errno,
                f"[metrics] cannot listen on {host}:{port}: {exc.strerror or exc}",
            ) from None
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        log.info("metrics on http://%s:%d%s", host, self.port, METRICS_PATH)


def metrics_token_path(gateway: MetricsSource) -> Path:
    configured = gateway.config.metrics.token_file
    return configured if configured is not None else gateway.config.data_dir / TOKEN_FILE


def load_or_create_token(path: Path) -> str:
    """The metrics token in `path`, written (mode 0600) on first start (as the admin token)."""
    from gateway.http.admin_token import load_or_create_admin_token

    return load_or_create_admin_token(path)


def add_routes(app: web.Application, exporter: MetricsExporter, *, token: bool) -> None:
    """`/metrics` (with the metrics token when `token`; absent when `[metrics] enabled` is
    false), `/healthz` and `/readyz` (never a token)."""
    from aiohttp import web

    async def metrics(request: web.Request) -> web.Response:
        if token and not exporter.token_matches(request.headers.get("Authorization", "")):
            return web.json_response(
                {
                    "type": "about:blank",
                    "title": "unauthorized",
                    "status": 401,
                    "detail": "GET /metrics needs 'Authorization: Bearer <token>' with the "
                    "token in [metrics] token_file (by default <data_dir>/metrics.token).",
                },
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="tandem-metrics"'},
                content_type="application/problem+json",
            )
        body = exporter.render()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    async def healthz(request: web.Request) -> web.Response:
        alive, document = health(exporter.gateway, exporter.loop_lag)
        return web.json_response(document, status=200 if alive else 503)

    async def readyz(request: web.Request) -> web.Response:
        ready, document = await readiness(exporter.gateway, exporter.probe)
        return web.json_response(document, status=200 if ready else 503)

    if exporter.config.enabled:
        app.router.add_get(METRICS_PATH, metrics)
    app.router.add_get(HEALTH_PATH, healthz)
    app.router.add_get(READY_PATH, readyz)


async def start_metrics(gateway: MetricsSource) -> MetricsExporter:
    exporter = MetricsExporter(gateway)
    gateway.add_stop_hook(exporter.stop)
    await exporter.start()
    return exporter
