"""The whole OTP life through the HTTP API of a running daemon with its simulator link:
send, wrong and right codes, expiry on a controlled clock, max attempts, re-send of the same
code, cancel, the send limits, SMS-pumping protection and what the store keeps."""

from __future__ import annotations

import re
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from tests.test_http_harness import Daemon, running_daemon
from tests.waiting import wait_for

UK = "+447911123456"
OTP_ROUTES = [
    {"name": "otp-first", "priority": 10, "kinds": ["otp"], "targets": ["sim"]},
    {"name": "everything", "priority": 100, "targets": ["sim"]},
]


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def daemon(tmp_path: Path) -> Any:
    async with running_daemon(tmp_path, routes=OTP_ROUTES) as running:
        yield running


async def sent_code(daemon: Daemon, message_id: str) -> str:
    """The code as the handset read it: from the SMS the SMSC simulator received."""
    text = (await daemon.received_by_handset(message_id)).text
    match = re.search(r"\b(\d{4,10})\b", text)
    assert match is not None, text
    return match.group(1)


async def test_send_then_wrong_code_then_right_code(daemon: Daemon) -> None:
    status, otp, _ = await daemon.call("POST", "/v1/otp", {"to": "+44 7911 123456"})
    assert status == 201, otp
    assert (otp["status"], otp["to"], otp["sends"], otp["attempts_left"]) == (
        "pending",
        UK,
        1,
        5,
    )
    assert otp["id"].startswith("otp_") and otp["expires_at"].endswith("Z")
    code = await sent_code(daemon, otp["message_id"])
    assert len(code) == 6
    wrong = "1" + code[1:] if code[0] != "1" else "2" + code[1:]

    status, check, _ = await daemon.call("POST", f"/v1/otp/{otp['id']}/check", {"code": wrong})
    assert (status, check["status"], check["attempts_left"]) == (200, "pending", 4)
    status, check, _ = await daemon.call("POST", f"/v1/otp/{otp['id']}/check", {"code": code})
    assert (status, check["status"], check["attempts_left"]) == (200, "approved", 3)
    status, problem, _ = await daemon.call("POST", f"/v1/otp/{otp['id']}/check", {"code": code})
    assert (status, problem["code"], problem["otp_status"]) == (409, "already_approved", "approved")
    status, view, _ = await daemon.call("GET", f"/v1/otp/{otp['id']}")
    assert (status, view["status"]) == (200, "approved")


async def test_the_sms_is_an_otp_message_with_top_priority_on_the_otp_route(
    daemon: Daemon,
) -> None:
    _, otp, _ = await daemon.call("POST", "/v1/otp", {"to": UK, "locale": "de"})
    received = await daemon.received_by_handset(otp["message_id"])
    assert received.text.startswith("Ihr Tandem-Code lautet")
    assert received.source_addr == "Verify"  # [otp] default_sender
    record = await daemon.gateway.message_store.get(otp["message_id"])
    assert record is not None
    message = record.message
    assert (message.kind.value, message.priority, message.route) == ("otp", 0, "otp-first")
    assert message.validity_at == pytest.approx(message.created_at + 600, abs=1)


async def test_a_finished_otp_message_keeps_no_text_in_the_store(daemon: Daemon) -> None:
    _, otp, _ = await daemon.call("POST", "/v1/otp", {"to": UK, "code": "90817"})
    _, plain, _ = await daemon.call("POST", "/v1/messages", {"to": UK, "text": "not secret"})

    async def wiped() -> bool:
        record = await daemon.gateway.message_store.get(otp["message_id"])
        return record is not None and record.message.text is None

    await wait_for(wiped, "the OTP's text wiped")
    record = await daemon.gateway.message_store.get(otp["message_id"])
    assert record is not None
    assert record.message.status.value == "delivered" and record.message.body == b""
    other = await daemon.gateway.message_store.get(plain["id"])
    assert other is not None and other.message.text == "not secret"


