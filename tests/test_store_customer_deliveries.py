"""What the store keeps for SMPP customers: receipts owed (marked by the status change itself)
and MOs waiting for a bind, across reopening the file, with both writer placements."""

from __future__ import annotations

from dlr.status import MessageStatus, SegmentStatus, StatusSource
from gateway.messages import Channel, Tenant
from gateway.store import CustomerDeliveryStore
from gateway.store.sqlstore import SqlMessageStore
from tests.store_backends import StoreFactory, make_store
from tests.test_store import T0, make_message, store, submit

__all__ = ["make_store", "store"]  # the fixture, parametrized over the writer placements


async def receipt(store: SqlMessageStore, carrier_id: str, status: SegmentStatus, at: float):
    return await store.apply_segment_status(
        "smsc-a", carrier_id, status, at=at, source=StatusSource.RECEIPT
    )


async def test_the_sqlite_store_keeps_customer_deliveries(store: SqlMessageStore) -> None:
    assert isinstance(store, CustomerDeliveryStore)


async def test_a_final_status_owes_the_receipt_the_customer_asked_for(
    store: SqlMessageStore,
) -> None:
    wanted = make_message(channel=Channel.SMPP, registered_delivery=1)
    not_asked = make_message(channel=Channel.SMPP, registered_delivery=0)
    http = make_message(channel=Channel.HTTP, registered_delivery=1)
    failures_only = make_message(channel=Channel.SMPP, registered_delivery=2)
    await store.accept([wanted, not_asked, http, failures_only])
    for n, message in enumerate([wanted, not_asked, http, failures_only]):
        await submit(store, message, [f"c{n}"])
    assert await store.owed_receipts() == []  # submitted: nothing owed yet

    for n in range(4):
        await receipt(store, f"c{n}", SegmentStatus.DELIVERED, T0 + 5 + n)

    owed = await store.owed_receipts()
    assert [(o.message.id, o.status, o.segments) for o in owed] == [
        (wanted.id, MessageStatus.DELIVERED, 1)
    ]
    assert owed[0].message.status is MessageStatus.DELIVERED


async def test_intermediate_receipts_are_owed_only_when_asked_and_the_latest_replaces_them(
    store: SqlMessageStore,
) -> None:
    message = make_message(channel=Channel.SMPP, registered_delivery=0x11)  # final + intermediate
    await store.accept([message])
    await submit(store, message, ["i1"])

    await receipt(store, "i1", SegmentStatus.ENROUTE, T0 + 2)
    assert [o.status for o in await store.owed_receipts()] == [MessageStatus.ENROUTE]

    await receipt(store, "i1", SegmentStatus.DELIVERED, T0 + 3)
    assert [o.status for o in await store.owed_receipts()] == [MessageStatus.DELIVERED]


async def test_a_multipart_message_owes_one_receipt_once_all_parts_are_final(
    store: SqlMessageStore,
) -> None:
    message = make_message(channel=Channel.SMPP, registered_delivery=1)
    await store.accept([message])
    await submit(store, message, ["p1", "p2"])

    await receipt(store, "p1", SegmentStatus.DELIVERED, T0 + 3)
    assert await store.owed_receipts() == []
    await receipt(store, "p2", SegmentStatus.DELIVERED, T0 + 4)
    owed = await store.owed_receipts()
    assert [(o.status, o.segments) for o in owed] == [(MessageStatus.DELIVERED, 2)]


async def test_settling_clears_only_the_status_it_names(store: SqlMessageStore) -> None:
    message = make_message(channel=Channel.SMPP, registered_delivery=0x11)
    await store.accept([message])
    await submit(store, message, ["s1"])
    await receipt(store, "s1", SegmentStatus.ENROUTE, T0 + 2)
    await receipt(store, "s1", SegmentStatus.DELIVERED, T0 + 3)

    # The ENROUTE receipt was answered after DELIVERED replaced it: DELIVERED is still owed.
    await store.receipts_settled([(message.id, MessageStatus.ENROUTE)])
    assert [o.status for o in await store.owed_receipts()] == [MessageStatus.DELIVERED]

    await store.receipts_settled([(message.id, MessageStatus.DELIVERED)])
    assert await store.owed_receipts() == []


