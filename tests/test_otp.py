"""OTP rules without I/O: codes, hashes, expiry, templates and the SMS-pumping limits (the
checks themselves are the store's one statement: tests/test_store_http_state.py)."""

from __future__ import annotations

import logging
import string
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.otp import (
    CodeHasher,
    OtpStats,
    OtpStatus,
    SendLimiter,
    current_status,
    generate_code,
    render_template,
    template_refusal,
)
from gateway.store.base import OtpRecord

HASHER = CodeHasher(b"p" * 32)


def pending(code: str = "123456", *, expires_at: float = 1000.0, max_checks: int = 5) -> OtpRecord:
    return OtpRecord(
        id="otp_1",
        key_id="key_1",
        to="+447911123456",
        status="pending",
        code_hash=HASHER.hash("otp_1", code),
        code_length=len(code),
        created_at=0.0,
        expires_at=expires_at,
        max_checks=max_checks,
    )


@pytest.mark.parametrize("length", [4, 6, 10])
def test_generated_codes_have_the_asked_length_in_digits(length: int) -> None:
    codes = {generate_code(length) for _ in range(200)}
    assert all(len(c) == length and c.isdigit() for c in codes)
    assert len(codes) > 150  # random, not a counter or a constant


def test_leading_zeros_are_kept() -> None:
    assert any(generate_code(4).startswith("0") for _ in range(2000))


@given(st.text(alphabet=string.digits, min_size=4, max_size=10))
def test_the_hash_never_contains_the_code_and_only_the_code_matches(code: str) -> None:
    digest = HASHER.hash("otp_x", code)
    assert len(digest) == 64 and digest != code
    assert HASHER.matches("otp_x", code, digest)
    assert not HASHER.matches("otp_x", code + "0", digest)
    assert not HASHER.matches("otp_y", code, digest)  # bound to its verification
    assert not CodeHasher(b"q" * 32).matches("otp_x", code, digest)  # and to the pepper


def test_the_pepper_file_is_created_private_once_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "otp.key"
    first = CodeHasher.from_file(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert CodeHasher.from_file(path).hash("a", "1234") == first.hash("a", "1234")


def test_a_pending_code_expires_at_its_expiry() -> None:
    record = pending(expires_at=100.0)
    assert current_status(record, 99.9) is OtpStatus.PENDING
    assert current_status(record, 100.0) is OtpStatus.EXPIRED
    record.status = "canceled"
    assert current_status(record, 100.0) is OtpStatus.CANCELED


def test_templates_fill_code_minutes_and_brand() -> None:
    text = render_template(
        "{{brand}}: {{ code }} ({{ttl_minutes}} min)", code="0042", ttl_seconds=300, brand="Acme"
    )
    assert text == "Acme: 0042 (5 min)"
    assert template_refusal("no placeholder") is not None
    assert template_refusal("only {{brand}}") is not None
    assert template_refusal("code {{code}}") is None


def limiter(**overrides: float) -> SendLimiter:
    settings: dict[str, float] = {
        "max_sends": 5,
        "send_window": 600.0,
        "prefix_digits": 6,
        "prefix_max_sends": 3,
        "prefix_window": 3600.0,
        "prefix_block_seconds": 1800.0,
    }
    settings.update(overrides)
    return SendLimiter(**settings, stats=OtpStats())  # type: ignore[arg-type]


def test_at_most_max_sends_per_destination_within_the_window() -> None:
    limits = limiter(prefix_max_sends=0)
    for second in range(5):
        assert limits.refusal("+447911123456", float(second)) is None
        limits.record_send("+447911123456", float(second))
    refusal = limits.refusal("+447911123456", 10.0)
    assert refusal is not None and refusal.code == "too_many_sends" and refusal.http_status == 429
    assert refusal.retry_after == pytest.approx(590.0)
    assert limits.refusal("+447911123457", 10.0) is None  # another number is unaffected
    assert limits.refusal("+447911123456", 600.5) is None  # the first send left the window
    assert limits.stats.destination_limited == 1


def test_a_prefix_over_its_velocity_limit_is_blocked_for_a_while_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    limits = limiter()
    numbers = [f"+88234{n:06d}" for n in range(4)]
    with caplog.at_level(logging.WARNING, logger="tandem.otp"):
        for n, number in enumerate(numbers):
            assert limits.refusal(number, float(n)) is None
            limits.record_send(number, float(n))
    assert limits.stats.prefix_trips == 1
    assert "+882340" in caplog.text
    refusal = limits.refusal("+882340999999", 10.0)
    assert refusal is not None and refusal.code == "prefix_blocked"
    assert refusal.retry_after == pytest.approx(1800.0 - 7.0)
    assert limits.refusal("+447911123456", 10.0) is None  # other prefixes still flow
    assert limits.blocked_prefixes(10.0) == {"882340": 1803.0}
    assert limits.refusal("+882340999999", 1803.0) is None  # the block ends


def test_sweep_forgets_counters_outside_their_windows() -> None:
    limits = limiter()
    limits.record_send("+447911123456", 0.0)
    limits.sweep(10_000.0)
    assert limits._by_destination == {} and limits._by_prefix == {}
