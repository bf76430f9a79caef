"""Opt-outs across a cluster at once: two Gateways (nodes "a" and "b") on one PostgreSQL
schema. A STOP acknowledged by node a stops a send posted to node b right after it (the
store announces every change at its commit and each node applies it to its list in memory,
`OptOutRegistry.hear`), and a START there lets the next send through; the periodic sync
(`[optouts] sync_seconds`, 60 s here) cannot be what did it. Skips, saying why, where
PostgreSQL is absent."""

from __future__ import annotations

import time
from typing import Any

import aiohttp

from gateway.app import Gateway
from gateway.http.api import HttpApi
from gateway.keys import MintedKey, mint_key
from tests.cluster_nodes import Cluster, cluster
from tests.waiting import wait_for

__all__ = ["cluster"]  # the fixture

SECTIONS: dict[str, Any] = {
    "http": {"host": "127.0.0.1", "port": 0},
    "optouts": {"sync_seconds": 60.0},
}
ROUNDS = 10


def url_of(gateway: Gateway) -> str:
    api = gateway.http_api
    assert isinstance(api, HttpApi)
    return api.url


async def test_a_stop_on_one_node_refuses_a_send_posted_to_the_other_right_after(
    cluster: Cluster,
) -> None:
    # A carrier bind each (b sends what it accepts itself).
    a = await cluster.start("a", SECTIONS, sessions=2)
    b = await cluster.start("b", SECTIONS, sessions=2)
    minted: MintedKey = mint_key("acme", now=time.time(), scopes=["messages", "optouts"])
    await a.message_store.save_api_key(minted.record)  # type: ignore[attr-defined]
    headers = {"Authorization": f"Bearer {minted.secret}"}
    node_a, node_b = url_of(a), url_of(b)
    sent_after_start: list[str] = []
    async with aiohttp.ClientSession(headers=headers) as session:

        async def call(method: str, url: str, body: Any = None) -> tuple[int, Any]:
            async with session.request(method, url, json=body) as answer:
                return answer.status, await answer.json()

        for n in range(ROUNDS):
            number = f"+4479111235{n:02d}"
            send = {"to": number, "from": "Shop", "text": f"round {n}"}
            status, body = await call("PUT", f"{node_a}/v1/optouts/{number}", {"sender": "Shop"})
            assert status == 201, body
            status, problem = await call("POST", f"{node_b}/v1/messages", send)  # at once
            assert status == 403 and problem["code"] == "recipient_opted_out", (n, problem)

            status, body = await call("DELETE", f"{node_a}/v1/optouts/{number}")
            assert status == 200, body
            status, accepted = await call("POST", f"{node_b}/v1/messages", send)  # at once
            assert status == 202, (n, accepted)
            sent_after_start.append(number.lstrip("+"))
    await wait_for(
        lambda: (
            sorted(s.destination_addr for s in cluster.simulator.received)
            == sorted(sent_after_start)
        ),
        "the sends after each START at the carrier",
    )
    assert b.optout_stats.refused_http == ROUNDS
    assert b.optout_stats.heard_changes == 2 * ROUNDS and b.optout_stats.synced_changes == 0
