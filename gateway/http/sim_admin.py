"""`POST /admin/sim/mo`: have the daemon's built-in SMSC simulator send an MO, as a phone would.

The sandbox's way to try inbound traffic (`tandem sim mo --from +447400123456 --to 12345 --text
STOP`): the simulator sends the MO as a deliver_sm over its SMPP session to the carrier link
bound to it, so it takes the whole inbound path (reassembly, storage, keywords, routing). Under
`/admin/`, so the API's middleware asks for the admin token. 409 when the simulator is off or no
link is bound to it yet.

Never does: touch the inbound handler directly (that would skip the link and the store).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from gateway.services import GatewayServices

SIM_MO_PATH = "/admin/sim/mo"


def _answer(status: int, document: dict[str, Any]) -> web.Response:
    return web.Response(
        status=status, body=json.dumps(document).encode(), content_type="application/json"
    )


def add_sim_routes(app: web.Application, gateway: GatewayServices) -> None:
    async def inject_mo(request: web.Request) -> web.Response:
        from gateway.simulator import SmscSimulator

        simulator = gateway.simulator
        if not isinstance(simulator, SmscSimulator):
            return _answer(409, {"error": "the simulator is off ([simulator] enabled)"})
        try:
            body = json.loads(await request.read())
            source = str(body["from"]).strip().removeprefix("+")
            destination = str(body["to"]).strip().removeprefix("+")
            text = str(body["text"])
        except (ValueError, KeyError, TypeError):
            return _answer(400, {"error": 'the body is {"from": ..., "to": ..., "text": ...}'})
        if not (source and destination and text):
            return _answer(400, {"error": "from, to and text must not be empty"})
        try:
            simulator.inject_mo(source, destination, text)
        except RuntimeError as exc:  # no link bound to it yet
            return _answer(409, {"error": str(exc)})
        return _answer(202, {"queued": True, "from": source, "to": destination, "text": text})

    app.router.add_post(SIM_MO_PATH, inject_mo)
