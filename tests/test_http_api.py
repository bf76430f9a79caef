"""The HTTP API through a real client against the running daemon and its simulator link:
messages, preview, cancel, auth, limits, idempotency and every validation error."""

from __future__ import annotations

import asyncio
import base64
import socket
from pathlib import Path
from typing import Any

import pytest

from gateway.keys import revoke_key
from tests.test_http_harness import Daemon, running_daemon
from tests.waiting import wait_for

UK = "+447911123456"
UK_2 = "+447911123457"
DE = "+4915112345678"


@pytest.fixture
async def daemon(tmp_path: Path) -> Any:
    async with running_daemon(tmp_path, http={"key_cache_seconds": 0.0}) as running:
        yield running


async def test_a_message_is_accepted_stored_sent_and_delivered(daemon: Daemon) -> None:
    status, body, _ = await daemon.call(
        "POST",
        "/v1/messages",
        {"to": "+44 7911 123456", "from": "Acme", "text": "hello", "reference": "r-1"},
    )
    assert status == 202, body
    assert body["to"] == UK
    assert body["parts"] == 1
    assert body["encoding"] == "gsm7"
    assert body["route"] == "everything"
    assert body["reference"] == "r-1"
    message_id = body["id"]

    async def delivered() -> bool:
        return await daemon.message_status(message_id) == "delivered"

    await wait_for(delivered, "the message delivered")
    status, details, _ = await daemon.call("GET", f"/v1/messages/{message_id}")
    assert details["from"] == "Acme"
    assert details["link"] == "sim"
    [segment] = details["segments"]
    assert segment["status"] == "delivered"
    assert segment["carrier_id"]
    assert [entry["status"] for entry in details["history"] if entry["segment"] is None][:1] == [
        "queued"
    ]
    assert details["created_at"].endswith("Z")


async def test_a_list_of_recipients_gives_one_id_each_in_order(daemon: Daemon) -> None:
    status, body, _ = await daemon.call(
        "POST", "/v1/messages", {"to": [UK, UK_2, DE], "text": "hi all"}
    )
    assert status == 202, body
    assert [m["to"] for m in body["messages"]] == [UK, UK_2, DE]
    assert len({m["id"] for m in body["messages"]}) == 3


async def test_a_bad_recipient_in_a_list_is_named_and_nothing_is_stored(daemon: Daemon) -> None:
    before = daemon.gateway.message_store.stats().operations
    status, body, headers = await daemon.call(
        "POST", "/v1/messages", {"to": [UK, "+4412", DE], "text": "hi"}
    )
    assert status == 422
    assert headers["Content-Type"].startswith("application/problem+json")
    assert body["code"] == "invalid_number"
    assert body["field"] == "to[1]"
    assert body["type"] == "urn:tandem:problem:invalid_number"
    assert daemon.gateway.message_store.stats().operations == before


async def test_long_unicode_text_is_ucs2_in_several_parts(daemon: Daemon) -> None:
    status, body, _ = await daemon.call("POST", "/v1/messages", {"to": UK, "text": "Ж" * 71})
    assert status == 202, body
    assert (body["encoding"], body["parts"]) == ("ucs2", 2)


async def test_binary_content_is_sent_with_its_data_coding(daemon: Daemon) -> None:
    payload = base64.b64encode(bytes(range(10))).decode()
    status, body, _ = await daemon.call(
        "POST", "/v1/messages", {"to": UK, "binary": payload, "data_coding": 4}
    )
    assert status == 202, body
    assert body["encoding"] == "binary"


async def test_preview_counts_parts_and_names_the_route_without_storing(daemon: Daemon) -> None:
    before = daemon.gateway.message_store.stats().operations
    status, body, _ = await daemon.call(
        "POST", "/v1/messages/preview", {"to": UK, "text": "a" * 161}
    )
    assert status == 200, body
    assert body["encoding"] == "gsm7"
    assert body["characters"] == 161
    assert body["parts"] == 2
    assert body["route"]["route"] == "everything"
    assert body["route"]["next_target"] == "sim"
    assert body["to"] == UK
    status, body, _ = await daemon.call(
        "POST", "/v1/messages/preview", {"to": "+4412", "text": "hi"}
    )
    assert status == 200
    assert body["route"]["route"] is None
    assert body["route"]["refusal_code"]
    assert daemon.gateway.message_store.stats().operations == before


