"""Local read-only views of the running daemon for its own command line: `GET /admin/links`,
`GET /admin/stages` (per-stage latency histograms, when `stage_times` is on) for benches, and
the operator's status (`gateway.status`): `GET /status` as an HTML page for a browser (which
may give the token as the password of HTTP Basic authentication) and `GET /admin/status` as
JSON for `tandem status`.

Owns the handler that reports each outbound link's live state (up/down, throttle level, queued
and in-flight counts, its queue limit and the messages refused at it), which `tandem route
explain` shows beside the route's targets. The path sits outside `/v1` and needs the admin
token, not an API key (`gateway.http.admin_token`; the API's middleware checks it for every
path under `/admin/`): it is for a sysadmin's shell on the gateway host, not for customers.

Never does: change anything, or expose message content.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from aiohttp import web

from gateway.stages import recording

if TYPE_CHECKING:
    from gateway.services import GatewayServices

JSON_TYPE = "application/json"
LINKS_PATH = "/admin/links"
STAGES_PATH = "/admin/stages"  # per-stage latency histograms (gateway.stages), when recorded
STATUS_PATH = "/admin/status"  # gateway.status as JSON (tandem status)
STATUS_PAGE_PATH = "/status"  # the same as an HTML page; the admin token too


def link_states(gateway: GatewayServices) -> dict[str, object]:
    """The document `GET /admin/links` answers: one entry per running link."""
    backlog = gateway.backlog
    links = []
    for name, link in gateway.links.items():
        links.append(
            {
                "name": name,
                "state": link.state.value,
                "throttle_level": link.throttle_level,
                "in_flight": getattr(link, "in_flight", None),
                "queued": gateway.queue.size(name),
                "queue_limit": backlog.limits.links.get(name),
                "refused_backlog_full": backlog.stats.by_link[name],
            }
        )
    return {"links": links}


def add_admin_routes(app: web.Application, gateway: GatewayServices) -> None:
    async def links(request: web.Request) -> web.Response:
        return web.Response(
            body=json.dumps(link_states(gateway)).encode(), content_type="application/json"
        )

    app.router.add_get(LINKS_PATH, links)

    async def stages(request: web.Request) -> web.Response:
        recorder = recording()
        document = {"recording": recorder is not None, "stages": recorder and recorder.snapshot()}
        return web.Response(body=json.dumps(document).encode(), content_type="application/json")

    app.router.add_get(STAGES_PATH, stages)

    from gateway.status import OperatorView, render_page

    view = OperatorView(gateway)

    async def start_view(app: web.Application) -> None:
        view.start()

    async def stop_view(app: web.Application) -> None:
        await view.stop()

    app.on_startup.append(start_view)
    app.on_cleanup.append(stop_view)

    async def status(request: web.Request) -> web.Response:
        return web.Response(body=json.dumps(view.document()).encode(), content_type=JSON_TYPE)

    async def status_page(request: web.Request) -> web.Response:
        return web.Response(
            text=render_page(view.document()),
            content_type="text/html",
            headers={"Cache-Control": "no-store"},
        )

    app.router.add_get(STATUS_PATH, status)
    app.router.add_get(STATUS_PAGE_PATH, status_page)
