"""An SMPP customer's MOs on a cluster: two Gateways (nodes "a" and "b") on one PostgreSQL
schema. An MO is kept where the carrier's deliver_sm arrived and is delivered, once, by a node
that holds a receiving bind of its account (the claims the receipts use: `CustomerOutbox`).
smpplib, an independent ESME, is the customer. Skips, saying why, where PostgreSQL is absent."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from gateway.app import Gateway
from gateway.smpp_server import CustomerSmppServer
from tests.cluster_nodes import Cluster, cluster
from tests.test_smpp_server_smpplib import Esme, in_thread
from tests.test_smpp_server_support import PASSWORD, account
from tests.waiting import wait_for

__all__ = ["cluster"]  # the fixture

MO_NUMBER = "12345"
LINK_ID = "tandem"  # the system_id the nodes' carrier link binds with


def mo_sections() -> dict[str, Any]:
    return {
        "smpp_server": {"enabled": True, "host": "127.0.0.1", "port": 0},
        "accounts": [account("shop", mo_numbers=[MO_NUMBER])],
    }


def server_of(gateway: Gateway) -> CustomerSmppServer:
    server = gateway.smpp_server
    assert isinstance(server, CustomerSmppServer) and server.port is not None
    return server


async def receiver(gateway: Gateway) -> Esme:
    esme = Esme(server_of(gateway).port or 0)
    assert await in_thread(esme.bind, "receiver", "shop", PASSWORD) == 0
    return esme


async def owed_mos(gateway: Gateway) -> int:
    return len(await gateway.message_store.queued_mos())  # type: ignore[attr-defined]


async def wait_settled(gateway: Gateway) -> None:
    """Until the cluster's MO outbox is empty (every delivery settled in the store)."""

    async def settled() -> bool:
        return not await owed_mos(gateway)

    await wait_for(settled, "every MO delivery settled", interval=0.05)


def read_until(esmes: list[Esme], count: int, timeout: float = 30.0) -> None:
    """Read (and answer) on every ESME in turn until they got `count` deliveries in all: a
    read that finds nothing waits 0.1 s, so an idle bind does not hold up a busy one."""
    deadline = time.monotonic() + timeout
    for esme in esmes:
        esme.client._socket.settimeout(0.1)
    while sum(len(esme.delivered) for esme in esmes) < count:
        assert time.monotonic() < deadline, "smpplib did not get every MO"
        for esme in esmes:
            try:
                esme.client.read_once(auto_send_enquire_link=False)
            except TimeoutError:
                continue
    for esme in esmes:
        esme.client._socket.settimeout(5)


def texts(esme: Esme) -> list[bytes]:
    return [bytes(pdu.short_message) for pdu in esme.delivered]


async def test_an_mo_received_on_one_node_reaches_a_customer_bound_only_to_the_other(
    cluster: Cluster,
) -> None:
    # The carrier link runs on node a only: every MO comes in there.
    a = await cluster.start("a", mo_sections(), nodes=["a"])
    b = await cluster.start("b", mo_sections(), nodes=["a"])
    await wait_for(lambda: cluster.simulator.sessions_bound == 1, "node a's carrier bind")
    esme = await receiver(b)
    try:
        cluster.simulator.inject_mo("447700900001", MO_NUMBER, "hello via b", system_id=LINK_ID)
        await wait_for(lambda: cluster.simulator.stats.mo_sent == 1, "the carrier answered")
        await in_thread(esme.read_until, lambda: bool(esme.delivered), 30.0)
        await wait_settled(a)
        await in_thread(esme.read_for, 2.0)  # a second copy would come within a refill or two
    finally:
        await in_thread(esme.close)
    assert texts(esme) == [b"hello via b"]
    assert server_of(b).stats.mos_refilled == 1
    assert server_of(a).stats.delivered == 0 and server_of(a).stats.mo_queued == 1


async def test_a_customer_bound_to_both_nodes_gets_each_mo_once(cluster: Cluster) -> None:
    # A carrier bind on each node: the MOs come in on whichever the carrier picks.
    a = await cluster.start("a", mo_sections(), sessions=2)
    b = await cluster.start("b", mo_sections(), sessions=2)
    await wait_for(lambda: cluster.simulator.sessions_bound == 2, "a carrier bind per node")
    esmes = [await receiver(a), await receiver(b)]
    sent = [f"mo {n}".encode() for n in range(20)]
    try:
        for text in sent:
            cluster.simulator.inject_mo("447700900001", MO_NUMBER, text.decode(), system_id=LINK_ID)
        await wait_for(lambda: cluster.simulator.stats.mo_sent == len(sent), "the carrier answered")
        await in_thread(read_until, esmes, len(sent))
        await wait_settled(a)
        await asyncio.gather(*(in_thread(esme.read_for, 2.0) for esme in esmes))
    finally:
        await asyncio.gather(*(in_thread(esme.close) for esme in esmes))
    got = texts(esmes[0]) + texts(esmes[1])
    assert sorted(set(got)) == sorted(sent)
    # A copy comes only from a deliver_sm the customer did not answer in time (sent again by
    # that node, as on one node); two nodes never both deliver one MO.
    retried = server_of(a).stats.delivery_retries + server_of(b).stats.delivery_retries
    assert len(got) - len(sent) <= retried, (len(got), retried)
    assert server_of(a).stats.mo_queued + server_of(b).stats.mo_queued == len(sent)
