"""`SettleWatchers`: each claim or refill in flight sees every delivery settled while it waits,
however the blocks of several interleave (a refill and a claim overlap on a busy cluster node)."""

from __future__ import annotations

from gateway.smpp_server.outbox import SettleWatchers, mo_key


def test_a_block_that_closes_first_does_not_blind_one_still_open() -> None:
    watchers = SettleWatchers()
    first = watchers.watch()
    second = watchers.watch()
    seen_by_first = first.__enter__()
    seen_by_second = second.__enter__()
    # Both are empty, hence equal: closing the second must not drop the first's set.
    second.__exit__(None, None, None)
    watchers.settled(mo_key(7))
    first.__exit__(None, None, None)
    assert seen_by_first == {mo_key(7)}
    assert seen_by_second == set()


def test_every_open_block_sees_a_settle_and_a_closed_one_no_longer_does() -> None:
    watchers = SettleWatchers()
    with watchers.watch() as outer:
        watchers.settled(mo_key(1))
        with watchers.watch() as inner:
            watchers.settled(mo_key(2))
        watchers.settled(mo_key(3))
    watchers.settled(mo_key(4))
    assert outer == {mo_key(1), mo_key(2), mo_key(3)}
    assert inner == {mo_key(2)}
