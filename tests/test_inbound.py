"""Inbound messages end to end over real sockets: the simulator sends MOs over SMPP to the
carrier link; the gateway reassembles, keeps, routes them to an SMPP account (smpplib as the
customer), a signed HTTP webhook (a real HTTP server) or nowhere (kept, counted), and keeps
blocked numbers' MOs without forwarding them."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from dlr.callback import SIGNATURE_HEADER, verify
from tests.test_smpp_server_smpplib import Esme, in_thread
from tests.test_smpp_server_support import (
    PASSWORD,
    Tandem,
    account,
    start_tandem,
    stop_tandem,
)
from tests.waiting import wait_for

SECRET = "webhook-secret-1"
SUBSCRIBER = "447400123456"


def udh_parts(text: bytes, reference: int, size: int = 150) -> list[bytes]:
    chunks = [text[i : i + size] for i in range(0, len(text), size)]
    return [
        bytes((5, 0, 3, reference, len(chunks), seq)) + chunk
        for seq, chunk in enumerate(chunks, start=1)
    ]


class Receiver:
    """An HTTP server on 127.0.0.1 that keeps what it is POSTed; `fail` answers 503 first."""

    def __init__(self, fail: int = 0) -> None:
        self.got: list[tuple[dict[str, Any], bytes, str]] = []
        self.fail = fail
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.fail > 0:
            self.fail -= 1
            return web.Response(status=503)
        self.got.append((json.loads(body), body, request.headers.get(SIGNATURE_HEADER, "")))
        return web.Response(status=204)

    async def __aenter__(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/mo", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with Receiver(fail=1) as running:
        yield running


async def start(tmp_path: Path, receiver: Receiver, **inbound: Any) -> Tandem:
    routes = [
        {
            "name": "hooks",
            "to": ["5555"],
            "webhook": f"http://127.0.0.1:{receiver.port}/mo",
            "webhook_secret": SECRET,
        },
        {"name": "join", "prefix": ["77"], "keyword": "JOIN", "account": "acme"},
    ]
    return await start_tandem(
        tmp_path,
        [account("acme", mo_numbers=["7777"], multipart="reassemble")],
        extra={
            "egress": {"allow": ["127.0.0.1"], "ports": [receiver.port]},
            "inbound": {
                "reassembly_timeout": 0.5,
                "webhook_retry_initial": 0.05,
                "routes": routes,
                **inbound,
            },
        },
    )


async def test_a_multipart_mo_is_reassembled_and_posted_to_a_webhook_signed_and_retried(
    tmp_path: Path, receiver: Receiver
) -> None:
    tandem = await start(tmp_path, receiver)
    try:
        text = b"A" * 150 + b"B" * 150 + b"C" * 20
        for part in reversed(udh_parts(text, 42)):
            tandem.simulator.inject_mo(
                SUBSCRIBER, "5555", short_message=part, system_id="tandem", esm_class=0x40
            )
        await wait_for(lambda: bool(receiver.got), what="the webhook")
        ((body, raw, signature),) = receiver.got
        assert body["text"] == text.decode() and body["parts"] == 3 and body["complete"]
        assert (body["from"], body["to"]) == (SUBSCRIBER, "5555")
        assert verify(SECRET, raw, signature, time.time())
        record = await tandem.gateway.message_store.get_inbound(int(body["id"]))  # type: ignore[attr-defined]
        assert record.row.state == "routed" and record.row.route == "hooks"
        await wait_for(
            lambda: tandem.gateway.inbound.stats.webhook_delivered == 1, "the webhook delivered"
        )
        assert tandem.gateway.inbound.stats.webhook_retries == 1  # the 503 was tried again
        owed = await tandem.gateway.message_store.webhooks_owed()  # type: ignore[attr-defined]
        assert owed == []
    finally:
        await stop_tandem(tandem)


async def test_a_multipart_mo_is_reassembled_for_an_smpp_account_read_by_smpplib(
    tmp_path: Path, receiver: Receiver
) -> None:
    tandem = await start(tmp_path, receiver)
    esme = Esme(tandem.port)
    try:
        assert await in_thread(esme.bind, "receiver", "acme", PASSWORD) == 0
        text = b"x" * 150 + b"y" * 100
        for part in udh_parts(text, 7):
            tandem.simulator.inject_mo(
                SUBSCRIBER, "7777", short_message=part, system_id="tandem", esm_class=0x40
            )
        await in_thread(esme.read_until, lambda: bool(esme.delivered))
        (pdu,) = esme.delivered
        assert pdu.short_message == text and not pdu.esm_class & 0x40
        assert tandem.gateway.inbound.stats.reassembled == 1
    finally:
        await in_thread(esme.close)
        await stop_tandem(tandem)


async def test_a_part_resent_after_its_message_was_joined_is_answered_not_delivered_again(
    tmp_path: Path, receiver: Receiver
) -> None:
    # A carrier resends a deliver_sm whose resp it lost; by then the message may be whole.
    tandem = await start(tmp_path, receiver, reassembly_timeout=30.0)
    stats = tandem.gateway.inbound.stats
    try:
        text = b"A" * 150 + b"B" * 150 + b"C" * 20
        parts = udh_parts(text, 43)
        for part in parts:
            tandem.simulator.inject_mo(
                SUBSCRIBER, "5555", short_message=part, system_id="tandem", esm_class=0x40
            )
        await wait_for(lambda: bool(receiver.got), what="the webhook")
        held = stats.parts_held
        tandem.simulator.inject_mo(
            SUBSCRIBER, "5555", short_message=parts[1], system_id="tandem", esm_class=0x40
        )
        await wait_for(lambda: tandem.simulator.stats.mo_sent == 4, what="the resent part's resp")
        assert stats.duplicate_parts == 1
        assert stats.parts_held == held  # not held as the start of a new message
        # The same reference from another subscriber is a message of its own.
        tandem.simulator.inject_mo(
            "447400999999", "5555", short_message=parts[1], system_id="tandem", esm_class=0x40
        )
        await wait_for(lambda: stats.parts_held == held + 1, what="the other sender's part")
        assert stats.duplicate_parts == 1 and tandem.simulator.stats.deliveries_retried == 0
        store: Any = tandem.gateway.message_store
        kept = await store.list_inbound(number=SUBSCRIBER)
        assert [record.row.part_count for record in kept] == [3]
        assert len(receiver.got) == 1 and stats.messages == 1
    finally:
        await stop_tandem(tandem)


async def test_a_part_resent_after_the_reassembly_window_is_a_new_part_again(
    tmp_path: Path, receiver: Receiver
) -> None:
    # The memory of joined messages is bounded by the window: past it a reference may be reused.
    tandem = await start(tmp_path, receiver, reassembly_timeout=0.3)
    stats = tandem.gateway.inbound.stats
    try:
        parts = udh_parts(b"D" * 150 + b"E" * 20, 44)
        for part in parts:
            tandem.simulator.inject_mo(
                SUBSCRIBER, "5555", short_message=part, system_id="tandem", esm_class=0x40
            )
        await wait_for(lambda: stats.reassembled == 1, what="the joined MO")
        await asyncio.sleep(0.6)
        held = stats.parts_held
        tandem.simulator.inject_mo(
            SUBSCRIBER, "5555", short_message=parts[0], system_id="tandem", esm_class=0x40
        )
        await wait_for(lambda: stats.parts_held == held + 1, what="the part held anew")
        assert stats.duplicate_parts == 0
    finally:
        await stop_tandem(tandem)


async def test_the_keyword_route_takes_its_first_word_and_the_rest_stay_unmatched(
    tmp_path: Path, receiver: Receiver
) -> None:
    tandem = await start(tmp_path, receiver)
    try:
        tandem.simulator.inject_mo(SUBSCRIBER, "7700", "join now", system_id="tandem")
        tandem.simulator.inject_mo(SUBSCRIBER, "7700", "hello", system_id="tandem")
        await wait_for(lambda: tandem.gateway.inbound.stats.messages == 2, "both MOs handled")
        kept = await tandem.gateway.message_store.list_inbound(number="7700")  # type: ignore[attr-defined]
        assert [(r.row.text, r.row.state, r.row.route) for r in kept] == [
            ("hello", "unmatched", None),
            ("join now", "routed", "join"),
        ]
        assert tandem.gateway.inbound.stats.unmatched == 1
    finally:
        await stop_tandem(tandem)


async def test_parts_whose_whole_never_arrives_are_delivered_as_parts(
    tmp_path: Path, receiver: Receiver
) -> None:
    tandem = await start(tmp_path, receiver)
    try:
        first, _second = udh_parts(b"a" * 150 + b"b" * 10, 9)
        tandem.simulator.inject_mo(
            SUBSCRIBER, "5555", short_message=first, system_id="tandem", esm_class=0x40
        )
        await wait_for(lambda: bool(receiver.got), what="the lone part")
        body = receiver.got[0][0]
        assert body["text"] == "a" * 150 and not body["complete"]
        assert tandem.gateway.inbound.stats.parts_timed_out == 1
        assert await tandem.gateway.message_store.held_inbound() == []  # type: ignore[attr-defined]
    finally:
        await stop_tandem(tandem)


async def test_a_blocked_number_is_answered_kept_as_blocked_and_not_forwarded(
    tmp_path: Path, receiver: Receiver
) -> None:
    tandem = await start(tmp_path, receiver)
    store: Any = tandem.gateway.message_store
    try:
        assert await store.block_inbound(SUBSCRIBER, at=time.time(), reason="spam")
        await tandem.gateway.inbound.refresh_block_list()
        tandem.simulator.inject_mo(SUBSCRIBER, "5555", "buy now", system_id="tandem")
        await wait_for(lambda: tandem.simulator.stats.mo_sent == 1, what="the answer")
        await wait_for(lambda: tandem.gateway.inbound.stats.blocked == 1, "the MO blocked")
        (kept,) = await store.list_inbound(number=SUBSCRIBER)
        assert kept.row.state == "blocked" and kept.row.text == "buy now"
        await asyncio.sleep(0.3)
        assert receiver.got == []
        assert await store.unblock_inbound(SUBSCRIBER)
    finally:
        await stop_tandem(tandem)


def test_the_config_refuses_routes_and_replies_that_name_what_does_not_exist() -> None:
    from gateway.config import ConfigError, parse_config

    good = '[[inbound.routes]]\nname = "a"\nto = ["12345"]\naccount = "acme"\n'
    assert parse_config(good, "t").inbound.routes[0].account == "acme"
    for text, key in (
        ('[[inbound.routes]]\nname = "a"\nto = ["1"]\nevent_sink = "mqtt"\n', "event_sink"),
        ('[[inbound.routes]]\nname = "a"\nto = ["1"]\nwebhook = "https://x.example/"\n', "routes"),
        ('[[inbound.routes]]\nname = "a"\naccount = "acme"\n', "routes"),
        ('[[inbound.replies]]\nkind = "help"\ntext = "hi"\nsender_group = "nope"\n', "group"),
    ):
        with pytest.raises(ConfigError, match=key):
            parse_config(text, "t")


async def test_a_store_failure_answers_a_temporary_error_and_the_carriers_retry_is_kept(
    tmp_path: Path, receiver: Receiver
) -> None:
    from gateway.store.base import StoreError

    tandem = await start(tmp_path, receiver)
    store: Any = tandem.gateway.message_store
    record = store.record_inbound
    failures = [StoreError("disk full")]

    async def failing_once(*args: Any, **kwargs: Any) -> int:
        if failures:
            raise failures.pop()
        return int(await record(*args, **kwargs))

    store.record_inbound = failing_once
    try:
        tandem.simulator.inject_mo(SUBSCRIBER, "5555", "try again", system_id="tandem")
        await wait_for(lambda: tandem.simulator.stats.deliveries_retried == 1, what="a retry")
        await wait_for(lambda: tandem.simulator.stats.mo_sent == 1, what="the second offer")
        assert tandem.gateway.inbound.stats.store_failures == 1
        (kept,) = await store.list_inbound(number=SUBSCRIBER)
        assert kept.row.text == "try again"
    finally:
        await stop_tandem(tandem)


async def test_sar_parts_are_reassembled_too(tmp_path: Path, receiver: Receiver) -> None:
    from smpp.constants import Tag

    tandem = await start(tmp_path, receiver)
    try:
        for seq, chunk in ((2, b"world"), (1, b"hello ")):
            tandem.simulator.inject_mo(
                SUBSCRIBER,
                "5555",
                short_message=chunk,
                system_id="tandem",
                tlvs={
                    Tag.SAR_MSG_REF_NUM: 700,
                    Tag.SAR_TOTAL_SEGMENTS: 2,
                    Tag.SAR_SEGMENT_SEQNUM: seq,
                },
            )
        await wait_for(lambda: bool(receiver.got), what="the webhook")
        assert receiver.got[0][0]["text"] == "hello world" and receiver.got[0][0]["parts"] == 2
    finally:
        await stop_tandem(tandem)
