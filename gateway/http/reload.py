"""`POST /admin/reload`: reload the running daemon's config and answer what it did.

The same as SIGHUP (`Gateway.reload` of the file the daemon was started with), but the caller
learns the outcome: `tandem reload` prints the changes, or the reason a config was refused (file,
key, reason) and exits 1. Under `/admin/`, so the API's middleware asks for the admin token.

Never does: read a config path from the request (only the daemon's own file is reloaded).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from gateway.services import GatewayServices

RELOAD_PATH = "/admin/reload"


def add_reload_route(app: web.Application, gateway: GatewayServices) -> None:
    async def reload(request: web.Request) -> web.Response:
        report = await gateway.reload_report(gateway.config_path)
        return web.Response(
            status=200 if report.ok else 422,
            body=json.dumps(report.as_dict()).encode(),
            content_type="application/json",
        )

    app.router.add_post(RELOAD_PATH, reload)