async def test_a_code_expires_on_the_clock(daemon: Daemon) -> None:
    clock = Clock()
    daemon.api.otp.clock = clock
    _, otp, _ = await daemon.call("POST", "/v1/otp", {"to": UK, "ttl": 60, "code": "4321"})
    clock.now += 59.0
    status, view, _ = await daemon.call("GET", f"/v1/otp/{otp['id']}")
    assert view["status"] == "pending"
    clock.now += 1.0
    status, problem, _ = await daemon.call("POST", f"/v1/otp/{otp['id']}/check", {"code": "4321"})
    assert (status, problem["code"], problem["otp_status"]) == (410, "expired", "expired")
    status, view, _ = await daemon.call("GET", f"/v1/otp/{otp['id']}")
    assert view["status"] == "expired"
    # A new request after expiry starts a new verification instead of re-sending.
    _, fresh, _ = await daemon.call("POST", "/v1/otp", {"to": UK})
    assert fresh["id"] != otp["id"] and fresh["sends"] == 1


async def test_five_wrong_codes_end_the_verification(daemon: Daemon) -> None:
    _, otp, _ = await daemon.call("POST", "/v1/otp", {"to": UK, "code": "777777"})
    path = f"/v1/otp/{otp['id']}/check"
    for left in (4, 3, 2, 1):
        status, check, _ = await daemon.call("POST", path, {"code": "000000"})
        assert (status, check["attempts_left"]) == (200, left)
    status, problem, _ = await daemon.call("POST", path, {"code": "000000"})
    assert (status, problem["code"], problem["attempts_left"]) == (429, "max_attempts_reached", 0)
    status, problem, _ = await daemon.call("POST", path, {"code": "777777"})
    assert (status, problem["code"]) == (429, "max_attempts_reached")
    _, view, _ = await daemon.call("GET", f"/v1/otp/{otp['id']}")
    assert (view["status"], view["attempts_left"]) == ("max_attempts_reached", 0)


async def test_a_second_request_within_the_ttl_resends_the_same_code(daemon: Daemon) -> None:
    _, first, _ = await daemon.call("POST", "/v1/otp", {"to": UK})
    status, again, _ = await daemon.call("POST", "/v1/otp", {"to": "+447911 123 456"})
    assert status == 201
    assert again["id"] == first["id"]
    assert again["expires_at"] == first["expires_at"]
    assert again["sends"] == 2
    assert again["message_id"] != first["message_id"]  # a new SMS...
    code = await sent_code(daemon, first["message_id"])
    assert await sent_code(daemon, again["message_id"]) == code  # ...with the same code
    status, check, _ = await daemon.call("POST", f"/v1/otp/{first['id']}/check", {"code": code})
    assert check["status"] == "approved"
    # Another key asking for the same number gets its own verification.
    other = await daemon.new_key("other")
    _, theirs, _ = await daemon.call("POST", "/v1/otp", {"to": UK}, key=other)
    assert theirs["id"] != first["id"]


async def test_a_canceled_verification_cannot_be_checked_or_canceled_again(
    daemon: Daemon,
) -> None:
    _, otp, _ = await daemon.call("POST", "/v1/otp", {"to": UK, "code": "2468"})
    status, view, _ = await daemon.call("POST", f"/v1/otp/{otp['id']}/cancel")
    assert (status, view["status"]) == (200, "canceled")
    status, problem, _ = await daemon.call("POST", f"/v1/otp/{otp['id']}/check", {"code": "2468"})
    assert (status, problem["code"]) == (409, "canceled")
    status, problem, _ = await daemon.call("POST", f"/v1/otp/{otp['id']}/cancel")
    assert (status, problem["code"]) == (409, "canceled")


async def test_the_sixth_send_to_a_number_within_ten_minutes_is_refused(daemon: Daemon) -> None:
    for n in range(5):
        status, otp, _ = await daemon.call("POST", "/v1/otp", {"to": UK})
        assert (status, otp["sends"]) == (201, n + 1)
    status, problem, headers = await daemon.call("POST", "/v1/otp", {"to": UK})
    assert (status, problem["code"], problem["field"]) == (429, "too_many_sends", "to")
    assert 1 <= int(headers["Retry-After"]) <= 600


async def test_a_prefix_velocity_trip_blocks_the_prefix_and_counts(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, otp={"prefix_max_sends": 2, "prefix_digits": 7}) as daemon:
        for number in ("+447911000001", "+447911000002", "+447911000003"):
            status, _, _ = await daemon.call("POST", "/v1/otp", {"to": number})
            assert status == 201
        status, problem, headers = await daemon.call("POST", "/v1/otp", {"to": "+447911000004"})
        assert (status, problem["code"]) == (429, "prefix_blocked")
        assert int(headers["Retry-After"]) > 3000
        assert daemon.api.otp.stats.prefix_trips == 1
        assert daemon.api.otp.stats.prefix_limited == 1
        status, _, _ = await daemon.call("POST", "/v1/otp", {"to": "+4915112345678"})
        assert status == 201


