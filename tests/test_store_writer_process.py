"""The SQLite store with its writer in a process of its own (the daemon's default): what crosses
the socket comes back as it went, errors keep their type, and the process never outlives, hangs
or loses what its store acknowledged."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dlr.status import MessageStatus, SegmentStatus, StatusSource
from gateway.messages import Channel, Message, MessageKind, Segment
from gateway.store import (
    ApiKeyRecord,
    DuplicateKeyName,
    DuplicateMessageId,
    SegmentReceipt,
    SqliteMessageStore,
    StatusChange,
    StoreError,
    SubmitResult,
)
from gateway.store.writer import dumps
from tests.daemon_processes import process_gone

T0 = 1_800_000_000.0


def message(number: int) -> Message:
    return Message(
        account="acme",
        channel=Channel.HTTP,
        source_addr="ACME",
        destination=f"4477009{number:05d}",
        body=b"Your code is 123456",
        text="Your code is 123456",
        status=MessageStatus.QUEUED,
        created_at=T0,
        id=f"M{number:019d}",
    )


async def traffic(store: SqliteMessageStore) -> list[object]:
    """A fixed sequence of writes (two-part and one-part messages, receipts, a late duplicate,
    an unknown carrier id, a failure and a requeue) and everything the store answered."""
    answers: list[object] = []
    messages = [message(i) for i in range(4)]
    await store.accept(messages)
    answers.append(
        await store.mark_submitted_many(
            [
                SubmitResult(
                    messages[0].id,
                    [Segment(messages[0].id, i, 2, carrier_id=f"a{i}") for i in range(2)],
                    "smsc",
                    T0 + 1,
                    StatusSource.SUBMIT_RESP,
                ),
                SubmitResult(
                    messages[1].id,
                    [Segment(messages[1].id, 0, 1, carrier_id="b0")],
                    "smsc",
                    T0 + 1,
                    StatusSource.SUBMIT_RESP,
                ),
            ]
        )
    )
    answers.append(
        await store.apply_segment_statuses(
            [
                SegmentReceipt(
                    "smsc", "a0", SegmentStatus.DELIVERED, T0 + 2, StatusSource.RECEIPT, "d"
                ),
                SegmentReceipt(
                    "smsc",
                    "a1",
                    SegmentStatus.UNDELIVERABLE,
                    T0 + 3,
                    StatusSource.RECEIPT,
                    "u",
                    "001",
                    "3:0x10",
                ),
                SegmentReceipt("smsc", "b0", SegmentStatus.DELIVERED, T0 + 3, StatusSource.RECEIPT),
                SegmentReceipt("smsc", "b0", SegmentStatus.EXPIRED, T0 + 4, StatusSource.RECEIPT),
                SegmentReceipt("smsc", "zz", SegmentStatus.DELIVERED, T0 + 4, StatusSource.RECEIPT),
            ]
        )
    )
    answers.append(
        await store.requeue(
            messages[2].id,
            next_attempt_at=T0 + 30,
            error="0x00000058",
            at=T0 + 5,
            source=StatusSource.QUEUE,
        )
    )
    answers.append(
        await store.fail(
            messages[3].id,
            MessageStatus.FAILED,
            error="0x0000000b",
            at=T0 + 5,
            source=StatusSource.SUBMIT_RESP,
        )
    )
    answers.append(await store.expire_due(T0 + 6, source=StatusSource.QUEUE))
    for m in messages:
        answers.append(await store.get(m.id))
    return answers


async def test_a_process_writer_answers_exactly_what_a_thread_writer_answers(
    tmp_path: Path,
) -> None:
    answers = {}
    for placement in ("thread", "process", "inline"):
        store = SqliteMessageStore(tmp_path / f"{placement}.db", writer=placement)  # type: ignore[arg-type]
        await store.open()
        try:
            answers[placement] = await traffic(store)
        finally:
            await store.close()
    assert answers["process"] == answers["thread"] == answers["inline"]
    submitted, receipts = answers["process"][0], answers["process"][1]
    assert isinstance(submitted, list) and all(isinstance(c, StatusChange) for c in submitted)
    assert isinstance(receipts, list)
    assert [c.changed for c in receipts] == [True, True, True, False, False]
    assert receipts[1].message.status is MessageStatus.UNDELIVERABLE  # first failure wins
    assert receipts[1].segment.network_error == "3:0x10"
    assert receipts[4] == StatusChange(False, None)


async def test_the_writer_is_another_process_and_its_commits_are_in_the_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "t.db"
    store = SqliteMessageStore(path, writer="process")
    await store.open()
    writer_pid = store.writer_pid
    assert writer_pid is not None and writer_pid != os.getpid()
    await traffic(store)
    await store.close()
    assert store.writer_pid is None
    assert process_gone(writer_pid)

    reader = SqliteMessageStore(path)  # a thread writer on the same file
    await reader.open()
    try:
        record = await reader.get(message(0).id)
    finally:
        await reader.close()
    assert record is not None
    assert record.message.status is MessageStatus.UNDELIVERABLE
    assert [s.carrier_id for s in record.segments] == ["a0", "a1"]


async def test_errors_raised_in_the_writer_process_reach_the_caller_with_their_type(
    tmp_path: Path,
) -> None:
    store = SqliteMessageStore(tmp_path / "t.db", writer="process")
    await store.open()
    try:
        first = message(1)
        await store.accept([first])
        with pytest.raises(DuplicateMessageId):
            await store.accept([message(2), first])
        key = ApiKeyRecord(
            id="k1",
            name="billing",
            key_hash="h1",
            prefix="tdm_",
            scopes=("messages:send",),
            created_at=T0,
            callback_secret="s",
        )
        await store.save_api_key(key)
        with pytest.raises(DuplicateKeyName, match="billing"):
            await store.save_api_key(dataclasses.replace(key, id="k2", key_hash="h2"))
        # The failed requests took nothing with them; the writer goes on.
        assert await store.get(message(2).id) is None
        assert (await store.get(first.id)) is not None
        assert store.stats().failed_operations == 2
    finally:
        await store.close()


async def test_a_writer_process_that_dies_fails_writes_with_its_exit_code_and_close_returns(
    tmp_path: Path,
) -> None:
    store = SqliteMessageStore(tmp_path / "t.db", writer="process")
    await store.open()
    await store.accept([message(1)])
    pid = store.writer_pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    try:
        with pytest.raises(StoreError, match=r"writer process .* ended \(exit code -9\)"):
            await asyncio.wait_for(store.accept([message(2)]), 10)
        with pytest.raises(StoreError, match="ended"):  # and every write after it, at once
            await asyncio.wait_for(store.accept([message(3)]), 10)
    finally:
        await asyncio.wait_for(store.close(), 10)
    reader = SqliteMessageStore(tmp_path / "t.db")
    await reader.open()
    try:
        assert await reader.get(message(1).id) is not None
    finally:
        await reader.close()


async def test_the_writer_process_ignores_sigterm_and_sigint_and_ends_with_its_store(
    tmp_path: Path,
) -> None:
    # A service manager signals every process of the service at stop; the writer must go on
    # until the daemon has drained its writes and closed the store.
    store = SqliteMessageStore(tmp_path / "t.db", writer="process")
    await store.open()
    pid = store.writer_pid
    assert pid is not None
    os.kill(pid, signal.SIGTERM)
    os.kill(pid, signal.SIGINT)
    await asyncio.sleep(0.2)
    writes = [asyncio.create_task(store.accept([message(i)])) for i in range(50)]
    await asyncio.sleep(0)
    await store.close()  # drains what is queued first
    assert all(w.done() and w.exception() is None for w in writes)
    assert process_gone(pid)


@pytest.mark.parametrize("writer", ["thread", "process", "inline"])
async def test_a_damaged_database_file_is_named_with_the_reason(
    tmp_path: Path, writer: str
) -> None:
    path = tmp_path / "tandem.db"
    path.write_bytes(b"this is not an SQLite database, whatever its name says" * 100)
    store = SqliteMessageStore(path, writer=writer)  # type: ignore[arg-type]
    with pytest.raises(StoreError, match=rf"cannot open the store {path}: file is not a database"):
        await store.open()
    assert store.writer_pid is None


def test_the_daemon_refuses_to_start_on_a_damaged_store_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir(mode=0o700)  # private already: the daemon has nothing to tighten
    (tmp_path / "data" / "tandem.db").write_bytes(b"\x00garbage" * 1000)
    (tmp_path / "data" / "tandem.db").chmod(0o600)
    config = tmp_path / "tandem.toml"
    config.write_text(
        f'data_dir = "{tmp_path / "data"}"\n'
        "[smpp_server]\nenabled = false\n[http]\nenabled = false\n[simulator]\nenabled = false\n",
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"tandem: cannot open the store {tmp_path / 'data' / 'tandem.db'}: file is not a database"
    ]


async def test_the_daemon_runs_its_store_writer_in_a_process_and_ends_it_on_stop(
    tmp_path: Path,
) -> None:
    from gateway.app import Gateway
    from gateway.config import TandemConfig

    config = TandemConfig.model_validate(
        {
            "data_dir": str(tmp_path / "data"),
            "smpp_server": {"enabled": False},
            "http": {"enabled": False},
            "simulator": {"enabled": False},
        }
    )
    assert config.store.writer == "process"  # the default
    gateway = Gateway(config)
    await gateway.start()
    try:
        assert isinstance(gateway.store, SqliteMessageStore)
        pid = gateway.store.writer_pid
        assert pid is not None and pid != os.getpid() and not process_gone(pid)
    finally:
        await gateway.stop()
    assert process_gone(pid)


_text = st.text(max_size=40)
_maybe_text = st.none() | _text
_time = st.floats(min_value=0, max_value=4e9, allow_nan=False)
_maybe_time = st.none() | _time
_messages = st.builds(
    Message,
    account=_text,
    channel=st.sampled_from(Channel),
    source_addr=_text,
    destination=st.text("0123456789", max_size=15),
    body=st.binary(max_size=200),
    id=st.text(min_size=1, max_size=20),
    source_ton=st.integers(0, 6),
    kind=st.sampled_from(MessageKind),
    priority=st.integers(0, 9),
    data_coding=st.integers(0, 255),
    text=_maybe_text,
    validity_at=_maybe_time,
    send_at=_maybe_time,
    route=_maybe_text,
    targets=st.lists(_text, max_size=3),
    link=_maybe_text,
    status=st.sampled_from(MessageStatus),
    attempts=st.integers(0, 100),
    last_error=_maybe_text,
    callback_url=_maybe_text,
    created_at=_time.filter(bool),
)
_segments = st.builds(
    Segment,
    message_id=_text,
    index=st.integers(0, 254),
    total=st.integers(1, 255),
    status=st.sampled_from(SegmentStatus),
    link=_maybe_text,
    carrier_id=_maybe_text,
    submitted_at=_maybe_time,
    error=_maybe_text,
    network_error=_maybe_text,
)


@given(message=_messages, segment=st.none() | _segments, changed=st.booleans())
def test_what_crosses_the_writer_socket_comes_back_equal(
    message: Message, segment: Segment | None, changed: bool
) -> None:
    # Slots dataclasses travel as their fields in order (a faster form than pickle's default);
    # a field added out of order, or a default that rewrites a value, would show here.
    change = StatusChange(changed, message, segment)
    assert pickle.loads(dumps([change, (message.id, [segment])])) == [
        change,
        (message.id, [segment]),
    ]
