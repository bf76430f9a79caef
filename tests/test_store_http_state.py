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
    OtpRecord,
    OtpStore,
)
from gateway.store.sqlite import SqliteMessageStore


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteMessageStore]:
    s = SqliteMessageStore(tmp_path / "tandem.db")
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
    store: SqliteMessageStore,
) -> None:
    assert isinstance(store, ApiKeyStore)
    assert isinstance(store, IdempotencyStore)
    assert isinstance(store, OtpStore)


async def test_api_keys_are_found_by_hash_and_name_and_names_are_unique(
    store: SqliteMessageStore,
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


async def test_a_key_is_revoked_once_by_name_or_id(store: SqliteMessageStore) -> None:
    await store.save_api_key(api_key("shop", "key_1", "h1"))

    assert await store.revoke_api_key("key_1", at=7.0)
    assert not await store.revoke_api_key("shop", at=8.0)
    revoked = await store.find_api_key("h1")
    assert revoked is not None and revoked.revoked_at == 7.0


async def test_idempotency_answers_are_kept_for_the_window_then_purged(
    store: SqliteMessageStore,
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


async def test_an_otp_record_is_replaced_by_its_id(store: SqliteMessageStore) -> None:
    record = OtpRecord(
        id="otp_1",
        key_id="key_1",
        to="+447911123456",
        status="pending",
        code_hash="hash",
        code_length=6,
        created_at=1.0,
        expires_at=301.0,
        max_checks=5,
    )
    await store.save_otp(record)
    assert await store.get_otp("otp_1") == record

    record.checks, record.status, record.message_id, record.updated_at = 2, "approved", "m1", 9.0
    await store.save_otp(record)

    assert await store.get_otp("otp_1") == record
    assert await store.get_otp("otp_2") is None
