"""Sender ids and addresses: one rule (gateway.addresses) for HTTP `from` and SMPP source_addr.

Alphanumeric ids have at most 11 characters, numbers at most 15 digits, short codes are the
configured ones; a sender that breaks the rule is refused (422 naming `from`, ESME_RINVSRCADR),
never shortened. smpplib is the customer over real sockets; it shortens a 21-digit source_addr to
20 digits itself before sending, so Tandem sees 20 digits and must refuse them.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import smpplib.consts

from gateway.addresses import InvalidSender, SenderKind, check_sender, source_ton_problem
from gateway.config import SendersConfig
from smpp.codec import decode, encode
from smpp.constants import CommandStatus
from smpp.pdu import BindTransmitter, SubmitSmResp
from tests.test_http_harness import running_daemon
from tests.test_smpp_server_smpplib import Esme, in_thread, message_id_of
from tests.test_smpp_server_support import (
    DESTINATION,
    PASSWORD,
    Tandem,
    account,
    start_tandem,
    stop_tandem,
)

# --- the rule -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sender", "kind"),
    [
        ("Tandem", SenderKind.ALPHANUMERIC),
        ("Acme Ltd", SenderKind.ALPHANUMERIC),
        ("M&S-Shop.uk", SenderKind.ALPHANUMERIC),  # 11 characters
        ("Müller", SenderKind.ALPHANUMERIC),  # ü is in the GSM 7-bit alphabet
        ("O2", SenderKind.ALPHANUMERIC),
        ("+447911123456", SenderKind.NUMBER),
        ("447911123456", SenderKind.NUMBER),
        ("123456789012345", SenderKind.NUMBER),  # 15 digits, E.164's most
        ("+6834002", SenderKind.NUMBER),  # 7 digits: Niue
        ("12345", SenderKind.SHORT_CODE),
        ("123", SenderKind.SHORT_CODE),
    ],
)
def test_senders_within_the_limits_are_accepted_as_their_kind(
    sender: str, kind: SenderKind
) -> None:
    assert check_sender(sender) is kind


@pytest.mark.parametrize(
    ("sender", "why"),
    [
        ("TandemTandem", "at most 11 characters"),
        ("1234567890123456", "at most 15 digits"),
        ("+1234567890123456", "at most 15 digits"),
        ("4" * 20, "at most 15 digits"),
        ("12", "at least 3 digits"),
        ("+4412", "at least 7 digits"),
        ("Ωmega", "not 'Ω'"),  # a GSM letter, but an SMPP source_addr cannot carry it
        ("Acme\n", "not '\\n'"),
        ("Shop;", "not ';'"),
        (" Acme", "start or end with a space"),
        ("+٤٤٧٩", "digits 0-9"),
    ],
)
def test_senders_beyond_the_limits_are_refused_saying_why(sender: str, why: str) -> None:
    with pytest.raises(InvalidSender) as refused:
        check_sender(sender)
    assert why in str(refused.value)


def test_configured_short_codes_are_the_only_ones_accepted() -> None:
    senders = SendersConfig(short_codes=["12345", "777"], short_code_max_digits=6)
    assert check_sender("12345", senders) is SenderKind.SHORT_CODE
    with pytest.raises(InvalidSender, match="not one of the short codes"):
        check_sender("54321", senders)
    assert check_sender("1234567", senders) is SenderKind.NUMBER  # longer than a short code
    with pytest.raises(ValueError, match="longer than short_code_max_digits"):
        SendersConfig(short_codes=["1234567"], short_code_max_digits=6)


def test_an_international_ton_makes_a_short_number_a_number() -> None:
    assert check_sender("6834002") is SenderKind.SHORT_CODE
    assert check_sender("6834002", ton=1) is SenderKind.NUMBER


def test_alphanumeric_senders_need_ton_5_and_only_they_have_it() -> None:
    assert source_ton_problem(SenderKind.ALPHANUMERIC, 5) is None
    assert source_ton_problem(SenderKind.ALPHANUMERIC, 0) is not None
    assert source_ton_problem(SenderKind.NUMBER, 5) is not None
    assert source_ton_problem(SenderKind.NUMBER, 1) is None
    assert source_ton_problem(SenderKind.SHORT_CODE, 1) is not None
    assert source_ton_problem(SenderKind.SHORT_CODE, 0) is None


# --- SMPP ---------------------------------------------------------------------------------------


@pytest.fixture
async def tandem(tmp_path: Path) -> AsyncIterator[Tandem]:
    running = await start_tandem(
        tmp_path, [account("alice"), account("strict", source_ton_npi="check")]
    )
    yield running
    await stop_tandem(running)


async def submit_as(tandem: Tandem, system_id: str, **fields: Any) -> Any:
    """One submit_sm from smpplib; the submit_sm_resp it got."""
    esme = Esme(tandem.port)

    def scenario() -> Any:
        assert esme.bind("transmitter", system_id, PASSWORD) == 0
        sequence = esme.submit(b"hello", **fields)
        esme.read_until(lambda: sequence in esme.responses)
        return esme.responses[sequence]

    try:
        return await in_thread(scenario)
    finally:
        await in_thread(esme.close)


@pytest.mark.parametrize(
    "source",
    [
        "4" * 21,  # smpplib sends the first 20 digits
        "4" * 16,
        "TandemTandem",
        "Shop\x7f",
    ],
)
async def test_smpplib_over_long_or_malformed_source_addr_is_refused_never_shortened(
    tandem: Tandem, source: str
) -> None:
    ton = smpplib.consts.SMPP_TON_ALNUM if not source.isdigit() else smpplib.consts.SMPP_TON_INTL
    response = await submit_as(tandem, "alice", source_addr=source, source_addr_ton=ton)
    assert response.status == CommandStatus.ESME_RINVSRCADR
    assert tandem.server.stats.submits_accepted == 0
    assert tandem.simulator.received == []


async def test_a_21_octet_source_addr_on_the_wire_is_refused_by_the_codec(tandem: Tandem) -> None:
    """Without smpplib's shortening: the 21 digits reach Tandem, which refuses them too."""

    def scenario() -> object:
        with socket.create_connection(("127.0.0.1", tandem.port), timeout=10) as sock:
            bind = BindTransmitter(sequence_number=1, system_id="alice", password=PASSWORD)
            sock.sendall(encode(bind))
            assert decode(_read_pdu(sock)).command_status == 0
            body = b"\0" + b"\x01\x01" + b"4" * 21 + b"\0" + b"\x01\x01" + DESTINATION.encode()
            body += b"\0" + bytes(3) + b"\0\0" + bytes(4) + b"\x05hello"
            sock.sendall(struct.pack(">IIII", 16 + len(body), 0x00000004, 0, 2) + body)
            return decode(_read_pdu(sock))

    answer = await in_thread(scenario)
    assert isinstance(answer, SubmitSmResp)
    assert answer.command_status == CommandStatus.ESME_RINVSRCADR
    assert tandem.server.stats.submits_accepted == 0


