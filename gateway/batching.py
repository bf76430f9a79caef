"""Work gathered over one turn of the event loop and handed on together.

Owns `TurnBatch`: the many small writes one turn produces (submit results, receipts, settled
deliveries) become one call, so one store transaction carries them all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class TurnBatch(Generic[T]):
    """Items added during one turn of the event loop, handled together by one task.

    `add` returns the item's own future (so a caller that is cancelled cancels nobody else's):
    done when `handle` has finished with every item of the batch, failed with its exception
    (each caller then treats its own item as not recorded)."""

    def __init__(
        self,
        handle: Callable[[list[T]], Awaitable[None]],
        spawn: Callable[[Awaitable[None]], object],
        *,
        after: TurnBatch[Any] | None = None,
    ) -> None:
        self._handle, self._spawn = handle, spawn
        # A batch whose items, added in the same turn, must reach the store first.
        self._after = after
        self._items: list[T] = []
        self._waiters: list[asyncio.Future[None]] = []

    def add(self, item: T) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        if not self._items:
            loop.call_soon(self._close)
        self._items.append(item)
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        return waiter

    def _close(self) -> None:
        if self._after is not None:
            self._after._close()
        items, waiters = self._items, self._waiters
        self._items, self._waiters = [], []
        if items:
            self._spawn(self._run(items, waiters))

    async def _run(self, items: list[T], waiters: list[asyncio.Future[None]]) -> None:
        try:
            await self._handle(items)
        except asyncio.CancelledError:
            for waiter in waiters:
                waiter.cancel()
            raise
        except Exception as exc:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(exc)
            return
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
