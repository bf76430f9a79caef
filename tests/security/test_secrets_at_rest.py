"""No live OTP code and no callback secret is in the store's files (database, -wal, -shm) in
clear: an OTP message's content is sealed before it reaches the writer, a callback secret before
it is written, both under `<data_dir>/store.key`; a pending OTP still survives a restart, and an
older store's clear rows are sealed (and the file rewritten) when it is opened."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from gateway.keys import create_key
from gateway.messages import Channel, Message, MessageKind
from gateway.store.base import StoreError
from gateway.store.sealing import UnsealError
from gateway.store.sqlite import SqliteMessageStore
from smpp.text import encode_text
from tests.test_http_harness import running_daemon
from tests.waiting import wait_for

UK = "+447911123456"


def forms(secret: str) -> list[bytes]:
    """How a text can sit in the files: UTF-8 (GSM 7-bit unpacked is the same for letters and
    digits) and UCS-2 both ways round."""
    return [secret.encode(), secret.encode("utf-16-be"), secret.encode("utf-16-le")]


def files_showing(data: Path, secret: str) -> list[str]:
    """Which of the store's files hold `secret` in clear, read as raw bytes."""
    found = []
    for path in sorted(data.glob("tandem.db*")):
        raw = path.read_bytes()
        if any(form in raw for form in forms(secret)):
            found.append(path.name)
    return found


async def test_an_otp_code_never_reaches_the_store_files(tmp_path: Path) -> None:
    code = "Q7ZK3W9X"
    async with running_daemon(tmp_path) as daemon:
        data = daemon.gateway.config.data_dir
        status, otp, _ = await daemon.call("POST", "/v1/otp", {"to": UK, "code": code})
        assert status == 201, otp
        assert files_showing(data, code) == []  # accepted, durable, maybe not yet sent

        received = await daemon.received_by_handset(otp["message_id"])
        assert code in received.text  # the SMS itself carried the code

        async def delivered_and_wiped() -> bool:
            record = await daemon.gateway.message_store.get(otp["message_id"])
            return (
                record is not None
                and record.message.status.value == "delivered"
                and record.message.text is None
            )

        await wait_for(delivered_and_wiped, "the OTP delivered and its text wiped")
        assert files_showing(data, code) == []
        _, check, _ = await daemon.call("POST", f"/v1/otp/{otp['id']}/check", {"code": code})
        assert check["status"] == "approved"
    assert files_showing(data, code) == []  # after the last checkpoint too


async def test_a_callback_secret_is_sealed_in_the_files_and_whole_when_read(
    tmp_path: Path,
) -> None:
    async with running_daemon(tmp_path) as daemon:
        store = daemon.gateway.message_store
        minted = await create_key(store, "hooks", callback_url="https://hooks.example/tandem")
        secret = minted.record.callback_secret
        data = daemon.gateway.config.data_dir
        assert secret.startswith("whsec_") and files_showing(data, secret) == []
        read = await daemon.api.keys.record_by_name("hooks")
        assert read is not None and read.callback_secret == secret
        listed = {k.name: k.callback_secret for k in await store.list_api_keys()}  # type: ignore[attr-defined]
        assert listed["hooks"] == secret
    assert files_showing(data, secret) == []
    with sqlite3.connect(data / "tandem.db") as database:
        [(stored,)] = database.execute("SELECT callback_secret FROM api_keys WHERE name = 'hooks'")
    assert stored.startswith("sealed1:")


def otp_message(text: str) -> Message:
    data_coding, body = encode_text(text)
    return Message(
        account="acme",
        channel=Channel.HTTP,
        source_addr="Verify",
        destination=UK[1:],
        body=body,
        text=text,
        data_coding=data_coding,
        kind=MessageKind.OTP,
        validity_at=time.time() + 600,
    )


async def test_a_pending_otp_message_is_sent_whole_after_a_restart(tmp_path: Path) -> None:
    message = otp_message("Your code is 40417233")
    store = SqliteMessageStore(tmp_path / "tandem.db")
    await store.open()
    await store.accept([message])
    assert files_showing(tmp_path, "40417233") == []
    await store.close()

    again = SqliteMessageStore(tmp_path / "tandem.db")
    await again.open()
    try:
        [pending] = await again.load_pending()
        assert (pending.id, pending.text, pending.body) == (message.id, message.text, message.body)
        [waiting] = await again.load_waiting([message.id])
        assert waiting.body == message.body
    finally:
        await again.close()
    assert files_showing(tmp_path, "40417233") == []

    stranger = SqliteMessageStore(tmp_path / "tandem.db", key_file=tmp_path / "other.key")
    await stranger.open()
    try:
        with pytest.raises(UnsealError):  # another key opens nothing (and says so)
            await stranger.load_pending()
    finally:
        await stranger.close()


async def test_an_older_stores_clear_rows_are_sealed_when_it_is_opened(tmp_path: Path) -> None:
    path = tmp_path / "tandem.db"
    store = SqliteMessageStore(path)
    await store.open()
    message = otp_message("Your code is 55120987")
    await store.accept([message])
    minted = await create_key(store, "old")
    await store.close()
    # As an older version left it: the content and the secret in clear, at schema version 5.
    clear = "whsec_" + "c" * 32
    with sqlite3.connect(path) as database:
        database.execute(
            "UPDATE message_content SET body = ?, text = ? WHERE id = ?",
            (message.body, message.text, message.id),
        )
        database.execute("UPDATE api_keys SET callback_secret = ?", (clear,))
        database.execute("PRAGMA user_version = 5")
    database.close()
    assert files_showing(tmp_path, "55120987") and files_showing(tmp_path, clear)

    store = SqliteMessageStore(path)
    await store.open()
    try:
        assert files_showing(tmp_path, "55120987") == []
        assert files_showing(tmp_path, clear) == []
        [pending] = await store.load_pending()
        assert (pending.text, pending.body) == (message.text, message.body)
        key = await store.find_api_key_by_name("old")
        assert key is not None and (key.id, key.callback_secret) == (minted.record.id, clear)
    finally:
        await store.close()


async def test_a_store_opened_with_another_key_file_refuses_to_start(tmp_path: Path) -> None:
    store = SqliteMessageStore(tmp_path / "tandem.db")
    await store.open()
    await create_key(store, "acme")
    await store.close()

    stranger = SqliteMessageStore(tmp_path / "tandem.db", key_file=tmp_path / "other.key")
    with pytest.raises(StoreError, match=r"does not open what .* holds sealed"):
        await stranger.open()