async def test_a_queued_message_can_be_canceled_and_a_sent_one_cannot(daemon: Daemon) -> None:
    status, body, _ = await daemon.call(
        "POST",
        "/v1/messages",
        {"to": UK, "text": "later", "send_at": "2099-01-01T00:00:00Z"},
    )
    assert status == 202
    later = body["id"]
    status, details, _ = await daemon.call("DELETE", f"/v1/messages/{later}")
    assert status == 200, details
    assert details["status"] == "deleted"
    assert later not in daemon.gateway.queue.core
    status, problem, _ = await daemon.call("DELETE", f"/v1/messages/{later}")
    assert (status, problem["code"]) == (409, "not_cancellable")

    status, body, _ = await daemon.call("POST", "/v1/messages", {"to": UK, "text": "now"})
    now_id = body["id"]

    async def delivered() -> bool:
        return await daemon.message_status(now_id) == "delivered"

    await wait_for(delivered, "the message delivered")
    status, problem, _ = await daemon.call("DELETE", f"/v1/messages/{now_id}")
    assert (status, problem["code"]) == (409, "not_cancellable")


async def test_another_keys_message_is_not_found(daemon: Daemon) -> None:
    other = await daemon.new_key("other")
    _, body, _ = await daemon.call("POST", "/v1/messages", {"to": UK, "text": "mine"})
    status, problem, _ = await daemon.call("GET", f"/v1/messages/{body['id']}", key=other)
    assert (status, problem["code"], problem["field"]) == (404, "not_found", "id")
    status, problem, _ = await daemon.call("GET", "/v1/messages/not-an-id")
    assert status == 404


# --- auth ---------------------------------------------------------------------------------------


async def test_requests_without_a_key_are_refused_with_a_bearer_challenge(daemon: Daemon) -> None:
    async with daemon.session.post(daemon.url + "/v1/messages", json={}) as response:
        assert response.status == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        problem = await response.json(content_type=None)
    assert problem["code"] == "unauthorized"
    assert problem["field"] == "Authorization"


async def test_unknown_and_revoked_keys_are_refused(daemon: Daemon) -> None:
    status, problem, _ = await daemon.call("GET", "/v1/otp/otp_" + "0" * 20, key="tdm_nonsense")
    assert (status, problem["code"]) == (401, "invalid_key")
    doomed = await daemon.new_key("doomed")
    status, _, _ = await daemon.call("POST", "/v1/messages", {"to": UK, "text": "x"}, key=doomed)
    assert status == 202
    assert await revoke_key(daemon.gateway.message_store, "doomed")
    status, problem, _ = await daemon.call(
        "POST", "/v1/messages", {"to": UK, "text": "x"}, key=doomed
    )
    assert (status, problem["code"]) == (401, "invalid_key")


async def test_a_key_without_the_scope_or_sender_is_forbidden(daemon: Daemon) -> None:
    otp_only = await daemon.new_key("otp-only", scopes=["otp"])
    status, problem, _ = await daemon.call(
        "POST", "/v1/messages", {"to": UK, "text": "x"}, key=otp_only
    )
    assert (status, problem["code"]) == (403, "insufficient_scope")
    branded = await daemon.new_key("branded", senders=r"Acme\w*")
    status, problem, _ = await daemon.call(
        "POST", "/v1/messages", {"to": UK, "from": "Bank", "text": "x"}, key=branded
    )
    assert (status, problem["code"], problem["field"]) == (403, "sender_not_allowed", "from")
    status, _, _ = await daemon.call(
        "POST", "/v1/messages", {"to": UK, "from": "AcmeShop", "text": "x"}, key=branded
    )
    assert status == 202


async def test_a_key_limited_to_countries_cannot_send_elsewhere(daemon: Daemon) -> None:
    german = await daemon.new_key("german", countries=["DE"])
    status, problem, _ = await daemon.call(
        "POST", "/v1/messages", {"to": [DE, UK], "text": "x"}, key=german
    )
    assert (status, problem["code"], problem["field"]) == (403, "country_not_allowed", "to[1]")
    status, _, _ = await daemon.call("POST", "/v1/messages", {"to": DE, "text": "x"}, key=german)
    assert status == 202


# --- limits -------------------------------------------------------------------------------------


async def test_requests_above_the_keys_rate_get_429_with_retry_after(daemon: Daemon) -> None:
    slow = await daemon.new_key("slow", requests_per_second=2)
    statuses = []
    for _ in range(3):
        status, problem, headers = await daemon.call("GET", "/v1/otp/otp_" + "0" * 20, key=slow)
        statuses.append(status)
    assert statuses == [404, 404, 429]
    assert problem["code"] == "rate_limited"
    assert int(headers["Retry-After"]) >= 1


