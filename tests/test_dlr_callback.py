"""HTTP status callbacks: body, signature, replay protection and the retry schedule."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dlr.callback import (
    SIGNATURE_HEADER,
    CallbackSegment,
    RetrySchedule,
    callback_body,
    is_retryable,
    sign,
    verify,
)
from dlr.status import MessageStatus, is_final

SECRET = "whsec_test"
NOW = 1_717_000_000


def _body() -> bytes:
    return callback_body(
        message_id="01HV6Z3K9Q",
        status=MessageStatus.DELIVERED,
        status_at=1_717_000_000.25,
        to="+447700900123",
        reference="order-77",
        segments=[CallbackSegment(0, "delivered", carrier_id="2587")],
    )


def test_callback_body_is_compact_sorted_json_with_the_facts() -> None:
    body = _body()
    document = json.loads(body)
    assert document == {
        "message_id": "01HV6Z3K9Q",
        "status": "delivered",
        "final": True,
        "status_at": "2024-05-29T16:26:40.250+00:00",
        "to": "+447700900123",
        "reference": "order-77",
        "segments": [{"index": 0, "status": "delivered", "carrier_id": "2587"}],
    }
    assert body == json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


def test_intermediate_status_is_not_final_in_the_body() -> None:
    body = callback_body(message_id="m", status=MessageStatus.ENROUTE, status_at=0.0)
    assert json.loads(body)["final"] is False


def test_signature_is_hmac_sha256_of_timestamp_and_body() -> None:
    body = _body()
    header = sign(SECRET, body, NOW)
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + body, hashlib.sha256).hexdigest()
    assert header == f"t={NOW},v1={expected}"
    assert SIGNATURE_HEADER == "X-Tandem-Signature"
    assert verify(SECRET, body, header, now=NOW + 10)


def test_tampered_body_or_wrong_secret_fails_verification() -> None:
    body = _body()
    header = sign(SECRET, body, NOW)
    assert not verify(SECRET, body.replace(b"delivered", b"undeliverable", 1), header, now=NOW)
    assert not verify("other", body, header, now=NOW)


def test_replayed_request_outside_tolerance_is_refused() -> None:
    body = _body()
    header = sign(SECRET, body, NOW)
    assert verify(SECRET, body, header, now=NOW + 300, tolerance=300)
    assert not verify(SECRET, body, header, now=NOW + 301, tolerance=300)
    # Moving the timestamp forward breaks the signature, so replays cannot be refreshed.
    refreshed = header.replace(f"t={NOW}", f"t={NOW + 1000}")
    assert not verify(SECRET, body, refreshed, now=NOW + 1000)


def test_secret_rotation_accepts_either_secret_and_either_signature() -> None:
    body = _body()
    old, new = sign("old", body, NOW), sign("new", body, NOW)
    both = old + ",v1=" + new.split("v1=")[1]
    assert verify(["new", "old"], body, old, now=NOW)
    assert verify("new", body, both, now=NOW)
    assert not verify(["a", "b"], body, both, now=NOW)


@pytest.mark.parametrize("header", ["", "t=abc,v1=00", "v1=00", f"t={NOW}", "garbage"])
def test_malformed_headers_fail_verification(header: str) -> None:
    assert not verify(SECRET, _body(), header, now=NOW)


def test_retry_schedule_backs_off_then_gives_up() -> None:
    schedule = RetrySchedule(initial_delay=10, factor=2, max_delay=60, give_up_after=200)
    assert [schedule.delay(attempt) for attempt in range(1, 6)] == [10, 20, 40, 60, 60]
    first = 1000.0
    assert schedule.next_attempt(1, first, now=first) == 1010.0
    assert schedule.next_attempt(4, first, now=first + 130) == first + 190
    assert schedule.next_attempt(5, first, now=first + 150) is None
    assert schedule.delay(10_000) == 60  # no overflow for long outages
    with pytest.raises(ValueError):
        schedule.delay(0)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (None, True),
        (500, True),
        (503, True),
        (429, True),
        (408, True),
        (200, False),
        (400, False),
        (401, False),
        (404, False),
        (410, False),
    ],
)
def test_which_answers_are_retried(status: int | None, expected: bool) -> None:
    assert is_retryable(status) is expected


def _reference_body(
    *,
    message_id: str,
    status: MessageStatus,
    status_at: float,
    to: str | None,
    reference: str | None,
    error: str | None,
    network_error: str | None,
    segments: list[CallbackSegment],
) -> bytes:
    """The body as json.dumps words it: callback_body must produce exactly these bytes."""
    document: dict[str, object] = {
        "message_id": message_id,
        "status": status.value,
        "final": is_final(status),
        "status_at": datetime.fromtimestamp(status_at, UTC).isoformat(timespec="milliseconds"),
    }
    optional = {"to": to, "reference": reference, "error": error, "network_error": network_error}
    document.update({name: value for name, value in optional.items() if value is not None})
    if segments:
        document["segments"] = [
            {
                name: value
                for name, value in (
                    ("index", s.index),
                    ("status", s.status),
                    ("carrier_id", s.carrier_id),
                    ("error", s.error),
                )
                if value is not None
            }
            for s in segments
        ]
    return json.dumps(document, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)


@settings(max_examples=400, deadline=None)
@given(
    message_id=_TEXT,
    status=st.sampled_from(list(MessageStatus)),
    status_at=st.one_of(
        st.floats(min_value=0, max_value=4e9, allow_nan=False),
        st.integers(1_000_000_000, 2_000_000_000).map(lambda s: s + 0.9999995),
        st.integers(1_000_000_000, 2_000_000_000).map(lambda s: s + 0.0005),
    ),
    to=st.none() | _TEXT,
    reference=st.none() | _TEXT,
    error=st.none() | _TEXT,
    network_error=st.none() | _TEXT,
    segments=st.lists(
        st.builds(
            CallbackSegment,
            index=st.integers(0, 255),
            status=_TEXT,
            carrier_id=st.none() | _TEXT,
            error=st.none() | _TEXT,
        ),
        max_size=3,
    ),
)
def test_callback_body_is_byte_for_byte_what_json_dumps_makes(**fields: Any) -> None:
    assert callback_body(**fields) == _reference_body(**fields)


@pytest.mark.parametrize("status_at", [0.0, 0.0004999, 0.9995, 1_717_000_000.9999996, 1e9 - 0.5])
def test_status_at_rounds_like_datetime_isoformat(status_at: float) -> None:
    body = callback_body(message_id="m", status=MessageStatus.DELIVERED, status_at=status_at)
    expected = datetime.fromtimestamp(status_at, UTC).isoformat(timespec="milliseconds")
    assert json.loads(body)["status_at"] == expected