def _read_pdu(sock: socket.socket) -> bytes:
    header = b""
    while len(header) < 4:
        header += sock.recv(4 - len(header))
    (length,) = struct.unpack(">I", header)
    rest = b""
    while len(rest) < length - 4:
        rest += sock.recv(length - 4 - len(rest))
    return header + rest


@pytest.mark.parametrize("destination", ["4" * 20, "4479111abc", "+"])
async def test_smpplib_over_long_or_malformed_destination_is_refused(
    tandem: Tandem, destination: str
) -> None:
    response = await submit_as(tandem, "alice", destination_addr=destination)
    assert response.status == CommandStatus.ESME_RINVDSTADR
    assert tandem.simulator.received == []


async def test_a_ton_that_does_not_fit_the_sender_is_set_for_a_set_account(
    tandem: Tandem,
) -> None:
    response = await submit_as(
        tandem, "alice", source_addr="Shop", source_addr_ton=smpplib.consts.SMPP_TON_INTL
    )
    assert response.status == 0
    record = await tandem.gateway.message_store.get(message_id_of(response))
    assert record is not None
    assert (record.message.source_ton, record.message.source_npi) == (5, 0)


async def test_a_ton_that_does_not_fit_the_sender_is_refused_for_a_check_account(
    tandem: Tandem,
) -> None:
    response = await submit_as(
        tandem, "strict", source_addr="Shop", source_addr_ton=smpplib.consts.SMPP_TON_INTL
    )
    assert response.status == CommandStatus.ESME_RINVSRCTON
    fitting = await submit_as(
        tandem, "strict", source_addr="Shop", source_addr_ton=smpplib.consts.SMPP_TON_ALNUM
    )
    assert fitting.status == 0