async def test_messages_above_the_keys_rate_get_429(daemon: Daemon) -> None:
    trickle = await daemon.new_key("trickle", messages_per_second=3)
    status, _, _ = await daemon.call(
        "POST", "/v1/messages", {"to": [UK, UK_2, DE, UK, UK_2], "text": "x"}, key=trickle
    )
    assert status == 202  # a full bucket lets a larger batch through, in debt
    status, problem, headers = await daemon.call(
        "POST", "/v1/messages", {"to": UK, "text": "x"}, key=trickle
    )
    assert (status, problem["code"]) == (429, "rate_limited")
    assert int(headers["Retry-After"]) >= 1


# --- idempotency --------------------------------------------------------------------------------


async def test_a_repeated_idempotency_key_returns_the_first_answer_and_sends_nothing(
    daemon: Daemon,
) -> None:
    headers = {"Idempotency-Key": "order-42"}
    request = {"to": UK, "text": "once"}
    first = await daemon.call("POST", "/v1/messages", request, headers=headers)
    second = await daemon.call("POST", "/v1/messages", {"text": "once", "to": UK}, headers=headers)
    assert first[0] == second[0] == 202
    assert first[1] == second[1]
    assert second[2]["Idempotent-Replayed"] == "true"
    assert daemon.api.stats.messages_accepted == 1

    status, problem, _ = await daemon.call(
        "POST", "/v1/messages", {"to": UK, "text": "twice"}, headers=headers
    )
    assert (status, problem["code"], problem["field"]) == (
        422,
        "idempotency_key_reused",
        "Idempotency-Key",
    )
    other = await daemon.new_key("other-tenant")
    status, body, _ = await daemon.call("POST", "/v1/messages", request, headers=headers, key=other)
    assert status == 202 and body["id"] != first[1]["id"]  # keys are scoped per API key


async def test_concurrent_requests_with_one_idempotency_key_send_once(daemon: Daemon) -> None:
    headers = {"Idempotency-Key": "burst"}
    results = await asyncio.gather(
        *(
            daemon.call("POST", "/v1/otp", {"to": UK, "code": "123456"}, headers=headers)
            for _ in range(5)
        )
    )
    assert {status for status, _, _ in results} == {201}
    assert len({body["id"] for _, body, _ in results}) == 1
    assert len({body["message_id"] for _, body, _ in results}) == 1
    assert daemon.api.otp.stats.sent == 1 and daemon.api.otp.stats.resent == 0


async def test_an_idempotency_key_must_be_printable_ascii(daemon: Daemon) -> None:
    status, problem, _ = await daemon.call(
        "POST", "/v1/messages", {"to": UK, "text": "x"}, headers={"Idempotency-Key": "x" * 256}
    )
    assert (status, problem["code"]) == (400, "invalid_idempotency_key")


# --- validation ---------------------------------------------------------------------------------

VALIDATION_CASES = [
    ({"text": "x"}, "missing_field", "to"),
    ({"to": UK}, "missing_content", "text"),
    ({"to": UK, "text": "x", "binary": "AAAA"}, "conflicting_content", "binary"),
    ({"to": UK, "binary": "***"}, "invalid_base64", "binary"),
    ({"to": UK, "binary": "AAAA", "encoding": "ucs2"}, "conflicting_content", "encoding"),
    ({"to": UK, "text": "x", "data_coding": 8}, "conflicting_content", "data_coding"),
    ({"to": UK, "text": "x", "colour": "red"}, "unknown_field", "colour"),
    ({"to": 447911123456, "text": "x"}, "invalid_type", "to"),
    ({"to": [], "text": "x"}, "too_few_items", "to"),
    ({"to": [UK] * 1001, "text": "x"}, "too_many_items", "to"),
    ({"to": [UK, 5], "text": "x"}, "invalid_type", "to[1]"),
    ({"to": "", "text": "x"}, "too_short", "to"),
    ({"to": UK, "text": ""}, "too_short", "text"),
    ({"to": UK, "text": "x", "from": "A" * 17}, "too_long", "from"),
    ({"to": UK, "text": "x", "kind": "spam"}, "invalid_choice", "kind"),
    ({"to": UK, "text": "x", "encoding": "latin9"}, "invalid_choice", "encoding"),
    ({"to": UK, "text": "x", "validity": 10}, "out_of_range", "validity"),
    ({"to": UK, "text": "x", "validity": "600"}, "invalid_type", "validity"),
    ({"to": UK, "text": "x", "data_coding": 300, "binary": "AA=="}, "out_of_range", "data_coding"),
    ({"to": UK, "text": "x", "send_at": "tomorrow"}, "invalid_type", "send_at"),
    ({"to": UK, "text": "x", "send_at": "2030-01-01T09:00:00"}, "missing_timezone", "send_at"),
    ({"to": UK, "text": "x", "callback_url": "ftp://x"}, "invalid_format", "callback_url"),
    ({"to": UK, "text": "x", "reference": "r" * 65}, "too_long", "reference"),
    ({"to": "+4412", "text": "x"}, "invalid_number", "to"),
    ({"to": UK, "text": "Ж", "encoding": "gsm7"}, "unencodable_text", "text"),
    ({"to": UK, "text": "x" * 1600}, "too_many_parts", "text"),
]


