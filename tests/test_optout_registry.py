"""The opt-out registry on a real SQLite store: scopes, START, audit, restart, other writers,
and the ordering that makes an acknowledged opt-out block every later submit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.optouts.registry import OptOutRegistry
from gateway.optouts.senders import SenderGroup, SenderGroups
from gateway.store import SqliteMessageStore, StoreClosed
from gateway.store.base import OptOutAction, OptOutScope, OptOutVia
from gateway.store.sqlstore import SqlMessageStore
from tests.store_backends import store_factory

ALICE = "447700900001"
BOB = "447700900002"
GROUPS = SenderGroups.of(
    [
        SenderGroup("brand", frozenset({"12345", "ACME"}), shared_optout=True),
        SenderGroup("loose", frozenset({"777"}), shared_optout=False),
    ]
)


STORES = [("sqlite", "thread"), ("sqlite", "process"), ("postgresql", "thread")]


@pytest.fixture(params=STORES, ids=["-".join(p) for p in STORES])
async def store(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[SqlMessageStore]:
    backend, writer = request.param
    async for make in store_factory(backend, tmp_path / "data"):
        s = make("tandem.db", writer=writer)
        await s.open()
        yield s
        await s.close()


async def test_stop_to_a_sender_blocks_that_sender_only(store: SqlMessageStore) -> None:
    registry = OptOutRegistry(store, GROUPS)
    outcome = await registry.opt_out(ALICE, sender="+999", via=OptOutVia.KEYWORD, keyword="STOP")
    assert outcome.scopes == ((OptOutScope.SENDER, "999"),) and outcome.any_changed
    assert registry.blocks(ALICE, "999") and registry.blocks(ALICE, "+999")
    assert not registry.blocks(ALICE, "12345")
    assert not registry.blocks(BOB, "999")


async def test_stop_to_a_group_member_blocks_the_group(store: SqlMessageStore) -> None:
    registry = OptOutRegistry(store, GROUPS)
    outcome = await registry.opt_out(ALICE, sender="12345")
    assert outcome.scopes == ((OptOutScope.GROUP, "brand"),)
    assert registry.blocks(ALICE, "acme") and registry.blocks(ALICE, "12345")
    assert not registry.blocks(ALICE, "777")
    # A group that does not share opt-outs: the member alone.
    outcome = await registry.opt_out(BOB, sender="777")
    assert outcome.scopes == ((OptOutScope.SENDER, "777"),)


async def test_stopall_blocks_every_sender_and_even_none(store: SqlMessageStore) -> None:
    registry = OptOutRegistry(store, GROUPS)
    await registry.opt_out(ALICE, sender="12345", all_senders=True)
    assert registry.blocks(ALICE, "ACME") and registry.blocks(ALICE, "anyone")
    assert registry.blocks(ALICE, "")


async def test_start_undoes_every_scope_that_stops_its_sender(store: SqlMessageStore) -> None:
    registry = OptOutRegistry(store, GROUPS)
    await registry.opt_out(ALICE, sender="12345")  # group
    await registry.opt_out(ALICE, sender="999")  # sender
    outcome = await registry.opt_in(ALICE, sender="ACME", via=OptOutVia.KEYWORD, keyword="START")
    assert outcome.scopes == ((OptOutScope.GROUP, "brand"),)
    assert not registry.blocks(ALICE, "12345")
    assert registry.blocks(ALICE, "999")  # another sender's opt-out stays


async def test_every_change_is_audited_with_its_origin_details(store: SqlMessageStore) -> None:
    registry = OptOutRegistry(store, GROUPS, clock=lambda: 1_800_000_000.0)
    await registry.opt_out(
        ALICE, sender="999", via=OptOutVia.KEYWORD, keyword="STOP", lenient=True, source="smsc-a"
    )
    await registry.opt_out(ALICE, sender="999", via=OptOutVia.KEYWORD, keyword="STOP")
    await registry.opt_in(ALICE, sender="999", via=OptOutVia.API, source="key:ops")
    history = await store.optout_history(ALICE)
    assert [(h.action, h.changed) for h in history] == [
        (OptOutAction.OPT_OUT, True),
        (OptOutAction.OPT_OUT, False),  # a repeated STOP is still the subscriber's word
        (OptOutAction.OPT_IN, True),
    ]
    first = history[0]
    assert (first.scope, first.target, first.via, first.keyword, first.lenient, first.source) == (
        OptOutScope.SENDER,
        "999",
        OptOutVia.KEYWORD,
        "STOP",
        True,
        "smsc-a",
    )
    assert first.at == 1_800_000_000.0 and history[2].source == "key:ops"


async def test_a_restarted_registry_loads_what_the_store_holds(tmp_path: Path) -> None:
    path = tmp_path / "data" / "tandem.db"
    store = SqliteMessageStore(path)
    await store.open()
    registry = OptOutRegistry(store, GROUPS)
    await registry.opt_out(ALICE, sender="999")
    await registry.opt_out(ALICE, sender="12345")
    await registry.opt_out(BOB, all_senders=True)
    await store.close()
    store = SqliteMessageStore(path)
    await store.open()
    try:
        again = OptOutRegistry(store, GROUPS)
        await again.load()
        assert again.blocks(ALICE, "999") and again.blocks(ALICE, "ACME")
        assert again.blocks(BOB, "x") and not again.blocks(ALICE, "x")
        assert len(again) == 3 and again.stats.numbers == 2
    finally:
        await store.close()


async def test_changes_of_another_writer_reach_the_registry_by_sync(
    store: SqlMessageStore,
) -> None:
    daemon = OptOutRegistry(store, GROUPS)
    await daemon.load()
    tool = OptOutRegistry(store, GROUPS)  # the CLI, or another daemon on the same store
    await tool.opt_out(ALICE, sender="999", via=OptOutVia.CLI)
    assert not daemon.blocks(ALICE, "999")
    assert await daemon.sync() == 1
    assert daemon.blocks(ALICE, "999")
    await tool.opt_in(ALICE, via=OptOutVia.CLI)
    await daemon.sync()
    assert not daemon.blocks(ALICE, "999")


async def test_an_opt_out_blocks_from_the_moment_it_is_called(store: SqlMessageStore) -> None:
    registry = OptOutRegistry(store, GROUPS)
    task = asyncio.ensure_future(registry.opt_out(ALICE, sender="999"))
    await asyncio.sleep(0)  # the opt-out started; its write is not committed yet
    assert registry.blocks(ALICE, "999")
    await task
    assert registry.blocks(ALICE, "999")


async def test_a_failed_opt_out_write_is_undone_and_a_failed_opt_in_keeps_blocking(
    tmp_path: Path,
) -> None:
    store = SqliteMessageStore(tmp_path / "data" / "tandem.db")
    await store.open()
    registry = OptOutRegistry(store, GROUPS)
    await registry.opt_out(ALICE, sender="999")
    await store.close()  # every write now fails
    with pytest.raises(StoreClosed):
        await registry.opt_in(ALICE, sender="999")
    assert registry.blocks(ALICE, "999")
    with pytest.raises(StoreClosed):
        await registry.opt_out(BOB, sender="999")
    await asyncio.sleep(0.05)  # the re-read of what the store holds fails too
    assert registry.blocks(BOB, "999")  # so memory keeps erring towards blocking


@settings(
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    deadline=None,
    max_examples=40,
)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["out", "outall", "in", "inall"]),
            st.sampled_from([ALICE, BOB]),
            st.sampled_from(["12345", "ACME", "777", "999", ""]),
        ),
        max_size=12,
    )
)
def test_memory_always_matches_the_store_and_start_reopens_its_sender(
    tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[str, str, str]]
) -> None:
    async def run() -> None:
        store = SqliteMessageStore(tmp_path_factory.mktemp("s") / "tandem.db")
        await store.open()
        try:
            registry = OptOutRegistry(store, GROUPS)
            for action, number, sender in steps:
                if action == "out":
                    await registry.opt_out(number, sender=sender)
                    assert registry.blocks(number, sender)
                elif action == "outall":
                    await registry.opt_out(number, all_senders=True)
                elif action == "in":
                    await registry.opt_in(number, sender=sender)
                    assert not registry.blocks(number, sender)
                else:
                    await registry.opt_in(number)
                    assert registry.scopes_of(number) == []
            loaded = OptOutRegistry(store, GROUPS)
            await loaded.load()
            for number in (ALICE, BOB):
                assert sorted(loaded.scopes_of(number)) == sorted(registry.scopes_of(number))
                for sender in ("12345", "ACME", "777", "999", "", "other"):
                    assert loaded.blocks(number, sender) == registry.blocks(number, sender)
            assert len(loaded) == len(registry)
        finally:
            await store.close()

    asyncio.run(run())


async def test_the_load_reads_page_by_page_without_losing_a_number_split_across_pages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gateway.optouts.registry as registry_module

    monkeypatch.setattr(registry_module, "LOAD_PAGE", 2)
    store = SqliteMessageStore(tmp_path / "tandem.db")
    await store.open()
    try:
        writer = OptOutRegistry(store, GROUPS)
        await writer.opt_out(ALICE, sender="1")
        await writer.opt_out(ALICE, sender="2")  # page 1 ends here
        await writer.opt_out(ALICE, sender="3")  # page 2 starts with the same number
        await writer.opt_out(BOB, all_senders=True)
        loaded = OptOutRegistry(store, GROUPS)
        await loaded.load()
        assert [target for _, target in loaded.scopes_of(ALICE)] == ["1", "2", "3"]
        assert loaded.blocks(BOB, "x") and len(loaded) == 4 and loaded.stats.numbers == 2
    finally:
        await store.close()
