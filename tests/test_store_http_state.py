"""The HTTP API's small tables in the SQLite store: API keys, idempotency answers, OTP records."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.store.base import (
    ApiKeyRecord,
    ApiKeyStore,
    DuplicateKeyName,
    IdempotencyRecord,
    IdempotencyStore,
    OtpChange,
    OtpRecord,
    OtpStore,
)
from gateway.store.sqlstore import SqlMessageStore
from tests.store_backends import BACKENDS, store_factory


@pytest.fixture(params=BACKENDS)
async def store(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[SqlMessageStore]:
    async for make in store_factory(request.param, tmp_path):
        s = make("tandem.db")
        await s.open()
        yield s
        await s.close()


def api_key(name: str, key_id: str, key_hash: str) -> ApiKeyRecord:
    return ApiKeyRecord(
        id=key_id,
        name=name,
        key_hash=key_hash,
        prefix="tdm_abcdef",
        scopes=("messages", "otp"),
        created_at=float(len(key_id)),
        callback_secret="whsec_x",
        countries=("GB", "DE"),
        requests_per_second=5.0,
    )


async def test_the_sqlite_store_implements_every_http_state_protocol(
    store: SqlMessageStore,
) -> None:
    assert isinstance(store, ApiKeyStore)
    assert isinstance(store, IdempotencyStore)
    assert isinstance(store, OtpStore)


async def test_api_keys_are_found_by_hash_and_name_and_names_are_unique(
    store: SqlMessageStore,
) -> None:
    shop = api_key("shop", "key_1", "h1")
    await store.save_api_key(shop)
    await store.save_api_key(api_key("bank", "key_22", "h2"))

    assert await store.find_api_key("h1") == shop
    assert await store.find_api_key_by_name("shop") == shop
    assert await store.find_api_key("nope") is None
    assert [k.name for k in await store.list_api_keys()] == ["shop", "bank"]
    with pytest.raises(DuplicateKeyName, match="exists"):
        await store.save_api_key(api_key("shop", "key_333", "h3"))


async def test_a_key_is_revoked_once_by_name_or_id(store: SqlMessageStore) -> None:
    await store.save_api_key(api_key("shop", "key_1", "h1"))

    assert await store.revoke_api_key("key_1", at=7.0)
    assert not await store.revoke_api_key("shop", at=8.0)
    revoked = await store.find_api_key("h1")
    assert revoked is not None and revoked.revoked_at == 7.0


async def test_idempotency_answers_are_kept_for_the_window_then_purged(
    store: SqlMessageStore,
) -> None:
    first = IdempotencyRecord("key_1", "k-1", "fp", 202, b'{"id":"m1"}', created_at=100.0)
    await store.save_idempotency(first)

    assert await store.find_idempotency("key_1", "k-1", newer_than=99.0) == first
    assert await store.find_idempotency("key_2", "k-1", newer_than=99.0) is None  # per API key
    assert await store.find_idempotency("key_1", "k-1", newer_than=100.0) is None  # too old

    later = IdempotencyRecord("key_1", "k-1", "fp2", 201, b"{}", created_at=200.0)
    await store.save_idempotency(later)
    assert await store.find_idempotency("key_1", "k-1", newer_than=150.0) == later
    assert await store.purge_idempotency(older_than=300.0) == 1
    assert await store.find_idempotency("key_1", "k-1", newer_than=0.0) is None


def verification(*, max_checks: int = 5, expires_at: float = 301.0) -> OtpRecord:
    return OtpRecord(
        id="otp_1",
        key_id="key_1",
        to="+447911123456",
        status="pending",
        code_hash="right",
        code_length=6,
        created_at=1.0,
        expires_at=expires_at,
        max_checks=max_checks,
        updated_at=1.0,
    )


async def test_an_otp_record_is_created_and_read_back(store: SqlMessageStore) -> None:
    record = verification()
    await store.create_otp(record)
    assert await store.get_otp("otp_1") == record
    assert await store.get_otp("otp_2") is None


async def test_the_right_code_approves_once(store: SqlMessageStore) -> None:
    await store.create_otp(verification())
    first = await store.check_otp("otp_1", key_id="key_1", code_hash="right", now=10.0)
    assert first is not None and first.changed
    assert (first.record.status, first.record.checks, first.record.updated_at) == (
        "approved",
        1,
        10.0,
    )
    again = await store.check_otp("otp_1", key_id="key_1", code_hash="right", now=11.0)
    assert again == OtpChange(first.record, False)


async def test_wrong_codes_count_down_to_max_attempts_reached(store: SqlMessageStore) -> None:
    await store.create_otp(verification(max_checks=3))
    changes = [
        await store.check_otp("otp_1", key_id="key_1", code_hash="wrong", now=10.0)
        for _ in range(3)
    ]
    assert [(c.record.status, c.record.checks) for c in changes if c] == [
        ("pending", 1),
        ("pending", 2),
        ("max_attempts_reached", 3),
    ]
    late = await store.check_otp("otp_1", key_id="key_1", code_hash="right", now=10.0)
    assert late is not None and not late.changed  # the right code is too late now
    assert (late.record.status, late.record.checks) == ("max_attempts_reached", 3)


async def test_a_check_at_or_after_expiry_marks_it_expired_and_uses_no_attempt(
    store: SqlMessageStore,
) -> None:
    await store.create_otp(verification(expires_at=100.0))
    change = await store.check_otp("otp_1", key_id="key_1", code_hash="right", now=100.0)
    assert change is not None and not change.changed
    assert (change.record.status, change.record.checks) == ("expired", 0)


async def test_a_cancel_is_final_and_a_resend_changes_no_status(
    store: SqlMessageStore,
) -> None:
    await store.create_otp(verification())
    resent = await store.record_otp_send(
        "otp_1", key_id="key_1", message_id="m2", code_hash="new", code_length=4, now=5.0
    )
    assert resent is not None and resent.changed
    assert (resent.record.sends, resent.record.message_id, resent.record.code_hash) == (
        2,
        "m2",
        "new",
    )
    canceled = await store.cancel_otp("otp_1", key_id="key_1", now=6.0)
    assert canceled is not None and canceled.changed and canceled.record.status == "canceled"
    assert not (await store.cancel_otp("otp_1", key_id="key_1", now=7.0) or canceled).changed
    late = await store.record_otp_send(
        "otp_1", key_id="key_1", message_id="m3", code_hash="new", code_length=4, now=8.0
    )
    assert late is not None and not late.changed and late.record.status == "canceled"
    check = await store.check_otp("otp_1", key_id="key_1", code_hash="new", now=9.0)
    assert check is not None and (check.changed, check.record.status) == (False, "canceled")


async def test_another_keys_verification_is_not_found(store: SqlMessageStore) -> None:
    await store.create_otp(verification())
    assert await store.check_otp("otp_1", key_id="key_2", code_hash="right", now=10.0) is None
    assert await store.cancel_otp("otp_1", key_id="key_2", now=10.0) is None
    assert (await store.get_otp("otp_1")) == verification()
