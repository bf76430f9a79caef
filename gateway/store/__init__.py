"""Durable message storage: the `MessageStore` interface and its default SQLite backend.

Owns nothing itself; it names the public pieces so callers import them from one place.
"""

from gateway.store.base import (
    DuplicateMessageId,
    MessageRecord,
    MessageStore,
    StatusChange,
    StoreClosed,
    StoreError,
    StoreStats,
)
from gateway.store.sqlite import SqliteMessageStore

__all__ = [
    "DuplicateMessageId",
    "MessageRecord",
    "MessageStore",
    "SqliteMessageStore",
    "StatusChange",
    "StoreClosed",
    "StoreError",
    "StoreStats",
]
