"""What the /v1 route modules beside the API (`gateway.http.inbound`, `gateway.http.optouts`)
need of it: the request key holding the authenticated API key, and the host that parses bodies
and reaches the gateway. It sits below `gateway.http.api`, so those modules never import it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, TypeVar

from aiohttp import web
from pydantic import BaseModel

from gateway.keys import ApiKey

if TYPE_CHECKING:
    from gateway.services import GatewayServices

Model = TypeVar("Model", bound=BaseModel)

API_KEY = web.RequestKey("api_key", ApiKey)  # the authenticated key of a /v1 request


class ApiHost(Protocol):
    """The HTTP API as the route modules beside it see it (`gateway.http.api.HttpApi`)."""

    @property
    def gateway(self) -> GatewayServices: ...

    async def parse_body(self, request: web.Request, model: type[Model]) -> Model:
        """The body validated against `model`, or a 422 problem naming the field."""
        ...
