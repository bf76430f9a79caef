"""The tests' one polling wait: check a condition until it holds or a time limit passes.

A test waits on the very thing it asserts, never on a bare sleep and never on some other effect
that merely tends to come first. The limit is generous because the suite runs in parallel workers
on a shared, loaded machine: a condition that comes true costs no more for it, and a long limit
only costs time in a test that is failing anyway. The failure names what was awaited and for how
long. `wait_for` is for asyncio tests (a condition may be a coroutine function, such as a store
read); `wait_for_sync` is for plain threads.

Imported by the tests (holds none).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

WAIT = 60.0  # seconds
POLL = 0.01  # seconds between two checks

Description = str | Callable[[], str]


def _timed_out(what: Description, timeout: float) -> AssertionError:
    described = what() if callable(what) else what
    return AssertionError(f"timed out after {timeout:g} s waiting for {described}")


async def wait_for(
    condition: Callable[[], bool | Awaitable[bool]],
    what: Description,
    *,
    timeout: float = WAIT,
    interval: float = POLL,
) -> None:
    """Return once `condition()` is true; fail naming `what` (text, or a function giving the
    text from the last state seen) after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        held = condition()
        if inspect.isawaitable(held):
            held = await held
        if held:
            return
        if time.monotonic() > deadline:
            raise _timed_out(what, timeout)
        await asyncio.sleep(interval)


def wait_for_sync(
    condition: Callable[[], bool],
    what: Description,
    *,
    timeout: float = WAIT,
    interval: float = POLL,
) -> None:
    """`wait_for` for a thread without an event loop: blocks it between checks."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise _timed_out(what, timeout)
        time.sleep(interval)
