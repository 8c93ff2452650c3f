"""An owner for background tasks that must outlive the call that started them.

The lazy-validation dial abandons dials it no longer wants (a stale agent that is still
connecting, a redial that lost to the deadline) and closes connections it evicts. Those
tasks must not block the caller, but they must not be fire-and-forget either: a late
successful stale dial has to be closed, and shutdown has to wait for (or cancel) whatever
is still running. :class:`TaskOwner` is that owner: every task it starts is tracked until it
ends, and :meth:`TaskOwner.aclose` drains them on shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

log = logging.getLogger(__name__)


class TaskOwner:
    """Tracks background tasks; awaited or cancelled on shutdown.

    ``spawn(coro)`` starts a task that is tracked until it ends. Tasks started with
    ``cancel_on_close=False`` (closing a connection, say) are awaited on shutdown rather
    than cancelled, because cancelling a close would leak what it was closing.
    """

    def __init__(self, name: str = "tasks") -> None:
        self.name = name
        self._tasks: set[asyncio.Task[Any]] = set()
        self._keep: set[asyncio.Task[Any]] = set()
        self._closed = False

    def __len__(self) -> int:
        return len(self._tasks)

    @property
    def closed(self) -> bool:
        return self._closed

    def spawn(
        self,
        coro: Coroutine[Any, Any, T],
        *,
        name: str | None = None,
        cancel_on_close: bool = True,
    ) -> asyncio.Task[T]:
        """Start ``coro`` as a tracked task and return it.

        Allowed while :meth:`aclose` is draining (a late stale dial may still need its
        connection closed); refused once the owner is fully closed.
        """
        if self._closed:
            coro.close()
            raise RuntimeError(f"task owner {self.name!r} is closed")
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        if not cancel_on_close:
            self._keep.add(task)
        task.add_done_callback(self._forget)
        return task

    def _forget(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        self._keep.discard(task)
        # Retrieve the outcome so asyncio does not warn "exception was never retrieved";
        # the code that cares about the result reads it itself.
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.debug("background task %s ended with %r", task.get_name(), exc)

    async def wait_idle(self, timeout: float = 5.0) -> None:
        """Wait (real time, at most ``timeout`` s) until no tracked task is running."""
        async with asyncio.timeout(timeout):
            while self._tasks:
                await asyncio.wait(set(self._tasks))

    async def aclose(self, timeout: float = 5.0) -> None:
        """Cancel cancellable tasks, wait for the rest (at most ``timeout`` s, real time),
        then cancel whatever is still running. Idempotent."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while self._tasks:
            for task in self._tasks - self._keep:
                task.cancel()
            remaining = end - loop.time()
            if remaining <= 0:
                for task in self._tasks:
                    task.cancel()
                # A task that swallows cancellation must not hang shutdown forever.
                _, stuck = await asyncio.wait(set(self._tasks), timeout=1.0)
                if stuck:
                    log.warning("%s: %d task(s) ignored cancellation", self.name, len(stuck))
                break
            await asyncio.wait(set(self._tasks), timeout=remaining)
        self._closed = True
