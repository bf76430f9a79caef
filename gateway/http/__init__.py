"""The HTTP API channel: `/v1/messages`, `/v1/otp`, `/openapi.json`, `/docs`.

`start_http_api(gateway)` starts it on the daemon's loop (the daemon calls it when `[http]
enabled` is true); `gateway.http.api.HttpApi` is the application, `gateway.http.models` the
bodies, `gateway.http.openapi` the document, `gateway.http.cli` the `tandem send|otp|keys`
commands. Imports are lazy so the command line stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.http.api import HttpApi, start_http_api

__all__ = ["HttpApi", "start_http_api"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from gateway.http import api

        return getattr(api, name)
    raise AttributeError(name)
