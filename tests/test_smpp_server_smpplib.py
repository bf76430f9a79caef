"""Interop: smpplib (an independent, synchronous ESME) as our customer, over real sockets.

Each scenario runs smpplib in a worker thread against a whole Tandem: the real Gateway with its
SQLite store, the SMPP link to the built-in simulator, and the customer SMPP server.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import smpplib.client
import smpplib.consts
import smpplib.exceptions
import smpplib.gsm

from gateway.messages import Channel
from smpp.constants import CommandStatus
from smpp.reassembly import parse_udh
from tests.test_smpp_server_support import (
    DESTINATION,
    PASSWORD,
    Tandem,
    account,
    start_tandem,
    stop_tandem,
)
from tests.waiting import WAIT, wait_for

LONG_TEXT = "Tandem carries long messages in parts and puts them back together. " * 4  # 272
# UCS-2 parts are 134 octets + a 6-octet UDH: exactly the 140 octets a part may have.
LONG_UCS2_TEXT = "Привет! Сообщение из нескольких частей. " * 4  # 160 characters, 3 parts


class Esme:
    """A smpplib client that records what it is sent; every call blocks (run it in a thread)."""

    def __init__(self, port: int, *, answer: Callable[[Any], int] | None = None) -> None:
        self.client = smpplib.client.Client(
            "127.0.0.1", port, timeout=5, allow_unknown_opt_params=True
        )
        self.responses: dict[int, Any] = {}
        self.delivered: list[Any] = []
        self.queries: list[Any] = []
        self._answer = answer
        self.client.set_message_sent_handler(self._on_sent)
        self.client.set_message_received_handler(self._on_received)
        self.client.set_query_resp_handler(self.queries.append)
        self.client.set_error_pdu_handler(lambda pdu: None)  # statuses are checked by tests

    def _on_sent(self, pdu: Any) -> None:
        self.responses[pdu.sequence] = pdu

    def _on_received(self, pdu: Any) -> int:
        self.delivered.append(pdu)
        return self._answer(pdu) if self._answer is not None else 0

    def bind(self, kind: str, system_id: str, password: str) -> int:
        self.client.connect()
        try:
            getattr(self.client, f"bind_{kind}")(system_id=system_id, password=password)
        except smpplib.exceptions.PDUError as exc:
            return int(exc.args[1])
        return 0

    def submit(self, short_message: bytes, **fields: Any) -> int:
        values: dict[str, Any] = {
            "source_addr_ton": smpplib.consts.SMPP_TON_ALNUM,
            "source_addr": "Shop",
            "dest_addr_ton": smpplib.consts.SMPP_TON_INTL,
            "dest_addr_npi": smpplib.consts.SMPP_NPI_ISDN,
            "destination_addr": DESTINATION,
            "short_message": short_message,
        }
        values.update(fields)
        pdu = self.client.send_message(**values)
        return int(pdu.sequence)

    def read_until(self, done: Callable[[], bool], timeout: float = WAIT) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise AssertionError("smpplib did not get what it waited for")
            self.client.read_once()

    def read_for(self, seconds: float) -> None:
        """Keep reading (and answering) for a while: to show that nothing more comes."""
        self.client._socket.settimeout(0.1)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                self.client.read_once(auto_send_enquire_link=False)
            except TimeoutError:
                continue
        self.client._socket.settimeout(5)

    def close(self) -> None:
        try:
            self.client.unbind()
        except Exception:
            pass
        self.client.disconnect()


def message_id_of(response: Any) -> str:
    raw = response.message_id
    return raw.decode() if isinstance(raw, bytes) else str(raw)


@pytest.fixture
async def tandem(tmp_path: Path) -> AsyncIterator[Tandem]:
    running = await start_tandem(
        tmp_path,
        [
            account("alice", mo_numbers=["12345"]),
            account("joiner", multipart="reassemble"),
            account("txonly", bind_types=["transmitter"]),
            account("elsewhere", allowed_networks=["10.0.0.0/8"]),
        ],
    )
    yield running
    await stop_tandem(running)


async def in_thread(work: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.wait_for(asyncio.to_thread(work, *args), 30)


async def test_smpplib_binds_with_good_credentials_and_bad_ones_get_spec_statuses(
    tandem: Tandem,
) -> None:
    cases = [
        ("transceiver", "alice", PASSWORD, CommandStatus.ESME_ROK),
        # The same answer for a wrong password and an unknown system_id (distinct_bind_failures
        # gives the spec's ESME_RINVPASWD / ESME_RINVSYSID; see test_smpp_bind_answers.py).
        ("transceiver", "alice", "wrong", CommandStatus.ESME_RBINDFAIL),
        ("transmitter", "nobody", PASSWORD, CommandStatus.ESME_RBINDFAIL),
        ("receiver", "txonly", PASSWORD, CommandStatus.ESME_RBINDFAIL),  # bind type not allowed
        ("transmitter", "txonly", PASSWORD, CommandStatus.ESME_ROK),
        ("transmitter", "elsewhere", PASSWORD, CommandStatus.ESME_RBINDFAIL),  # not from 10/8
    ]
    for kind, system_id, password, expected in cases:
        esme = Esme(tandem.port)
        status = await in_thread(esme.bind, kind, system_id, password)
        await in_thread(esme.close)
        assert status == expected, (kind, system_id, password)
    assert tandem.server.stats.bind_failures == 4
    assert tandem.server.stats.bind_refused_network == 1


async def test_smpplib_single_submit_is_stored_for_its_account_and_answered_with_our_id(
    tandem: Tandem,
) -> None:
    esme = Esme(tandem.port)

    def scenario() -> Any:
        assert esme.bind("transceiver", "alice", PASSWORD) == 0
        sequence = esme.submit(b"Your code is 1234", registered_delivery=0)
        esme.read_until(lambda: sequence in esme.responses)
        return esme.responses[sequence]

    response = await in_thread(scenario)
    await in_thread(esme.close)
    assert response.status == 0
    record = await tandem.gateway.message_store.get(message_id_of(response))
    assert record is not None
    message = record.message
    assert (message.account, message.channel) == ("alice", Channel.SMPP)
    assert (message.source_addr, message.destination, message.body) == (
        "Shop",
        DESTINATION,
        b"Your code is 1234",
    )
    await wait_for(lambda: len(tandem.simulator.received) == 1, what="the carrier submit")
    assert tandem.simulator.received[0].text == "Your code is 1234"


async def test_smpplib_udh_parts_pass_through_as_parts_for_a_passthrough_account(
    tandem: Tandem,
) -> None:
    parts, data_coding, esm_class = smpplib.gsm.make_parts(LONG_UCS2_TEXT)
    esme = Esme(tandem.port)

    def scenario() -> list[Any]:
        assert esme.bind("transmitter", "alice", PASSWORD) == 0
        sequences = [
            esme.submit(part, data_coding=data_coding, esm_class=esm_class) for part in parts
        ]
        esme.read_until(lambda: all(s in esme.responses for s in sequences))
        return [esme.responses[s] for s in sequences]

    responses = await in_thread(scenario)
    await in_thread(esme.close)
    assert len(parts) == 3
    assert [r.status for r in responses] == [0, 0, 0]
    ids = {message_id_of(r) for r in responses}
    assert len(ids) == 3  # one message per part
    await wait_for(lambda: len(tandem.simulator.received) == 3, what="the parts at the carrier")
    carried = sorted(tandem.simulator.received, key=lambda r: parse_udh(r.payload).concat.seqnum)  # type: ignore[union-attr]
    headers = [parse_udh(r.payload) for r in carried]
    assert [h.concat.seqnum for h in headers] == [1, 2, 3]  # type: ignore[union-attr]
    assert b"".join(h.payload for h in headers).decode("utf-16-be") == LONG_UCS2_TEXT


async def test_smpplib_udh_parts_are_reassembled_into_one_message_for_a_joining_account(
    tandem: Tandem,
) -> None:
    parts, data_coding, esm_class = smpplib.gsm.make_parts(LONG_TEXT)
    esme = Esme(tandem.port)

    def scenario() -> list[Any]:
        assert esme.bind("transmitter", "joiner", PASSWORD) == 0
        sequences = [
            esme.submit(part, data_coding=data_coding, esm_class=esm_class) for part in parts
        ]
        esme.read_until(lambda: all(s in esme.responses for s in sequences))
        return [esme.responses[s] for s in sequences]

    responses = await in_thread(scenario)
    await in_thread(esme.close)
    assert [r.status for r in responses] == [0, 0]
    (message_id,) = {message_id_of(r) for r in responses}
    record = await tandem.gateway.message_store.get(message_id)
    assert record is not None
    assert record.message.body.decode() == LONG_TEXT
    assert record.message.esm_class == 0


def sar_parts(text: bytes, reference: int, size: int = 130) -> list[tuple[bytes, dict[str, int]]]:
    chunks = [text[i : i + size] for i in range(0, len(text), size)]
    return [
        (
            chunk,
            {
                "sar_msg_ref_num": reference,
                "sar_total_segments": len(chunks),
                "sar_segment_seqnum": index + 1,
            },
        )
        for index, chunk in enumerate(chunks)
    ]


@pytest.mark.parametrize("system_id", ["alice", "joiner"])
async def test_smpplib_sar_parts_are_reassembled_or_passed_through_per_account(
    tandem: Tandem, system_id: str
) -> None:
    text = LONG_TEXT.encode()
    esme = Esme(tandem.port)

    def scenario() -> list[Any]:
        assert esme.bind("transmitter", system_id, PASSWORD) == 0
        sequences = [esme.submit(chunk, **sar) for chunk, sar in sar_parts(text, 0x1234)]
        esme.read_until(lambda: all(s in esme.responses for s in sequences))
        return [esme.responses[s] for s in sequences]

    responses = await in_thread(scenario)
    await in_thread(esme.close)
    assert [r.status for r in responses] == [0, 0, 0]
    ids = sorted({message_id_of(r) for r in responses})
    records = [await tandem.gateway.message_store.get(i) for i in ids]
    if system_id == "joiner":
        (record,) = records
        assert record is not None and record.message.body == text
    else:
        # Passed through as parts: each carries a 16-bit concatenation UDH made from SAR.
        bodies = [r.message.body for r in records if r is not None]
        headers = sorted((parse_udh(b) for b in bodies), key=lambda h: h.concat.seqnum)  # type: ignore[union-attr]
        assert [(h.concat.reference, h.concat.total) for h in headers] == [(0x1234, 3)] * 3  # type: ignore[union-attr]
        assert b"".join(h.payload for h in headers) == text


@pytest.mark.parametrize("undeliverable", [False, True], ids=["delivered", "undeliverable"])
async def test_smpplib_gets_receipts_exactly_as_registered_delivery_asks(
    tandem: Tandem, undeliverable: bool
) -> None:
    tandem.simulator.settings.undeliverable_fraction = 1.0 if undeliverable else 0.0
    esme = Esme(tandem.port)
    # registered_delivery: 0 none, 1 always, 2 on failure, 3 on success (SMPP 5.0).
    expected = {1, 2} if undeliverable else {1, 3}

    def scenario() -> tuple[dict[int, str], list[Any]]:
        assert esme.bind("transceiver", "alice", PASSWORD) == 0
        sequences = {
            rd: esme.submit(f"rd {rd}".encode(), registered_delivery=rd) for rd in range(4)
        }
        esme.read_until(lambda: all(s in esme.responses for s in sequences.values()))
        ids = {rd: message_id_of(esme.responses[s]) for rd, s in sequences.items()}
        esme.read_until(lambda: len(esme.delivered) >= len(expected))
        esme.read_for(0.5)  # nothing more may come
        return ids, esme.delivered

    ids, delivered = await in_thread(scenario)
    await in_thread(esme.close)
    by_id = {rd: message_id for rd, message_id in ids.items()}
    stat = b"stat:UNDELIV" if undeliverable else b"stat:DELIVRD"
    receipted = set()
    for pdu in delivered:
        assert pdu.esm_class == 0x04  # SMSC delivery receipt
        assert stat in pdu.short_message
        receipt_id = pdu.receipted_message_id
        receipt_id = receipt_id.decode() if isinstance(receipt_id, bytes) else receipt_id
        assert pdu.short_message.startswith(f"id:{receipt_id} ".encode())
        receipted.add(receipt_id)
    assert receipted == {by_id[rd] for rd in expected}
    assert len(delivered) == len(expected)


async def test_smpplib_receiver_gets_mo_for_its_number_round_robin_over_binds(
    tandem: Tandem,
) -> None:
    first, second = Esme(tandem.port), Esme(tandem.port)
    assert await in_thread(lambda: first.bind("receiver", "alice", PASSWORD)) == 0
    assert await in_thread(lambda: second.bind("transceiver", "alice", PASSWORD)) == 0
    for n in range(4):
        tandem.simulator.inject_mo("447700900001", "12345", f"MO {n}", system_id="tandem")
    await asyncio.gather(
        in_thread(lambda: first.read_until(lambda: len(first.delivered) >= 2)),
        in_thread(lambda: second.read_until(lambda: len(second.delivered) >= 2)),
    )
    texts = sorted(p.short_message for p in first.delivered + second.delivered)
    assert texts == [f"MO {n}".encode() for n in range(4)]
    for pdu in first.delivered + second.delivered:
        assert pdu.source_addr in (b"447700900001", "447700900001")
        assert pdu.esm_class == 0
    await in_thread(first.close)
    await in_thread(second.close)


async def test_mo_waits_in_the_queue_until_a_receiver_binds(tandem: Tandem) -> None:
    tandem.simulator.inject_mo("447700900001", "12345", "while away", system_id="tandem")
    await wait_for(lambda: tandem.server.stats.mo_queued == 1, what="the MO to reach Tandem")
    esme = Esme(tandem.port)
    assert await in_thread(lambda: esme.bind("receiver", "alice", PASSWORD)) == 0
    await in_thread(lambda: esme.read_until(lambda: bool(esme.delivered)))
    assert esme.delivered[0].short_message == b"while away"
    await in_thread(esme.close)


async def test_mo_for_a_number_nobody_owns_is_kept_and_counted_not_delivered(
    tandem: Tandem,
) -> None:
    tandem.simulator.inject_mo("447700900001", "99999", "stray", system_id="tandem")
    await wait_for(lambda: tandem.gateway.inbound.stats.unmatched == 1, what="the MO")
    assert tandem.server.stats.mo_queued == 0
    (kept,) = await tandem.gateway.message_store.list_inbound()  # type: ignore[attr-defined]
    assert (kept.row.state, kept.row.text, kept.row.destination) == ("unmatched", "stray", "99999")


async def test_smpplib_query_sm_reports_the_state_of_its_own_messages_only(
    tandem: Tandem,
) -> None:
    esme = Esme(tandem.port)
    other = Esme(tandem.port)

    def submit() -> str:
        assert esme.bind("transceiver", "alice", PASSWORD) == 0
        sequence = esme.submit(b"query me", registered_delivery=1)
        esme.read_until(lambda: sequence in esme.responses and bool(esme.delivered))
        return message_id_of(esme.responses[sequence])

    message_id = await in_thread(submit)

    def query(client: Esme) -> Any:
        count = len(client.queries)
        client.client.query_message(
            message_id=message_id, source_addr_ton=5, source_addr_npi=0, source_addr="Shop"
        )
        client.read_until(lambda: len(client.queries) > count)
        return client.queries[-1]

    own = await in_thread(lambda: query(esme))
    assert own.status == 0
    assert own.message_state == smpplib.consts.SMPP_MESSAGE_STATE_DELIVERED
    assert len(own.final_date) == 16
    assert await in_thread(lambda: other.bind("transceiver", "joiner", PASSWORD)) == 0
    foreign = await in_thread(lambda: query(other))
    assert foreign.status == CommandStatus.ESME_RQUERYFAIL
    await in_thread(esme.close)
    await in_thread(other.close)
