"""A running daemon for the HTTP tests: the real `Gateway` with its built-in SMSC simulator,
the HTTP API on a free port, a store in a temporary directory, and an API key.

Imported by the `test_http*`, `test_otp*` and `test_callbacks*` modules (it holds no tests).
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from gateway.app import Gateway
from gateway.config import TandemConfig
from gateway.http.api import HttpApi
from gateway.keys import MintedKey, create_key
from gateway.simulator import SmscSimulator
from gateway.simulator_records import ReceivedSubmit
from tests.waiting import wait_for

# The default [egress] refuses internal addresses; the tests' callback receivers listen on
# 127.0.0.1 at free ports, so test configs allow exactly that.
LOCAL_RECEIVERS: dict[str, Any] = {"allow": ["127.0.0.1"], "ports": ["1024-65535"]}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def daemon_config(
    tmp_path: Path,
    *,
    http: dict[str, Any] | None = None,
    otp: dict[str, Any] | None = None,
    simulator: dict[str, Any] | None = None,
    routes: list[dict[str, Any]] | None = None,
    egress: dict[str, Any] | None = None,
    smpp_server: dict[str, Any] | None = None,
    accounts: list[dict[str, Any]] | None = None,
    extra: dict[str, Any] | None = None,
) -> TandemConfig:
    smsc_port = free_port()
    return TandemConfig.model_validate(
        {
            "data_dir": str(tmp_path / "data"),
            "smpp_server": smpp_server or {"enabled": False, "port": 0},
            "accounts": accounts or [],
            "http": {"host": "127.0.0.1", "port": 0, **(http or {})},
            "otp": otp or {},
            "egress": LOCAL_RECEIVERS if egress is None else egress,
            "simulator": {
                "enabled": True,
                "port": smsc_port,
                "dlr_delay": 0.0,
                **(simulator or {}),
            },
            "links": [
                {
                    "type": "smpp",
                    "name": "sim",
                    "host": "127.0.0.1",
                    "port": smsc_port,
                    "system_id": "tandem",
                    "password": "secret",
                    "window": 50,
                    "submit_id_format": "hex",
                    "dlr_id_format": "hex",
                    "reconnect_initial": 0.05,
                    "reconnect_max": 0.2,
                }
            ],
            "routes": routes or [{"name": "everything", "priority": 100, "targets": ["sim"]}],
            **(extra or {}),
        }
    )


@dataclass
class Daemon:
    gateway: Gateway
    api: HttpApi
    session: aiohttp.ClientSession
    key: MintedKey

    @property
    def url(self) -> str:
        return self.api.url

    def auth(self, key: MintedKey | str | None = None) -> dict[str, str]:
        secret = self.key.secret if key is None else key if isinstance(key, str) else key.secret
        return {"Authorization": f"Bearer {secret}"}

    async def new_key(self, name: str, **settings: Any) -> MintedKey:
        return await create_key(self.gateway.message_store, name, **settings)

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        key: MintedKey | str | None = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> tuple[int, Any, Any]:
        """(status, parsed JSON body, response headers)."""
        all_headers = {**self.auth(key), **(headers or {})}
        kwargs: dict[str, Any] = {"headers": all_headers}
        if raw is not None:
            kwargs["data"] = raw
        elif body is not None:
            kwargs["json"] = body
        async with self.session.request(method, self.url + path, **kwargs) as response:
            text = await response.read()
            document = None
            if text and response.content_type.endswith("json"):
                document = await response.json(content_type=None)
            return response.status, document, response.headers

    async def received_by_handset(self, message_id: str) -> ReceivedSubmit:
        """The submit_sm the SMSC simulator got for our message (matched by carrier id)."""
        simulator = self.gateway.simulator
        assert isinstance(simulator, SmscSimulator)
        found: list[ReceivedSubmit] = []

        async def arrived() -> bool:
            record = await self.gateway.message_store.get(message_id)
            carrier_ids = {
                int(s.carrier_id) for s in (record.segments if record else []) if s.carrier_id
            }
            found[:] = [r for r in simulator.received if int(r.message_id, 16) in carrier_ids]
            return bool(found)

        await wait_for(arrived, "the submit_sm at the SMSC simulator")
        return found[0]

    async def message_status(self, message_id: str) -> str:
        status, document, _ = await self.call("GET", f"/v1/messages/{message_id}")
        assert status == 200, document
        return str(document["status"])


@asynccontextmanager
async def running_daemon(
    tmp_path: Path, *, key_settings: dict[str, Any] | None = None, **config: Any
) -> AsyncIterator[Daemon]:
    gateway = Gateway(daemon_config(tmp_path, **config))
    await gateway.start()
    simulator = gateway.simulator
    assert isinstance(simulator, SmscSimulator)
    simulator.keep_received = True  # tests read what the handset would have received
    try:
        api = gateway.http_api
        assert isinstance(api, HttpApi)
        key = await create_key(gateway.message_store, "acme", **(key_settings or {}))
        async with aiohttp.ClientSession() as session:
            yield Daemon(gateway, api, session, key)
    finally:
        await gateway.stop()