async def test_a_key_limited_to_countries_cannot_request_codes_elsewhere(daemon: Daemon) -> None:
    german = await daemon.new_key("german", countries=["DE"])
    status, problem, _ = await daemon.call("POST", "/v1/otp", {"to": UK}, key=german)
    assert (status, problem["code"], problem["field"]) == (403, "country_not_allowed", "to")
    assert daemon.api.otp.stats.country_refused == 1


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({}, "missing_field", "to"),
        ({"to": UK, "code_length": 3}, "out_of_range", "code_length"),
        ({"to": UK, "code_length": 11}, "out_of_range", "code_length"),
        ({"to": UK, "ttl": 59}, "out_of_range", "ttl"),
        ({"to": UK, "ttl": 3601}, "out_of_range", "ttl"),
        ({"to": UK, "code": "12"}, "invalid_format", "code"),
        ({"to": UK, "template": "no code here"}, "invalid_template", "template"),
        ({"to": UK, "locale": "xx"}, "unknown_locale", "locale"),
        ({"to": "+4412"}, "invalid_number", "to"),
        ({"to": UK, "pin": "1"}, "unknown_field", "pin"),
    ],
)
async def test_invalid_otp_requests_name_their_field(
    daemon: Daemon, body: dict[str, Any], code: str, field: str
) -> None:
    status, problem, _ = await daemon.call("POST", "/v1/otp", body)
    assert status == 422, problem
    assert (problem["code"], problem["field"]) == (code, field)


async def test_checks_validate_the_code_and_the_id(daemon: Daemon) -> None:
    _, otp, _ = await daemon.call("POST", "/v1/otp", {"to": UK})
    status, problem, _ = await daemon.call("POST", f"/v1/otp/{otp['id']}/check", {"code": ""})
    assert (status, problem["field"]) == (422, "code")
    status, problem, _ = await daemon.call("POST", f"/v1/otp/otp_{'0' * 20}/check", {"code": "1"})
    assert (status, problem["code"]) == (404, "not_found")
    other = await daemon.new_key("other")
    status, _, _ = await daemon.call("GET", f"/v1/otp/{otp['id']}", key=other)
    assert status == 404


async def test_custom_template_length_and_client_code(daemon: Daemon) -> None:
    _, otp, _ = await daemon.call(
        "POST",
        "/v1/otp",
        {"to": UK, "template": "PIN {{code}} for {{brand}}", "code_length": 8},
    )
    received = await daemon.received_by_handset(otp["message_id"])
    assert re.fullmatch(r"PIN \d{8} for Tandem", received.text)
    _, mine, _ = await daemon.call("POST", "/v1/otp", {"to": "+4915112345678", "code": "AB12"})
    assert "AB12" in (await daemon.received_by_handset(mine["message_id"])).text


async def test_the_store_keeps_a_hash_of_the_code_never_the_code(daemon: Daemon) -> None:
    _, otp, _ = await daemon.call("POST", "/v1/otp", {"to": UK, "code": "918273"})
    database = sqlite3.connect(daemon.gateway.config.store_path)
    try:
        [row] = database.execute("SELECT * FROM otp WHERE id = ?", (otp["id"],)).fetchall()
    finally:
        database.close()
    assert "918273" not in repr(row)
    assert daemon.api.otp.hasher.matches(otp["id"], "918273", row[4])


async def test_a_resend_with_the_callers_own_code_replaces_the_pending_code(
    daemon: Daemon,
) -> None:
    _, first, _ = await daemon.call("POST", "/v1/otp", {"to": UK, "code": "1111"})
    _, again, _ = await daemon.call("POST", "/v1/otp", {"to": UK, "code": "2222"})
    assert (again["id"], again["sends"]) == (first["id"], 2)
    assert "2222" in (await daemon.received_by_handset(again["message_id"])).text
    path = f"/v1/otp/{first['id']}/check"
    _, check, _ = await daemon.call("POST", path, {"code": "1111"})
    assert check["status"] == "pending"
    _, check, _ = await daemon.call("POST", path, {"code": "2222"})
    assert check["status"] == "approved"
