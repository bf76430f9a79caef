"""What one node of a cluster does binds the others: two Gateways (nodes "a" and "b") on one
PostgreSQL schema. An API key's rate limits hold across both nodes' HTTP APIs (a client
alternating between them gets the key's rate, not twice it); a receipt held on one node for a
submit the other has not recorded yet is applied once it has; an SMPP customer's receipts reach
it through whichever node it is bound to, once each. Skips, saying why, where
PostgreSQL is absent."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import aiohttp

from dlr.receipt import DeliveryReceipt
from dlr.status import MessageStatus, StatusSource
from gateway.http.api import HttpApi
from gateway.keys import MintedKey, mint_key
from gateway.links.base import SubmittedSegment
from gateway.links.smpp_client import receipt_report
from gateway.smpp_server import CustomerSmppServer
from smpp.aio import SmppClient
from smpp.constants import ESM_CLASS_DELIVERY_RECEIPT, CommandStatus
from smpp.pdu import DeliverSm, SubmitSmResp
from tests.cluster_nodes import LINK, Cluster, cluster
from tests.test_smpp_server import CLIENT, collector, receipted_ids, submit
from tests.test_smpp_server_support import PASSWORD, account
from tests.test_store import make_message
from tests.waiting import wait_for

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


async def test_a_receipt_held_on_one_node_is_applied_when_the_other_records_its_submit(
    cluster: Cluster,
) -> None:
    """The carrier hands node b the receipt of a message node a submitted, before a has
    recorded its submit_sm_resp: b holds it (the carrier is not answered yet) and applies it
    once a's record is in the store."""
    a = await cluster.start("a")
    b = await cluster.start("b")
    message = make_message()
    await a.message_store.accept([message])
    body = (
        b"id:cross-id sub:001 dlvrd:001 submit date:2611220900 done date:2611220901"
        b" stat:DELIVRD err:000 text:"
    )
    receipt = DeliveryReceipt.parse(body, {}, ESM_CLASS_DELIVERY_RECEIPT)
    recorded = b.on_receipt(LINK, receipt_report(receipt, "cross-id"))
    assert recorded is not None
    answered = asyncio.ensure_future(recorded)
    await wait_for(lambda: b.stats.receipts_held == 1, "node b to hold the receipt")
    await asyncio.sleep(1.5)  # a sweep or more: nothing to find yet
    assert not answered.done() and b.correlator.stats.held == 1

    await a.on_submitted(LINK, message, [SubmittedSegment(0, 1, "cross-id", "cross-id")])
    await asyncio.wait_for(answered, 15.0)  # b's sweeps look it up again
    record = await a.message_store.get(message.id)
    assert record is not None and record.message.status is MessageStatus.DELIVERED
    sources = [entry.event.source for entry in record.history if entry.segment_index == 0]
    assert sources.index(StatusSource.SUBMIT_RESP) < sources.index(StatusSource.RECEIPT)
    assert b.correlator.stats.applied_after_hold == 1 and b.stats.receipts_unmatched == 0


def smpp_sections() -> dict[str, Any]:
    return {
        "smpp_server": {"enabled": True, "host": "127.0.0.1", "port": 0},
        "accounts": [account("shop", allowed_senders=["Shop"])],
    }


async def customer(cluster: Cluster, node: str, kind: str, handler: object = None) -> SmppClient:
    server = cluster.nodes[node].smpp_server
    assert isinstance(server, CustomerSmppServer) and server.port is not None
    client = SmppClient(CLIENT, request_handler=handler)  # type: ignore[arg-type]
    await client.connect("127.0.0.1", server.port)
    await client.bind(kind, "shop", PASSWORD)
    return client


async def test_a_customers_receipt_reaches_it_through_the_node_it_is_bound_to_now(
    cluster: Cluster,
) -> None:
    """Submitted on node a; the customer then unbinds there and binds on node b only: the
    receipt, made on a (where the carrier's receipt came in), reaches it through b."""
    cluster.simulator.settings.dlr_delay = 3.0  # the customer moves before the receipt
    await cluster.start("a", smpp_sections())
    await cluster.start("b", smpp_sections())
    sender = await customer(cluster, "a", "transmitter")
    answer = await sender.submit(submit(registered_delivery=1))
    assert isinstance(answer, SubmitSmResp) and answer.command_status == CommandStatus.ESME_ROK
    await sender.unbind()
    deliveries: list[DeliverSm] = []
    receiver = await customer(cluster, "b", "receiver", collector(deliveries))
    try:
        await wait_for(lambda: bool(deliveries), "the receipt through node b")
        await asyncio.sleep(2.0)  # a second copy would come within a refill or two
    finally:
        await receiver.unbind()
    assert receipted_ids(deliveries) == [answer.message_id]


async def test_a_customer_bound_to_both_nodes_gets_each_receipt_once(cluster: Cluster) -> None:
    # A bind each: the carrier's receipts come in on both nodes.
    await cluster.start("a", smpp_sections(), sessions=2)
    await cluster.start("b", smpp_sections(), sessions=2)
    deliveries: list[DeliverSm] = []
    receivers = [
        await customer(cluster, node, "receiver", collector(deliveries)) for node in ("a", "b")
    ]
    sender = await customer(cluster, "b", "transmitter")
    try:
        answers = [await sender.submit(submit(f"m{n}", registered_delivery=1)) for n in range(20)]
        ids = sorted(answer.message_id for answer in answers if isinstance(answer, SubmitSmResp))
        await wait_for(lambda: len(deliveries) >= len(ids), "every receipt")
        await asyncio.sleep(2.0)  # a second copy would come within a refill or two
    finally:
        for client in (*receivers, sender):
            await client.unbind()
    got = receipted_ids(deliveries)
    assert sorted(set(got)) == ids
    # A copy comes only from a deliver_sm the customer did not answer in time (sent again by
    # that node, as on one node); two nodes never both deliver one receipt.
    retried = 0
    for node in ("a", "b"):
        server = cluster.nodes[node].smpp_server
        assert isinstance(server, CustomerSmppServer)
        retried += server.stats.delivery_retries
    assert len(got) - len(ids) <= retried, (len(got), len(ids), retried)
