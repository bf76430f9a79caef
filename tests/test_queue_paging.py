"""A backlog past `in_memory` waits in the store: the send queue keeps 12 octets per message and
reads pages back before its link runs out of whole messages, in arrival order, dropping what
finished meanwhile; a reference can be cancelled; a page that cannot be read goes back; a
down link's backlog moves to where the dispatcher places it; and with real processes, a
backlog kept this way survives kill -9 and a restart."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import aiohttp
import pytest

from gateway.config import load_config
from gateway.http.admin_token import admin_token_path, read_admin_token
from gateway.messages import Message, MessageIdGenerator, MessageKind
from gateway.queue import AsyncSendQueue, SendQueue, compact_id
from tests.daemon_processes import (
    accepted_texts,
    create_key,
    daemon,
    free_port,
    link_toml,
    simulator,
    wait_http,
    write_config,
)
from tests.test_queue import T0, make_message
from tests.waiting import WAIT, wait_for


def backlog(count: int, **fields: object) -> list[Message]:
    return [make_message(reference=str(i), **fields) for i in range(count)]


def test_past_in_memory_messages_wait_as_references_and_count_as_queued() -> None:
    queue = SendQueue(in_memory=3)
    messages = backlog(10)
    for message in messages:
        queue.put(message, "a", T0)
    assert len(queue) == 3  # whole
    assert queue.refs_waiting("a") == 7
    assert queue.size("a") == 10
    assert queue.depth() == {"a": {5: 10}}
    # More urgent traffic has its own room: it does not wait behind the bulk of another priority.
    otp = make_message(kind=MessageKind.OTP)
    queue.put(otp, "a", T0)
    assert queue.pop("a", T0) is otp
    # A later message of the same priority joins the references, behind them.
    late = make_message(reference="late")
    queue.put(late, "a", T0)
    assert queue.refs_waiting("a") == 8


def test_pages_come_back_in_arrival_order_and_what_finished_meanwhile_is_forgotten() -> None:
    queue = SendQueue(in_memory=2)
    messages = backlog(7)
    for message in messages:
        queue.put(message, "a", T0)
    assert queue.page_wanted("a") is None  # two whole ones: not below half of in_memory yet
    assert [queue.pop("a", T0) for _ in range(2)] == messages[:2]
    assert queue.page_wanted("a") == 5
    page = queue.take_page("a", 5, 3)
    assert [ref.message_id for ref in page] == [m.id for m in messages[2:5]]
    assert queue.size("a") == 5  # a page being read still counts
    still_waiting = {m.id: m for m in (messages[2], messages[4])}  # 3 was cancelled meanwhile
    for message, link in queue.page_read(page, still_waiting):
        queue.push(message, link, T0)
    assert queue.size("a") == 4
    page = queue.take_page("a", 5, 10)
    for message, link in queue.page_read(page, {m.id: m for m in messages}):
        queue.push(message, link, T0)
    assert [queue.pop("a", T0) for _ in range(4)] == [messages[i] for i in (2, 4, 5, 6)]
    assert queue.size("a") == 0 and queue.refs_waiting() == 0


def test_a_reference_can_be_withdrawn_wherever_it_waits() -> None:
    queue = SendQueue(in_memory=1)
    messages = backlog(6)
    for message in messages:
        queue.put(message, "a", T0)
    assert queue.withdraw(messages[3].id)  # a reference
    assert not queue.withdraw(messages[3].id)
    assert not queue.withdraw(messages[3].id, refs=False)
    assert queue.withdraw(messages[0].id, refs=False)  # the whole one
    page = queue.take_page("a", 5, 2)
    assert [ref.message_id for ref in page] == [messages[1].id, messages[2].id]
    assert queue.withdraw(messages[2].id)  # while its page is being read
    assert queue.size("a") == 3  # 1 (paging), 4 and 5
    placed = list(queue.page_read(page, {m.id: m for m in messages}))
    assert [message for message, _ in placed] == [messages[1]]
    assert queue.size("a") == 2
    assert not queue.withdraw("not-one-of-ours")


def test_a_page_that_could_not_be_read_goes_back_to_the_front() -> None:
    queue = SendQueue(in_memory=1)
    messages = backlog(5)
    for message in messages:
        queue.put(message, "a", T0)
    page = queue.take_page("a", 5, 2)
    queue.page_failed(page)
    again = queue.take_page("a", 5, 10)
    assert [ref.message_id for ref in again] == [m.id for m in messages[1:]]
    assert queue.size("a") == 5


def test_only_ids_of_our_own_format_and_messages_due_now_become_references() -> None:
    assert compact_id("0123456789abcdef0123") == bytes.fromhex("0123456789abcdef0123")
    assert compact_id("0123456789ABCDEF0123") is None  # would not read back the same
    assert compact_id("m-1") is None
    queue = SendQueue(in_memory=1)
    queue.put(make_message(), "a", T0)
    queue.put(make_message(id="m-1"), "a", T0)
    queue.put(make_message(send_at=T0 + 60), "a", T0)
    assert (len(queue), queue.refs_waiting()) == (3, 0)


def test_start_up_queues_references_in_bulk_and_hands_back_ids_of_another_format() -> None:
    queue = SendQueue(in_memory=10)
    ours = [make_message() for _ in range(3)]
    odd = queue.put_refs(
        [
            (ours[0].id, 5, "r1", "a"),
            ("m-1", 5, "r1", "a"),
            (ours[1].id, 0, "r2", "a"),
            (ours[2].id, 5, None, "b"),
            ("0123456789abcdef0123", 5, "r1", None),  # no target left: not queued
        ]
    )
    assert odd == ["m-1"]
    assert (queue.size("a"), queue.size("b"), queue.route_size("r1")) == (2, 1, 1)
    assert queue.depth() == {"a": {5: 1, 0: 1}, "b": {5: 1}}
    assert queue.page_wanted("a") == 0
    assert [ref.message_id for ref in queue.take_page("a", 5, 5)] == [ours[0].id]


class Store:
    """What the queue reads pages from: the messages still waiting, by id."""

    def __init__(self, messages: Sequence[Message]) -> None:
        self.waiting = {m.id: m for m in messages}
        self.reads: list[int] = []
        self.fail_next = False

    async def load_waiting(self, ids: Sequence[str]) -> list[Message]:
        await asyncio.sleep(0)  # a real read hops to another thread
        if self.fail_next:
            self.fail_next = False
            raise OSError("disk on fire")
        self.reads.append(len(ids))
        return [self.waiting[i] for i in ids if i in self.waiting]


async def test_a_sender_gets_the_whole_backlog_in_order_as_pages_are_read_ahead() -> None:
    messages = backlog(50, created_at=0.0)
    store = Store(messages)
    queue = AsyncSendQueue(lambda expired: None, load=store.load_waiting, in_memory=4, page=5)
    for message in messages:
        queue.put(message, "a")
    del store.waiting[messages[30].id]  # cancelled while it waited in the store
    store.fail_next = True  # one read fails: its page goes back and is read again
    got = [await asyncio.wait_for(queue.get("a"), WAIT) for _ in range(49)]
    assert got == messages[:30] + messages[31:]
    assert queue.size("a") == 0
    assert max(store.reads) == 5
    await queue.close()


async def test_a_down_links_backlog_is_read_back_and_placed_where_the_dispatcher_says() -> None:
    messages = backlog(20, created_at=0.0)
    store = Store(messages)
    queue = AsyncSendQueue(lambda expired: None, load=store.load_waiting, in_memory=2, page=3)
    queue.place = lambda message: "b"  # link a went down; its route's other target is b
    for message in messages:
        queue.put(message, "a")
    queue.move("a", "b")
    got = [await asyncio.wait_for(queue.get("b"), WAIT) for _ in range(20)]
    assert sorted(m.id for m in got) == sorted(m.id for m in messages)
    assert queue.size("a") == queue.size("b") == 0
    await queue.close()


async def test_a_backlog_kept_as_references_survives_kill_9_and_is_all_sent(
    tmp_path: Path,
) -> None:
    smsc_port, http_port = free_port(), free_port()
    config = write_config(
        tmp_path,
        http_port,
        [link_toml("carrier", smsc_port)],
        '[[routes]]\nname = "all"\npriority = 1\ntargets = ["carrier"]\n',
        extra="[queue]\nin_memory = 5\npage = 7\n",
    )
    key = create_key(config)
    tandem = daemon(tmp_path, config).start()
    smsc = simulator(tmp_path, "smsc", smsc_port, dlr_delay=0.05)
    texts = [f"backlog {i}" for i in range(60)]
    try:
        await wait_http(f"http://127.0.0.1:{http_port}/openapi.json")
        async with aiohttp.ClientSession() as session:
            for text in texts:  # the link is down: everything waits, most of it as references
                async with session.post(
                    f"http://127.0.0.1:{http_port}/v1/messages",
                    json={"to": "+447911123456", "text": text},
                    headers={"Authorization": f"Bearer {key}"},
                ) as response:
                    assert response.status == 202, await response.text()
            token = read_admin_token(admin_token_path(load_config(config)))
            async with session.get(
                f"http://127.0.0.1:{http_port}/admin/links",
                headers={"Authorization": f"Bearer {token}"},
            ) as response:
                [link] = (await response.json())["links"]
            assert link["queued"] == 60
        tandem.kill()
        smsc.start()
        tandem = daemon(tmp_path, config, "tandem-2").start()
        record = tmp_path / "smsc.record"
        await wait_for(
            lambda: set(accepted_texts(record)) == set(texts),
            lambda: f"every message at the SMSC: {tandem.output()[-2000:]}",
            interval=0.1,
        )
    finally:
        tandem.stop()
        smsc.stop()


async def test_the_store_gives_pending_messages_as_references_with_the_link_each_waits_for(
    tmp_path: Path,
) -> None:
    from gateway.store.sqlite import SqliteMessageStore

    store = SqliteMessageStore(tmp_path / "tandem.db", writer="thread")
    await store.open()
    try:
        kept = make_message(targets=["a", "b"], link="b", route="r", created_at=0.0)
        gone = make_message(targets=["a", "b"], link="c", route="r", created_at=0.0)
        never = make_message(targets=["a"], link=None, kind=MessageKind.OTP, created_at=0.0)
        nowhere = make_message(targets=[], created_at=0.0)
        later = make_message(targets=["a"], send_at=T0 + 60, created_at=0.0)
        await store.accept([kept, gone, never, nowhere, later])
        pages = [page async for page in store.pending_refs(T0, page=2)]
        assert [len(page) for page in pages] == [2, 2]
        assert sorted(ref for page in pages for ref in page) == sorted(
            [
                (kept.id, 5, "r", "b"),
                (gone.id, 5, "r", "a"),
                (never.id, 0, None, "a"),
                (nowhere.id, 5, None, None),
            ]
        )
        assert [m.id for m in await store.load_scheduled(T0)] == [later.id]
        waiting = await store.load_waiting([kept.id, "unknown", later.id])
        assert sorted(m.id for m in waiting) == sorted([kept.id, later.id])
    finally:
        await store.close()


def test_the_oldest_ready_message_counts_whole_messages_and_references_not_scheduled_ones() -> None:
    queue = SendQueue(in_memory=1)
    now = T0
    assert queue.oldest_ready_at("a") is None
    first = make_message(created_at=now - 80)
    queue.put(first, "a", now)  # whole: within in_memory
    assert queue.oldest_ready_at("a") == pytest.approx(now - 80)
    behind = make_message(id=MessageIdGenerator().next_id(int((now - 50) * 1000)))
    queue.put(behind, "a", now)  # past in_memory: a reference, its age from its id
    assert queue.size("a") == 2
    scheduled = make_message(created_at=now - 200, send_at=now + 60)  # not waiting yet
    queue.put(scheduled, "a", now)
    assert queue.oldest_ready_at("a") == pytest.approx(now - 80)
    queue.remove(first.id)
    assert queue.oldest_ready_at("a") == pytest.approx(now - 50, abs=0.001)
    assert queue.oldest_ready_at("b") is None
