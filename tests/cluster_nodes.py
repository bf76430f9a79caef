"""Nodes of one cluster for the cluster tests: in-process Gateways on one PostgreSQL schema
(writers on threads, short leases), each with one SMPP link to one SMSC simulator; `Cluster`
starts them and stops them all at the end. Skips, saying why, where PostgreSQL is absent.

Imported by `test_cluster_budgets` and `test_cluster_nodes` (holds no tests).
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.app import Gateway
from gateway.config import SimulatorConfig, TandemConfig
from gateway.links.smpp_client import SmppLink
from gateway.simulator import SmscSimulator
from tests.store_backends import POSTGRES_DSN, StoreFactory, store_factory
from tests.waiting import WAIT

LINK = "carrier"
LEASE = 1.5


def node_config(
    data_dir: Path,
    node: str,
    schema: str,
    port: int,
    sections: dict[str, Any] | None = None,
    **link: Any,
) -> dict[str, Any]:
    """Node `node`'s config; `sections` replace whole sections (http, smpp_server, ...)."""
    return {
        "data_dir": str(data_dir),
        "store": {
            "backend": "postgresql",
            "dsn": POSTGRES_DSN,
            "database_schema": schema,
            "lease_seconds": LEASE,
            "writer": "thread",
            "pool_size": 3,
        },
        "node": {"name": node},
        "smpp_server": {"enabled": False},
        "http": {"enabled": False},
        "links": [
            {
                "type": "smpp",
                "name": LINK,
                "host": "127.0.0.1",
                "port": port,
                "system_id": "tandem",
                "window": 20,
                "reconnect_initial": 0.1,
                "reconnect_max": 0.5,
                **link,
            }
        ],
        "routes": [{"name": "all", "priority": 100, "targets": [LINK]}],
        **(sections or {}),
    }


class Cluster:
    """Nodes of one schema, started and stopped by the test; all stopped at the end."""

    def __init__(self, directory: Path, factory: StoreFactory, simulator: SmscSimulator) -> None:
        self.directory, self.simulator = directory, simulator
        self.schema = factory.schema("budgets")
        self.nodes: dict[str, Gateway] = {}

    async def start(
        self, node: str, sections: dict[str, Any] | None = None, **link: Any
    ) -> Gateway:
        data_dir = self.directory / node
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        first = self.directory / "a" / "store.key"
        if first.exists() and node != "a":  # every node seals with one key
            shutil.copy2(first, data_dir / "store.key")
        config = TandemConfig.model_validate(
            node_config(data_dir, node, self.schema, self.simulator.port, sections, **link)
        )
        gateway = Gateway(config)
        await gateway.start()
        self.nodes[node] = gateway
        return gateway

    async def stop(self) -> None:
        for gateway in self.nodes.values():
            if not gateway.stopping:
                await gateway.stop()


def binds(gateway: Gateway) -> int:
    link = gateway.links[LINK]
    assert isinstance(link, SmppLink)
    return link.stats.sessions_up


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async for factory in store_factory("postgresql", tmp_path):
        settings = SimulatorConfig(enabled=True, host="127.0.0.1", port=0, dlr_delay=0.0)
        async with SmscSimulator(settings) as simulator:
            nodes = Cluster(tmp_path, factory, simulator)
            try:
                yield nodes
            finally:
                # A stop that never ends (seen once in a full run, in the teardown of
                # test_cluster_nodes' receipt hand-over) fails the test instead of hanging the
                # whole suite.
                await asyncio.wait_for(nodes.stop(), WAIT)
