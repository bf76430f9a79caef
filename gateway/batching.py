"""Work gathered over one turn of the event loop and handed on together.

Owns `TurnBatch`: the many small writes one turn produces (submit results, receipts, settled
deliveries) become one call, so one store transaction carries them all.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import Generic, TypeVar

T = TypeVar("T")

# What a batch's handler may return: items (by their index in the batch) that are not done
# when the handler is, each with the future that says when it is (None: every item is done).
Later = Mapping[int, "asyncio.Future[None]"] | None


class TurnBatch(Generic[T]):
    """Items added during one turn of the event loop, handled together by one task.

    `add` returns the item's own future (so a caller that is cancelled cancels nobody else's):
    done when `handle` has finished with every item of the batch, failed with its exception
    (each caller then treats its own item as not recorded). An item the handler returned in
    its `Later` mapping is done when that mapping's future is, with its outcome."""

    def __init__(
        self,
        handle: Callable[[list[T]], Awaitable[Later]],
        spawn: Callable[[Awaitable[None]], object],
    ) -> None:
        self._handle, self._spawn = handle, spawn
        self._items: list[T] = []
        self._waiters: list[asyncio.Future[None]] = []

    def add(self, item: T) -> asyncio.Future[None]:
        if not self._items:
            # A task's first step runs on the loop's next turn, after every callback already
            # due in this one: it closes the batch then, one turn sooner than a callback that
            # would close it and start the task.
            self._spawn(self._run())
        self._items.append(item)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        return waiter

    async def _run(self) -> None:
        items, waiters = self._items, self._waiters
        self._items, self._waiters = [], []
        try:
            later = await self._handle(items)
        except asyncio.CancelledError:
            for waiter in waiters:
                waiter.cancel()
            raise
        except Exception as exc:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(exc)
            return
        for index, waiter in enumerate(waiters):
            if waiter.done():
                continue
            pending = later.get(index) if later else None
            if pending is None:
                waiter.set_result(None)
            else:
                pending.add_done_callback(functools.partial(_follow, waiter))


def _follow(waiter: asyncio.Future[None], done: asyncio.Future[None]) -> None:
    if waiter.done():
        return
    if done.cancelled():
        waiter.cancel()
    elif done.exception() is not None:
        waiter.set_exception(done.exception())  # type: ignore[arg-type]
    else:
        waiter.set_result(None)