async def test_a_failed_submit_owes_its_receipt_too(store: SqlMessageStore) -> None:
    message = make_message(channel=Channel.SMPP, registered_delivery=1)
    await store.accept([message])
    await store.fail(
        message.id, MessageStatus.FAILED, error="0x0000000B", at=T0 + 1,
        source=StatusSource.SUBMIT_RESP,
    )  # fmt: skip
    assert [o.status for o in await store.owed_receipts()] == [MessageStatus.FAILED]


async def test_owed_receipts_and_mos_survive_reopening(make_store: StoreFactory) -> None:
    path = "tandem.db"
    first = make_store(path, writer="process")
    await first.open()
    message = make_message(channel=Channel.SMPP, registered_delivery=1)
    await first.accept([message])
    await submit(first, message, ["r1"])
    await receipt(first, "r1", SegmentStatus.UNDELIVERABLE, T0 + 3)
    mo_id = await first.queue_mo("acme", b"deliver_sm bytes", received_at=T0, expires_at=T0 + 60)
    await first.close()

    second = make_store(path)
    await second.open()
    try:
        owed = await second.owed_receipts()
        assert [(o.message.id, o.status) for o in owed] == [
            (message.id, MessageStatus.UNDELIVERABLE)
        ]
        [mo] = await second.queued_mos()
        assert (mo.id, mo.account, mo.pdu, mo.expires_at, mo.part_of) == (
            mo_id, "acme", b"deliver_sm bytes", T0 + 60, None,
        )  # fmt: skip
    finally:
        await second.close()


async def test_parts_are_replaced_by_their_whole_in_one_step(store: SqlMessageStore) -> None:
    kept = await store.queue_mo("acme", b"other", received_at=T0, expires_at=T0 + 60)
    for n in range(2):
        await store.queue_mo(
            "acme", b"part %d" % n, received_at=T0, expires_at=T0 + 60, part_of="m1"
        )
    await store.queue_mo("acme", b"x", received_at=T0, expires_at=T0 + 60, part_of="m2")
    assert [m.part_of for m in await store.queued_mos()] == [None, "m1", "m1", "m2"]

    whole = await store.join_mo(
        "acme", b"joined", part_of="m1", received_at=T0 + 1, expires_at=T0 + 61
    )

    mos = await store.queued_mos()
    assert [(m.id, m.pdu, m.part_of) for m in mos] == [
        (kept, b"other", None),
        (mos[1].id, b"x", "m2"),
        (whole, b"joined", None),
    ]
    await store.mos_settled([kept, whole])
    assert [m.pdu for m in await store.queued_mos()] == [b"x"]


async def test_receipts_owed_for_changes_older_than_a_cutoff_are_forgotten_in_bulk(
    store: SqlMessageStore,
) -> None:
    old, recent = (make_message(channel=Channel.SMPP, registered_delivery=1) for _ in range(2))
    await store.accept([old, recent])
    await submit(store, old, ["o1"])
    await submit(store, recent, ["n1"])
    await receipt(store, "o1", SegmentStatus.DELIVERED, T0 + 10)
    await receipt(store, "n1", SegmentStatus.DELIVERED, T0 + 100)

    assert [o.message.id for o in await store.owed_receipts(since=T0 + 50)] == [recent.id]
    assert await store.forget_owed_receipts(before=T0 + 50) == 1
    assert [o.message.id for o in await store.owed_receipts()] == [recent.id]