async def test_smpp_senders_follow_the_configured_short_codes(tandem: Tandem) -> None:
    tandem.gateway.intake.senders = SendersConfig(short_codes=["12345"])
    unknown = smpplib.consts.SMPP_TON_UNK
    accepted = await submit_as(tandem, "alice", source_addr="12345", source_addr_ton=unknown)
    assert accepted.status == 0
    refused = await submit_as(tandem, "alice", source_addr="54321", source_addr_ton=unknown)
    assert refused.status == CommandStatus.ESME_RINVSRCADR


# --- HTTP ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sender", "code"),
    [
        ("TandemTandem", "invalid_sender"),
        ("1234567890123456", "invalid_sender"),
        ("+1234567890123456", "too_long"),
        ("Shop;", "invalid_sender"),
    ],
)
@pytest.mark.parametrize("path", ["/v1/messages", "/v1/otp"])
async def test_http_from_beyond_the_limits_is_a_422_naming_from(
    tmp_path: Path, sender: str, code: str, path: str
) -> None:
    body = {"to": "+447911123456", "from": sender}
    if path == "/v1/messages":
        body["text"] = "x"
    async with running_daemon(tmp_path) as daemon:
        status, problem, headers = await daemon.call("POST", path, body)
        assert status == 422, problem
        assert headers["Content-Type"].startswith("application/problem+json")
        assert (problem["code"], problem["field"]) == (code, "from")
        assert daemon.api.stats.messages_accepted == 0


async def test_http_from_must_be_a_configured_short_code(tmp_path: Path) -> None:
    async with running_daemon(tmp_path) as daemon:
        daemon.gateway.intake.senders = SendersConfig(short_codes=["12345"])
        body = {"to": "+447911123456", "text": "x", "from": "54321"}
        status, problem, _ = await daemon.call("POST", "/v1/messages", body)
        assert (status, problem["code"], problem["field"]) == (422, "invalid_sender", "from")
        body["from"] = "12345"
        status, accepted, _ = await daemon.call("POST", "/v1/messages", body)
        assert status == 202, accepted


def test_the_openapi_text_states_the_limits_enforced() -> None:
    from gateway.http.openapi import openapi_document

    document = openapi_document()
    schema = document["components"]["schemas"]["SendMessageRequest"]["properties"]["from"]
    text = str(schema)
    assert "at most 11 characters" in text and "at most 15 digits" in text


def test_a_default_otp_sender_that_breaks_the_rule_stops_the_config_with_one_line(
    tmp_path: Path,
) -> None:
    from gateway.config import ConfigError, load_config

    path = tmp_path / "tandem.toml"
    path.write_text('[otp]\ndefault_sender = "VerifyMeNow!"\n')
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    message = str(refused.value)
    assert message.startswith(f"{path}: otp.default_sender: an alphanumeric sender has at most 11")
    assert "\n" not in message
