"""Cancelling tasks and waiting for them (gateway.tasks): what ends there and what is raised."""

from __future__ import annotations

import asyncio

import pytest

from gateway.tasks import cancel_and_settle, cancel_and_wait


async def _forever(cleaned: list[str], name: str) -> None:
    try:
        await asyncio.Event().wait()
    finally:
        cleaned.append(name)


async def _fails_on_cancel(error: BaseException) -> None:
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        raise error from None


async def test_cancel_and_wait_returns_once_every_task_has_run_its_cleanup() -> None:
    cleaned: list[str] = []
    tasks = [asyncio.create_task(_forever(cleaned, name)) for name in ("a", "b")]
    await asyncio.sleep(0)
    await cancel_and_wait(*tasks)
    assert cleaned == ["a", "b"]
    assert all(task.cancelled() for task in tasks)


async def test_cancel_and_wait_raises_what_a_task_ended_with_other_than_its_cancellation() -> None:
    task = asyncio.create_task(_fails_on_cancel(ValueError("cleanup failed")))
    await asyncio.sleep(0)
    with pytest.raises(ValueError, match="cleanup failed"):
        await cancel_and_wait(task)


async def test_cancel_and_wait_swallows_the_exceptions_it_is_told_to() -> None:
    task = asyncio.create_task(_fails_on_cancel(ConnectionError("broker gone")))
    await asyncio.sleep(0)
    await cancel_and_wait(task, suppress=(ConnectionError,))
    assert isinstance(task.exception(), ConnectionError)


async def test_cancel_and_settle_drops_whatever_the_tasks_ended_with() -> None:
    cleaned: list[str] = []
    failing = asyncio.create_task(_fails_on_cancel(ValueError("cleanup failed")))
    quiet = asyncio.create_task(_forever(cleaned, "quiet"))
    await asyncio.sleep(0)
    await cancel_and_settle(failing, quiet)
    assert failing.done() and quiet.cancelled()
    assert cleaned == ["quiet"]


async def test_cancel_and_settle_lets_a_cancellation_of_the_caller_through() -> None:
    cleaning = asyncio.Event()

    async def slow_cleanup() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cleaning.set()
            await asyncio.Event().wait()  # its cleanup takes its time

    task = asyncio.create_task(slow_cleanup())
    await asyncio.sleep(0)
    stopper = asyncio.create_task(cancel_and_settle(task))
    await asyncio.wait_for(cleaning.wait(), 5)
    stopper.cancel()  # reaches the task too, whose cleanup then ends
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(stopper, 5)
    assert task.cancelled()
