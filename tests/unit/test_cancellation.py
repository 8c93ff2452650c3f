"""``cancel_and_wait`` ends tasks and never swallows the caller's own cancellation."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from tether.cancellation import cancel_and_wait


async def _stubborn(started: asyncio.Event, release: asyncio.Event) -> None:
    """A task that takes its time to end after a cancel (cleanup that must finish)."""
    started.set()
    try:
        await asyncio.Event().wait()
    finally:
        await asyncio.shield(release.wait())


async def test_cancels_and_waits_for_every_task() -> None:
    ended: list[str] = []

    async def child(name: str) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            ended.append(name)

    a, b = asyncio.create_task(child("a")), asyncio.create_task(child("b"))
    await asyncio.sleep(0)
    assert await cancel_and_wait(a, None, b) is True
    assert sorted(ended) == ["a", "b"] and a.cancelled() and b.cancelled()


async def test_task_errors_are_retrieved_not_raised() -> None:
    async def boom() -> None:
        raise RuntimeError("bad")

    task = asyncio.create_task(boom())
    await asyncio.sleep(0)
    assert await cancel_and_wait(task) is True  # no raise, no "never retrieved" warning
    assert isinstance(task.exception(), RuntimeError)


async def test_cancelling_the_caller_cancels_the_caller() -> None:
    """The old pattern (``cancel(); with suppress(BaseException): await task``) fails this:
    the caller's cancellation is eaten and the caller runs on."""
    started, release = asyncio.Event(), asyncio.Event()
    child = asyncio.create_task(_stubborn(started, release))
    await started.wait()
    after: list[str] = []

    async def caller() -> None:
        await cancel_and_wait(child)
        after.append("ran on after being cancelled")

    outer = asyncio.create_task(caller())
    await asyncio.sleep(0.01)  # the caller now waits for the stubborn child
    assert not outer.done()
    outer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await outer
    assert outer.cancelled() and after == []
    release.set()
    with contextlib.suppress(asyncio.CancelledError):
        await child


async def test_timeout_gives_up_on_a_task_that_will_not_end() -> None:
    started, release = asyncio.Event(), asyncio.Event()
    child = asyncio.create_task(_stubborn(started, release))
    await started.wait()
    assert await cancel_and_wait(child, timeout=0.01) is False
    assert not child.done()
    release.set()
    assert await cancel_and_wait(child, timeout=5) is True


async def test_caller_cancelled_during_a_timed_wait_is_cancelled() -> None:
    started, release = asyncio.Event(), asyncio.Event()
    child = asyncio.create_task(_stubborn(started, release))
    await started.wait()
    outer = asyncio.create_task(cancel_and_wait(child, timeout=30))
    await asyncio.sleep(0.01)
    outer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await outer
    release.set()
    await cancel_and_wait(child)
