"""Support for the SMPP server tests (no tests here): a whole Tandem - the real Gateway (SQLite
store in a temp dir), its SMPP carrier link to the built-in simulator and the customer SMPP
server, all on 127.0.0.1."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.accounts import hash_password
from gateway.app import Gateway
from gateway.config import SimulatorConfig, TandemConfig
from gateway.simulator import SmscSimulator
from gateway.smpp_server import CustomerSmppServer, ServerSettings, start_customer_server
from tests.waiting import wait_for

PASSWORD = "secret1"
PASSWORD_HASH = hash_password(PASSWORD)  # argon2 is slow: hash once per test session
DESTINATION = "447911123456"  # a valid UK mobile number, as SMPP carries it (TON 1)


def account(system_id: str, **overrides: Any) -> dict[str, Any]:
    return {"system_id": system_id, "password_hash": PASSWORD_HASH, **overrides}


@dataclass
class Tandem:
    gateway: Gateway
    server: CustomerSmppServer
    simulator: SmscSimulator

    @property
    def port(self) -> int:
        assert self.server.port is not None
        return self.server.port


async def start_tandem(
    tmp_path: Path,
    accounts: list[dict[str, Any]],
    *,
    settings: ServerSettings | None = None,
    dlr_delay: float = 0.0,
    smpp_server: dict[str, Any] | None = None,
    routes: list[dict[str, Any]] | None = None,
    extra: dict[str, Any] | None = None,
    link: dict[str, Any] | None = None,
) -> Tandem:
    simulator = SmscSimulator(
        SimulatorConfig(enabled=True, host="127.0.0.1", port=0, dlr_delay=dlr_delay),
        keep_received=True,
    )
    await simulator.start()
    config = TandemConfig.model_validate(
        {
            "data_dir": str(tmp_path),
            # Started below by the test itself (explicit settings); HTTP is not needed here.
            "smpp_server": {
                "enabled": False,
                "host": "127.0.0.1",
                "port": 0,
                **(smpp_server or {}),
            },
            "http": {"enabled": False},
            "links": [
                {
                    "type": "smpp",
                    "name": "sim",
                    "host": "127.0.0.1",
                    "port": simulator.port,
                    "system_id": "tandem",
                    "window": 50,
                    "enquire_link_interval": 30.0,
                    "submit_id_format": "hex",
                    "dlr_id_format": "hex",
                    **(link or {}),
                }
            ],
            "routes": routes or [{"name": "all", "priority": 100, "targets": ["sim"]}],
            "accounts": accounts,
            # MOs are reassembled at the gateway; tests that hurry the server hurry it too.
            "inbound": {
                "reassembly_timeout": settings.reassembly_timeout if settings is not None else 10.0
            },
            **(extra or {}),
        }
    )
    gateway = Gateway(config)
    await gateway.start()
    if settings is None:
        server = await start_customer_server(gateway)
    else:
        server = CustomerSmppServer(gateway, settings=settings)
        await server.start()
        gateway.add_stop_hook(server.stop)
    await wait_for(lambda: bool(simulator.bound_system_ids), what="the link to bind")
    return Tandem(gateway, server, simulator)


async def stop_tandem(tandem: Tandem) -> None:
    await tandem.gateway.stop()
    await tandem.simulator.stop()
