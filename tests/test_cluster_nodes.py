"""What one node of a cluster does binds the others: two Gateways (nodes "a" and "b") on one
PostgreSQL schema. An API key's rate limits hold across both nodes' HTTP APIs (a client
alternating between them gets the key's rate, not twice it). Skips, saying why, where
PostgreSQL is absent."""

from __future__ import annotations

import math
import time
from typing import Any

import aiohttp

from gateway.http.api import HttpApi
from gateway.keys import MintedKey, mint_key
from tests.cluster_nodes import Cluster, cluster

__all__ = ["cluster"]  # the fixture

HTTP: dict[str, Any] = {"http": {"host": "127.0.0.1", "port": 0}}


def api_url(cluster: Cluster, node: str) -> str:
    api = cluster.nodes[node].http_api
    assert isinstance(api, HttpApi)
    return api.url


async def new_key(cluster: Cluster, **settings: Any) -> MintedKey:
    minted = mint_key("acme", now=time.time(), **settings)
    await cluster.nodes["a"].message_store.save_api_key(minted.record)  # type: ignore[attr-defined]
    return minted


async def alternate(
    urls: list[str], key: MintedKey, method: str, path: str, seconds: float, body: Any = None
) -> tuple[int, float]:
    """Requests to the nodes in turn for `seconds`: (answers other than 429, seconds taken)."""
    headers = {"Authorization": f"Bearer {key.secret}"}
    passed = 0
    started = time.monotonic()
    async with aiohttp.ClientSession() as session:
        turn = 0
        while time.monotonic() - started < seconds:
            url = urls[turn % len(urls)]
            turn += 1
            async with session.request(method, url + path, json=body, headers=headers) as answer:
                await answer.read()
                if answer.status != 429:
                    passed += 1
    return passed, time.monotonic() - started


async def test_a_keys_request_rate_holds_across_two_nodes(cluster: Cluster) -> None:
    await cluster.start("a", HTTP)
    await cluster.start("b", HTTP)
    rate = 5.0
    key = await new_key(cluster, requests_per_second=rate, messages_per_second=100.0)
    urls = [api_url(cluster, "a"), api_url(cluster, "b")]
    passed, took = await alternate(urls, key, "GET", "/v1/messages/msg_unknown", 3.0)
    # One-second windows: at most `rate` in each window the run touched. Each node counting
    # alone would let about twice as many through.
    assert 0 < passed <= rate * (math.ceil(took) + 1), (passed, took)


async def test_a_keys_message_rate_holds_across_two_nodes(cluster: Cluster) -> None:
    await cluster.start("a", HTTP)
    await cluster.start("b", HTTP)
    rate = 4.0
    key = await new_key(cluster, requests_per_second=1000.0, messages_per_second=rate)
    urls = [api_url(cluster, "a"), api_url(cluster, "b")]
    body = {"to": "+447911123456", "from": "Shop", "text": "limited"}
    passed, took = await alternate(urls, key, "POST", "/v1/messages", 3.0, body)
    assert 0 < passed <= rate * (math.ceil(took) + 1), (passed, took)
