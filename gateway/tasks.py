"""Stopping asyncio tasks: cancel them, then wait until they have ended.

The one place for "cancel a task, then wait for it" in the daemon. It imports nothing of ours,
so every module of `gateway` may use it. Two ways to wait, because the call sites differ in
what they let through:

- `cancel_and_wait`: a task's own `CancelledError` (and any exception named in `suppress`) ends
  here; anything else it ended with is raised to the caller, as `await task` would.
- `cancel_and_settle`: whatever the tasks ended with is dropped (`asyncio.gather` with
  `return_exceptions=True`); only a cancellation of the caller itself is raised.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def cancel_and_wait(
    *tasks: asyncio.Future[Any], suppress: tuple[type[BaseException], ...] = ()
) -> None:
    """Cancel every task, then wait for each in turn. Its `CancelledError`, and any exception
    in `suppress`, is swallowed; any other exception it ended with is raised (the tasks after
    it are cancelled already but not waited for)."""
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, *suppress):
            await task


async def cancel_and_settle(*tasks: asyncio.Future[Any]) -> None:
    """Cancel every task and wait until all have ended, whatever each ended with."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
