"""STOP, START and HELP as MOs, end to end over real sockets: the simulator sends the MO over
SMPP to the carrier link; the gateway records the opt-out and sends the configured reply from the
number the MO was sent to through the normal MT path (the simulator receives it); smpplib as a
customer ESME, and HTTP and OTP requests through intake, are then refused."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.config import KeywordsConfig
from gateway.intake import IntakeRefusal, MessageRequest
from gateway.messages import Channel, MessageKind
from gateway.optouts.from_config import keyword_matcher
from tests.test_smpp_server_smpplib import Esme, in_thread
from tests.test_smpp_server_support import (
    PASSWORD,
    Tandem,
    account,
    start_tandem,
    stop_tandem,
)
from tests.waiting import wait_for

SUBSCRIBER = "447400123456"
REPLIES = [
    {"kind": "opt_out", "text": "You will get no more messages. Reply START to undo."},
    {"kind": "opt_out", "text": "Brand: unsubscribed.", "sender_group": "brand"},
    {"kind": "opt_in", "text": "Welcome back."},
    {"kind": "help", "text": "Help: reply STOP to stop."},
    {"kind": "opt_out", "text": "Vous êtes désinscrit.", "language": "fr"},
]
PAST = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)


async def start(tmp_path: Path, **keywords: Any) -> Tandem:
    return await start_tandem(
        tmp_path,
        [account("acme")],
        extra={
            "keywords": {
                "extra": [
                    {"kind": "opt_out", "words": ["ARRET"], "language": "fr"},
                    {"kind": "opt_out", "words": ["BAJA"], "valid_until": PAST},
                ],
                **keywords,
            },
            "sender_groups": [{"name": "brand", "senders": ["22222", "22223"]}],
            "inbound": {"replies": REPLIES},
        },
    )


def replies_to(tandem: Tandem, number: str = SUBSCRIBER) -> list[tuple[str, str]]:
    return [
        (submit.source_addr, submit.text)
        for submit in tandem.simulator.received
        if submit.destination_addr == number
    ]


def mo(tandem: Tandem, text: str, to: str = "12345", source: str = SUBSCRIBER) -> None:
    tandem.simulator.inject_mo(source, to, text, system_id="tandem")


async def http_send(
    tandem: Tandem, sender: str, kind: MessageKind = MessageKind.TRANSACTIONAL
) -> str:
    request = MessageRequest(
        account="web",
        channel=Channel.HTTP,
        to=f"+{SUBSCRIBER}",
        sender=sender,
        text="hi",
        kind=kind,
    )
    try:
        await tandem.gateway.intake.accept([request])
    except IntakeRefusal as refusal:
        return refusal.code
    return "accepted"


@pytest.fixture
async def tandem(tmp_path: Path) -> Any:
    running = await start(tmp_path)
    yield running
    await stop_tandem(running)


async def test_stop_is_confirmed_from_the_same_number_then_every_send_is_refused_until_start(
    tandem: Tandem,
) -> None:
    mo(tandem, "stop")
    await wait_for(lambda: bool(replies_to(tandem)), what="the confirmation")
    assert replies_to(tandem) == [("12345", REPLIES[0]["text"])]
    assert tandem.gateway.optouts.blocks(SUBSCRIBER, "12345")
    assert not tandem.gateway.optouts.blocks(SUBSCRIBER, "54321")  # the sender it was sent to

    esme = Esme(tandem.port)
    try:
        assert await in_thread(esme.bind, "transceiver", "acme", PASSWORD) == 0

        def submit() -> int:
            sequence = esme.submit(
                b"offer", source_addr="12345", source_addr_ton=0, destination_addr=SUBSCRIBER
            )
            esme.read_until(lambda: sequence in esme.responses)
            return int(esme.responses[sequence].status)

        assert await in_thread(submit) == 0x65  # ESME_RX_P_APPN: permanent
        assert await http_send(tandem, "12345") == "recipient_opted_out"
        assert await http_send(tandem, "12345", MessageKind.OTP) == "recipient_opted_out"
        assert await http_send(tandem, "54321") == "accepted"

        mo(tandem, "START")
        await wait_for(
            lambda: ("12345", "Welcome back.") in replies_to(tandem), what="the opt-in reply"
        )
        assert await in_thread(submit) == 0
        assert await http_send(tandem, "12345") == "accepted"
    finally:
        await in_thread(esme.close)
    stats = tandem.gateway.inbound.stats
    assert (stats.keyword_opt_outs, stats.keyword_opt_ins, stats.replies) == (1, 1, 2)
    history = await tandem.gateway.message_store.optout_history(SUBSCRIBER)  # type: ignore[attr-defined]
    assert [(h.action, h.keyword, h.via) for h in history] == [
        ("opt_out", "STOP", "keyword"),
        ("opt_in", "START", "keyword"),
    ]


async def test_help_replies_and_changes_nothing(tandem: Tandem) -> None:
    mo(tandem, "Help!")
    await wait_for(lambda: bool(replies_to(tandem)), what="the help reply")
    assert replies_to(tandem) == [("12345", "Help: reply STOP to stop.")]
    assert not tandem.gateway.optouts.blocks(SUBSCRIBER, "12345")
    assert await tandem.gateway.message_store.optout_history(SUBSCRIBER) == []  # type: ignore[attr-defined]
    (kept,) = await tandem.gateway.message_store.list_inbound(number=SUBSCRIBER)  # type: ignore[attr-defined]
    assert (kept.row.keyword, kept.row.keyword_class) == ("HELP", "help")


async def test_a_stop_to_a_group_member_stops_the_group_and_stopall_stops_every_sender(
    tandem: Tandem,
) -> None:
    registry = tandem.gateway.optouts
    mo(tandem, "STOP", to="22222")
    await wait_for(lambda: bool(replies_to(tandem)), what="the group's confirmation")
    assert replies_to(tandem) == [("22222", "Brand: unsubscribed.")]
    assert registry.blocks(SUBSCRIBER, "22223") and not registry.blocks(SUBSCRIBER, "12345")

    other = "447400999888"
    mo(tandem, "stopall", to="12345", source=other)
    await wait_for(lambda: bool(replies_to(tandem, other)), what="the STOPALL confirmation")
    assert all(registry.blocks(other, sender) for sender in ("12345", "22222", "Shop"))
    # The confirmation got past the opt-out it confirms, and only it.
    assert tandem.gateway.optout_stats.confirmations_passed == 2


async def test_a_word_from_the_extra_list_matches_in_its_language_and_a_dated_one_not_after(
    tandem: Tandem,
) -> None:
    mo(tandem, "arrêt".upper().replace("Ê", "E"))
    await wait_for(lambda: bool(replies_to(tandem)), what="the French confirmation")
    assert replies_to(tandem) == [("12345", "Vous êtes désinscrit.")]
    mo(tandem, "BAJA", to="54321")
    await wait_for(lambda: tandem.gateway.inbound.stats.messages == 2, "the BAJA handled")
    assert not tandem.gateway.optouts.blocks(SUBSCRIBER, "54321")  # valid until 2020 only


async def test_lenient_matching_is_off_by_default_and_recorded_as_lenient_when_on(
    tandem: Tandem,
) -> None:
    mo(tandem, "please stop")
    await wait_for(lambda: tandem.gateway.inbound.stats.messages == 1, "the MO handled")
    assert not tandem.gateway.optouts.blocks(SUBSCRIBER, "12345")

    tandem.gateway.inbound.matcher = keyword_matcher(KeywordsConfig(lenient=True))
    mo(tandem, "please stop texting me")
    await wait_for(lambda: bool(replies_to(tandem)), what="the confirmation")
    assert tandem.gateway.optouts.blocks(SUBSCRIBER, "12345")
    (entry,) = await tandem.gateway.message_store.optout_history(SUBSCRIBER)  # type: ignore[attr-defined]
    assert entry.lenient and entry.keyword == "STOP"