async def test_owed_receipts_are_read_per_account_oldest_first_up_to_a_limit(
    store: SqlMessageStore,
) -> None:
    messages = [
        make_message(account=account, channel=Channel.SMPP, registered_delivery=1)
        for account in ("acme", "other", "acme", "acme")
    ]
    await store.accept(messages)
    for n, message in enumerate(messages):
        await submit(store, message, [f"a{n}"])
        await receipt(store, f"a{n}", SegmentStatus.DELIVERED, T0 + 10 + n)

    acme = [m.id for m in messages if m.account == "acme"]
    assert [o.message.id for o in await store.owed_receipts(account="acme")] == acme
    assert [o.message.id for o in await store.owed_receipts(account="acme", limit=2)] == acme[:2]
    assert len(await store.owed_receipts()) == 4


async def test_forgetting_owed_receipts_can_be_limited_to_one_account(
    store: SqlMessageStore,
) -> None:
    mine, theirs = (
        make_message(account=account, channel=Channel.SMPP, registered_delivery=1)
        for account in ("acme", "other")
    )
    await store.accept([mine, theirs])
    for n, message in enumerate((mine, theirs)):
        await submit(store, message, [f"f{n}"])
        await receipt(store, f"f{n}", SegmentStatus.DELIVERED, T0 + 10)

    assert await store.forget_owed_receipts(before=T0 + 50, account="acme") == 1
    assert [o.message.id for o in await store.owed_receipts()] == [theirs.id]


async def test_an_http_message_with_a_callback_url_owes_the_callback_of_its_final_status(
    store: SqlMessageStore,
) -> None:
    with_url = make_message(channel=Channel.HTTP, callback_url="https://example.com/dlr")
    without = make_message(channel=Channel.HTTP)
    smpp = make_message(channel=Channel.SMPP, registered_delivery=1)
    await store.accept([with_url, without, smpp])
    for n, message in enumerate((with_url, without, smpp)):
        await submit(store, message, [f"h{n}"])
        await receipt(store, f"h{n}", SegmentStatus.ENROUTE, T0 + 5)
    assert await store.owed_receipts() == []  # an intermediate status owes no callback
    for n in range(3):
        await receipt(store, f"h{n}", SegmentStatus.DELIVERED, T0 + 10 + n)

    assert [o.message.id for o in await store.owed_receipts(channel=Channel.HTTP)] == [with_url.id]
    assert [o.message.id for o in await store.owed_receipts(channel=Channel.SMPP)] == [smpp.id]
    assert await store.forget_owed_receipts(before=T0 + 100, channel=Channel.HTTP) == 1
    assert [o.message.id for o in await store.owed_receipts()] == [smpp.id]


async def test_owed_receipts_page_by_change_time_then_id(store: SqlMessageStore) -> None:
    messages = [make_message(channel=Channel.SMPP, registered_delivery=1) for _ in range(5)]
    await store.accept(messages)
    for n, message in enumerate(messages):
        await submit(store, message, [f"p{n}"])
        await receipt(store, f"p{n}", SegmentStatus.DELIVERED, T0 + 10 + n // 3)  # ties too

    seen: list[str] = []
    after = None
    while True:
        page = await store.owed_receipts(after=after, limit=2)
        seen += [o.message.id for o in page]
        if len(page) < 2:
            break
        after = (page[-1].message.updated_at, page[-1].message.id)
    assert sorted(seen) == sorted(m.id for m in messages) and len(seen) == 5


async def test_messages_are_found_by_reference_within_their_account(
    store: SqlMessageStore,
) -> None:
    first = make_message(account="acme", channel=Channel.SMPP)
    others = [
        make_message(account="acme", channel=Channel.SMPP, reference=first.id, created_at=T0 + n)
        for n in (1, 2)
    ]
    elsewhere = make_message(account="other", channel=Channel.SMPP, reference=first.id)
    await store.accept([first, *others, elsewhere])

    acme = Tenant(Channel.SMPP, "acme")
    assert await store.find_references(acme, first.id) == [m.id for m in others]
    assert await store.find_references(acme, "nothing") == []