@pytest.mark.parametrize(("body", "code", "field"), VALIDATION_CASES)
async def test_every_invalid_message_is_a_422_naming_its_field(
    daemon: Daemon, body: dict[str, Any], code: str, field: str
) -> None:
    status, problem, headers = await daemon.call("POST", "/v1/messages", body)
    assert status == 422, problem
    assert headers["Content-Type"].startswith("application/problem+json")
    assert (problem["code"], problem["field"]) == (code, field)
    assert problem["detail"].endswith(".")
    assert problem["status"] == 422
    assert problem["type"] == f"urn:tandem:problem:{code}"


async def test_a_body_that_is_not_json_is_a_400(daemon: Daemon) -> None:
    status, problem, _ = await daemon.call("POST", "/v1/messages", raw=b"{to: nowhere")
    assert (status, problem["code"]) == (400, "malformed_json")
    status, problem, _ = await daemon.call("POST", "/v1/messages", raw=b"[1, 2]")
    assert (status, problem["code"]) == (422, "invalid_type")


async def test_unknown_paths_and_methods_are_problems_too(daemon: Daemon) -> None:
    status, problem, _ = await daemon.call("GET", "/v1/nothing")
    assert (status, problem["code"]) == (404, "not_found")
    status, problem, headers = await daemon.call("PUT", "/v1/messages")
    assert (status, problem["code"]) == (405, "method_not_allowed")
    assert "POST" in headers["Allow"]


async def test_openapi_document_and_docs_page_are_served_self_contained(daemon: Daemon) -> None:
    async with daemon.session.get(daemon.url + "/openapi.json") as response:
        assert response.status == 200
        document = await response.json()
    assert document["openapi"].startswith("3.")
    assert set(document["paths"]) == {
        "/v1/messages",
        "/v1/messages/preview",
        "/v1/messages/{id}",
        "/v1/otp",
        "/v1/otp/{id}",
        "/v1/otp/{id}/check",
        "/v1/otp/{id}/cancel",
        "/v1/optouts",
        "/v1/optouts/{number}",
        "/v1/optouts/{number}/history",
        "/v1/inbound",
        "/v1/inbound/{id}",
    }
    schema = document["components"]["schemas"]["SendMessageRequest"]
    assert "from" in schema["properties"] and "from_" not in schema["properties"]
    async with daemon.session.get(daemon.url + "/docs") as response:
        assert response.status == 200
        assert response.content_type == "text/html"
        page = await response.text()
    assert "sendMessage" in page and "OtpSendRequest" in page
    assert "<script" not in page and "https://" not in page.split("</style>")[0]


async def test_a_taken_port_stops_the_start_with_a_clear_reason(tmp_path: Path) -> None:
    from gateway.app import Gateway
    from gateway.startup import StartupError
    from tests.test_http_harness import daemon_config

    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        gateway = Gateway(daemon_config(tmp_path, http={"port": port}))
        try:
            with pytest.raises(StartupError) as failed:
                await gateway.start()
            assert str(failed.value) == (
                f"cannot start [http] 127.0.0.1:{port}: address already in use"
            )
        finally:
            await gateway.stop()  # start undid itself already; stopping again is harmless


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"text": "x"}, "missing_field", "to"),
        ({"to": UK}, "missing_content", "text"),
        ({"to": UK, "text": "x", "binary": "AAAA"}, "conflicting_content", "binary"),
        ({"to": UK, "text": "Ж", "encoding": "gsm7"}, "unencodable_text", "text"),
        ({"to": [UK], "text": "x"}, "invalid_type", "to"),
    ],
)
async def test_invalid_previews_name_their_field(
    daemon: Daemon, body: dict[str, Any], code: str, field: str
) -> None:
    status, problem, _ = await daemon.call("POST", "/v1/messages/preview", body)
    assert status == 422, problem
    assert (problem["code"], problem["field"]) == (code, field)


async def test_validity_counts_from_the_scheduled_time(daemon: Daemon) -> None:
    status, body, _ = await daemon.call(
        "POST",
        "/v1/messages",
        {"to": UK, "text": "later", "send_at": "2099-01-01T00:00:00Z", "validity": 3600},
    )
    assert status == 202
    _, details, _ = await daemon.call("GET", f"/v1/messages/{body['id']}")
    assert details["send_at"].startswith("2099-01-01T00:00:00")
    assert details["validity_at"].startswith("2099-01-01T01:00:00")
