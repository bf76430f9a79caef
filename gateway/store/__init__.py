"""Durable storage: the `MessageStore` interface (and its small siblings for the HTTP API's
keys, idempotency answers and OTP records) with the default SQLite backend.

Owns nothing itself; it names the public pieces so callers import them from one place.
"""

from gateway.store.base import (
    ApiKeyRecord,
    ApiKeyStore,
    CustomerDeliveryStore,
    DuplicateKeyName,
    DuplicateMessageId,
    IdempotencyRecord,
    IdempotencyStore,
    MessageRecord,
    MessageStore,
    OtpRecord,
    OtpStore,
    OwedReceipt,
    QueuedMo,
    SegmentReceipt,
    StatusChange,
    StoreClosed,
    StoreError,
    StoreStats,
    SubmitResult,
)
from gateway.store.sqlite import SqliteMessageStore

__all__ = [
    "ApiKeyRecord",
    "ApiKeyStore",
    "CustomerDeliveryStore",
    "DuplicateKeyName",
    "DuplicateMessageId",
    "IdempotencyRecord",
    "IdempotencyStore",
    "MessageRecord",
    "MessageStore",
    "OtpRecord",
    "OtpStore",
    "OwedReceipt",
    "QueuedMo",
    "SegmentReceipt",
    "SqliteMessageStore",
    "StatusChange",
    "StoreClosed",
    "StoreError",
    "StoreStats",
    "SubmitResult",
]
