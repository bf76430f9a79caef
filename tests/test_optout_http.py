"""`/v1/optouts` of a running daemon over HTTP: PUT, GET with filters and pages, DELETE by
scope, the history, the `optouts` key scope, keys limited to some senders, and the OpenAPI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.store.base import OptOutVia
from tests.test_http_harness import Daemon, running_daemon

NUMBER = "+447911123456"


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    async with running_daemon(
        tmp_path,
        key_settings={"scopes": ["messages", "optouts"]},
        extra={"sender_groups": [{"name": "brand", "senders": ["Shop", "12345"]}]},
    ) as running:
        yield running


async def test_put_blocks_at_once_and_a_second_put_changes_nothing(daemon: Daemon) -> None:
    status, body, _ = await daemon.call(
        "PUT", f"/v1/optouts/{NUMBER}", {"sender": "12345", "reason": "asked by phone"}
    )
    assert status == 201, body
    assert body["changed"] and body["optouts"][0]["sender"] == "12345"
    assert body["optouts"][0]["via"] == "api" and body["optouts"][0]["source"] == "key:acme"
    status, problem, _ = await daemon.call(
        "POST", "/v1/messages", {"to": NUMBER, "from": "12345", "text": "Sale"}
    )
    assert status == 403 and problem["code"] == "recipient_opted_out"
    status, body, _ = await daemon.call("PUT", f"/v1/optouts/{NUMBER}", {"sender": "12345"})
    assert status == 200 and not body["changed"]


async def test_group_and_all_scopes_and_their_validation(daemon: Daemon) -> None:
    status, body, _ = await daemon.call(
        "PUT", f"/v1/optouts/{NUMBER}", {"scope": "group", "group": "brand"}
    )
    assert status == 201, body
    assert daemon.gateway.optouts.blocks(NUMBER[1:], "Shop")
    status, problem, _ = await daemon.call(
        "PUT", f"/v1/optouts/{NUMBER}", {"scope": "group", "group": "nope"}
    )
    assert status == 422 and problem["field"] == "group"
    status, problem, _ = await daemon.call("PUT", f"/v1/optouts/{NUMBER}", {"scope": "sender"})
    assert status == 422 and problem["field"] == "sender"
    status, problem, _ = await daemon.call("PUT", "/v1/optouts/12", {"scope": "all"})
    assert status == 422 and problem["code"] == "invalid_number"
    status, body, _ = await daemon.call("PUT", "/v1/optouts/447911123457", {"scope": "all"})
    assert status == 201 and body["number"] == "+447911123457"


async def test_list_filters_and_pages(daemon: Daemon) -> None:
    registry = daemon.gateway.optouts
    numbers = [f"4479111234{index:02d}" for index in range(10, 15)]
    for number in numbers:
        await registry.opt_out(number, sender="999")
    await registry.opt_out(numbers[0], sender="Shop")  # the group
    seen: list[str] = []
    after = ""
    while True:
        status, page, _ = await daemon.call("GET", f"/v1/optouts?sender=999&limit=2{after}")
        assert status == 200, page
        seen += [entry["number"] for entry in page["optouts"]]
        assert all(entry["sender"] == "999" for entry in page["optouts"])
        if page["next"] is None:
            break
        after = f"&after={page['next']}"
    assert seen == ["+" + n for n in numbers]
    status, page, _ = await daemon.call("GET", "/v1/optouts?scope=group")
    assert [(e["number"], e["group"]) for e in page["optouts"]] == [("+" + numbers[0], "brand")]
    status, page, _ = await daemon.call("GET", f"/v1/optouts?number=%2B{numbers[0]}")
    assert len(page["optouts"]) == 2
    status, problem, _ = await daemon.call("GET", "/v1/optouts?after=garbage")
    assert status == 422 and problem["field"] == "after"
    status, problem, _ = await daemon.call("GET", "/v1/optouts?limit=0")
    assert status == 422 and problem["field"] == "limit"


async def test_delete_one_scope_or_all_and_404_when_none(daemon: Daemon) -> None:
    registry = daemon.gateway.optouts
    await registry.opt_out(NUMBER[1:], sender="999")
    await registry.opt_out(NUMBER[1:], all_senders=True)
    status, body, _ = await daemon.call("DELETE", f"/v1/optouts/{NUMBER}?scope=all")
    assert status == 200, body
    assert [e["scope"] for e in body["optouts"]] == ["all"]
    assert registry.blocks(NUMBER[1:], "999") and not registry.blocks(NUMBER[1:], "Other")
    status, body, _ = await daemon.call("DELETE", f"/v1/optouts/{NUMBER}")
    assert status == 200 and [e["sender"] for e in body["optouts"]] == ["999"]
    assert not registry.blocks(NUMBER[1:], "999")
    status, problem, _ = await daemon.call("DELETE", f"/v1/optouts/{NUMBER}")
    assert status == 404, problem


async def test_history_lists_every_change_with_its_origin(daemon: Daemon) -> None:
    registry = daemon.gateway.optouts
    await registry.opt_out(
        NUMBER[1:],
        sender="12345",
        via=OptOutVia.KEYWORD,
        keyword="STOP",
        lenient=True,
        source="sim",
    )
    await daemon.call("DELETE", f"/v1/optouts/{NUMBER}?reason=called%20us")
    status, body, _ = await daemon.call("GET", f"/v1/optouts/{NUMBER}/history?limit=1")
    assert status == 200, body
    first = body["history"][0]
    assert (first["action"], first["via"], first["keyword"], first["lenient"], first["source"]) == (
        "opt_out",
        "keyword",
        "STOP",
        True,
        "sim",
    )
    assert first["group"] == "brand"
    status, body, _ = await daemon.call("GET", f"/v1/optouts/{NUMBER}/history?after={body['next']}")
    (second,) = body["history"]
    assert (second["action"], second["via"], second["source"], second["reason"]) == (
        "opt_in",
        "api",
        "key:acme",
        "called us",
    )


async def test_the_optouts_scope_is_required_and_sender_limited_keys_stay_in_their_lane(
    daemon: Daemon,
) -> None:
    plain = await daemon.new_key("plain")  # messages and otp only
    status, problem, _ = await daemon.call("GET", "/v1/optouts", key=plain)
    assert status == 403 and problem["code"] == "insufficient_scope"
    limited = await daemon.new_key("limited", scopes=["optouts"], senders="Shop")
    status, _, _ = await daemon.call(
        "PUT", f"/v1/optouts/{NUMBER}", {"sender": "Shop"}, key=limited
    )
    assert status == 201
    status, problem, _ = await daemon.call(
        "PUT", f"/v1/optouts/{NUMBER}", {"sender": "Other"}, key=limited
    )
    assert status == 403 and problem["code"] == "sender_not_allowed"
    status, problem, _ = await daemon.call(
        "PUT", f"/v1/optouts/{NUMBER}", {"scope": "all"}, key=limited
    )
    assert status == 403
    status, _, _ = await daemon.call("GET", "/v1/optouts", key=limited)
    assert status == 403
    status, page, _ = await daemon.call("GET", "/v1/optouts?sender=Shop", key=limited)
    assert status == 200 and len(page["optouts"]) == 1
    status, _, _ = await daemon.call("DELETE", f"/v1/optouts/{NUMBER}", key=limited)
    assert status == 403
    status, _, _ = await daemon.call(
        "DELETE", f"/v1/optouts/{NUMBER}?scope=sender&sender=Shop", key=limited
    )
    assert status == 200


async def test_the_openapi_document_describes_the_optout_operations(daemon: Daemon) -> None:
    status, document, _ = await daemon.call("GET", "/openapi.json")
    assert status == 200
    paths = document["paths"]
    assert set(paths["/v1/optouts/{number}"]) == {"put", "delete"}
    assert "OptOutPutRequest" in document["components"]["schemas"]
    assert paths["/v1/optouts/{number}/history"]["get"]["parameters"][0]["name"] == "number"
