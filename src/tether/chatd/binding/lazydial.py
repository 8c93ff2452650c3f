"""Dial the bound agent, validating the binding only when the dial is slow or fails.

This is docs/behaviour.md §4.5 (every row is implemented; the row numbers below refer to its
table). The binding ``(build_id, agent_id)`` is an optimistic cache: the common case dials
the bound agent and never looks at the latest build. Only when the dial fails, or has not
finished after ``delay``, is the binding validated against the workspace's latest build,
which either proves it current, finds the agent it should point at, or finds no agent at all
(the workspace is stopped) — in which case the caller gets :class:`WorkspaceStopped` at once
instead of waiting for a dial that may never end.

tether's choices on top of Coder's chatd:

* **Errors are typed.** Dial failures are raised as :class:`AgentUnreachable` whose message
  keeps Coder's ``"dial with lazy validation: <cause>"`` text and whose
  ``__cause__`` is the original error. :class:`WorkspaceStopped` and other typed
  :class:`~tether.errors.WorkspaceError`\\ s from validation are raised unchanged.
* **The deadline is a clock timer** (``timeout``), so tests drive it with a fake clock.
  When it expires the call raises :class:`DialTimeout` — unless the original dial has
  already succeeded, in which case that conn is returned (row 11).
* **Cancellation always wins.** If the caller's task is cancelled, :class:`CancelledError`
  propagates even if a conn is ready; that conn is closed in the background. (Go's row 11
  returns the conn for a cancelled context too; in asyncio swallowing a cancellation would
  lose a user's interrupt.)
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from tether.chatd.binding.types import Conn
from tether.chatd.taskowner import TaskOwner
from tether.clock import Clock
from tether.errors import AgentUnreachable, DialTimeout, WorkspaceError

C = TypeVar("C", bound=Conn)
T = TypeVar("T")

PREFIX = "dial with lazy validation: "

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DialResult(Generic[C]):
    conn: C
    agent_id: uuid.UUID
    switched: bool


class _DeadlineExpired(Exception):
    """Internal: the caller's ``timeout`` ran out while we waited."""


async def dial_with_lazy_validation(
    *,
    bound_agent_id: uuid.UUID,
    workspace_id: uuid.UUID,
    dial: Callable[[uuid.UUID], Awaitable[C]],
    validate: Callable[[uuid.UUID], Awaitable[uuid.UUID]],
    delay: float,
    clock: Clock,
    drain: TaskOwner,
    timeout: float | None = None,
) -> DialResult[C]:
    """Dial ``bound_agent_id``; validate the binding if that is slow or fails.

    ``dial(agent_id)`` returns a conn or raises; ``validate(workspace_id)`` returns the
    agent id the chat should use now, or raises :class:`WorkspaceStopped` when the latest
    build has no agent. ``validate`` runs at most once. Abandoned dials (stale, or lost to
    the deadline) run on in ``drain``; a late success among them is closed there.

    Raises :class:`WorkspaceStopped`, other typed errors from ``validate``,
    :class:`AgentUnreachable` (``"dial with lazy validation: …"``) for dial failures and
    untyped validation failures, :class:`DialTimeout` when ``timeout`` (clock seconds)
    expires, and :class:`asyncio.CancelledError` when the caller is cancelled.
    """
    run = _LazyDial(dial, validate, clock, drain)
    try:
        return await run.run(bound_agent_id, workspace_id, delay, timeout)
    finally:
        run.cleanup()


class _LazyDial(Generic[C]):
    def __init__(
        self,
        dial: Callable[[uuid.UUID], Awaitable[C]],
        validate: Callable[[uuid.UUID], Awaitable[uuid.UUID]],
        clock: Clock,
        drain: TaskOwner,
    ) -> None:
        self._dial = dial
        self._validate = validate
        self._clock = clock
        self._drain = drain
        self._timers: list[asyncio.Task[None]] = []
        # Dial tasks whose result has not been handed to the caller (closed if late).
        self._pending: set[asyncio.Task[C]] = set()
        self._deadline: asyncio.Task[None] | None = None

    async def run(
        self,
        bound: uuid.UUID,
        workspace_id: uuid.UUID,
        delay: float,
        timeout: float | None,
    ) -> DialResult[C]:
        if timeout is not None:
            self._deadline = self._timer(timeout, "dial-timeout")
        first = self._start_dial(bound)
        validation_timer = self._timer(delay, "dial-validation-delay")
        try:
            await self._wait_for(first, validation_timer)
            if first.done():
                conn = self._take(first)
                if conn is not None:
                    return DialResult(conn, bound, False)  # row 1
                return await self._after_failure(first, bound, workspace_id)  # rows 2-6
            if self._deadline is not None and self._deadline.done():
                raise _DeadlineExpired
            return await self._after_slow_dial(first, bound, workspace_id)  # rows 7-10
        except _DeadlineExpired:
            # Row 11: a successful original result that is ready wins over the deadline.
            if first in self._pending and first.done() and _succeeded(first):
                self._pending.discard(first)
                return DialResult(first.result(), bound, False)
            raise DialTimeout() from None

    async def _after_failure(
        self, first: asyncio.Task[C], bound: uuid.UUID, workspace_id: uuid.UUID
    ) -> DialResult[C]:
        dial_err = _failure(first)
        # Row 2: the deadline already passed; do not validate or redial.
        if self._deadline is not None and self._deadline.done():
            raise _DeadlineExpired
        current = await self._validate_or_raise(workspace_id, dial_err)  # rows 3, 4
        if current == bound:
            return await self._dial_new(bound, switched=False)  # row 5
        return await self._dial_new(current, switched=True)  # row 6

    async def _after_slow_dial(
        self, first: asyncio.Task[C], bound: uuid.UUID, workspace_id: uuid.UUID
    ) -> DialResult[C]:
        try:
            current: uuid.UUID | None = await self._bounded(
                self._drain.spawn(_await(self._validate(workspace_id)), name="dial-validate")
            )
        except WorkspaceError:
            raise  # row 7: no agent (or another typed answer); the finally cancels the dial
        except _DeadlineExpired:
            raise
        except Exception as exc:
            # Row 8: validation could not prove the binding stale; trust the dial.
            log.warning("validating workspace %s binding failed: %s", workspace_id, exc)
            current = None
        if current is not None and current != bound:
            self._abandon(first)  # row 10: the stale dial drains in the background
            return await self._dial_new(current, switched=True)
        # Rows 8 and 9: keep waiting for the original dial, no retry on failure.
        await self._wait_for(first)
        if not first.done():
            raise _DeadlineExpired
        conn = self._take(first)
        if conn is None:
            dial_err = _failure(first)
            raise AgentUnreachable(f"{PREFIX}{dial_err}") from dial_err
        return DialResult(conn, bound, False)

    async def _validate_or_raise(
        self, workspace_id: uuid.UUID, dial_err: BaseException
    ) -> uuid.UUID:
        try:
            return await self._bounded(
                self._drain.spawn(_await(self._validate(workspace_id)), name="dial-validate")
            )
        except (WorkspaceError, _DeadlineExpired):
            raise
        except Exception as err:
            raise AgentUnreachable(
                f"{PREFIX}{dial_err}; validating the binding failed: {err}"
            ) from err

    async def _dial_new(self, agent_id: uuid.UUID, *, switched: bool) -> DialResult[C]:
        """Redial (row 5) or switch dial (rows 6, 10), bounded by the caller's deadline."""
        task = self._start_dial(agent_id)
        await self._wait_for(task)
        if not task.done():
            raise _DeadlineExpired
        conn = self._take(task)
        if conn is None:
            err = _failure(task)
            raise AgentUnreachable(f"{PREFIX}{err}") from err
        return DialResult(conn, agent_id, switched)

    # --- task plumbing -----------------------------------------------------------------

    def _start_dial(self, agent_id: uuid.UUID) -> asyncio.Task[C]:
        task = self._drain.spawn(_await(self._dial(agent_id)), name=f"dial-{agent_id}")
        self._pending.add(task)
        return task

    def _timer(self, seconds: float, name: str) -> asyncio.Task[None]:
        task = self._drain.spawn(self._clock.sleep(seconds), name=name)
        self._timers.append(task)
        return task

    async def _wait_for(self, *tasks: asyncio.Task[Any]) -> None:
        """Wait until one of ``tasks`` or the deadline is done."""
        waits: set[asyncio.Task[Any]] = set(tasks)
        if self._deadline is not None:
            waits.add(self._deadline)
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)

    async def _bounded(self, task: asyncio.Task[uuid.UUID]) -> uuid.UUID:
        try:
            await self._wait_for(task)
            if not task.done():
                raise _DeadlineExpired
            return task.result()
        finally:
            task.cancel()  # no-op when done; stops a validation the caller abandoned

    def _take(self, task: asyncio.Task[C]) -> C | None:
        """The conn of a finished dial, now owned by the caller; None if it failed."""
        self._pending.discard(task)
        if _succeeded(task):
            return task.result()
        return None

    def _abandon(self, task: asyncio.Task[C]) -> None:
        """Cancel a dial nobody wants; close its conn if it succeeds anyway."""
        if task not in self._pending:
            return
        self._pending.discard(task)
        task.cancel()
        task.add_done_callback(self._close_if_succeeded)

    def _close_if_succeeded(self, task: asyncio.Task[C]) -> None:
        # A failed dial's result is never closed: there is none to own.
        if not _succeeded(task):
            return
        conn = task.result()
        if self._drain.closed:
            log.warning("stale agent connection finished after shutdown; not closed")
            return
        self._drain.spawn(close_quietly(conn), name="close-stale-conn", cancel_on_close=False)

    def cleanup(self) -> None:
        for timer in self._timers:
            timer.cancel()
        for task in list(self._pending):
            self._abandon(task)


async def _await(aw: Awaitable[T]) -> T:
    return await aw


def _succeeded(task: asyncio.Task[Any]) -> bool:
    return task.done() and not task.cancelled() and task.exception() is None


def _failure(task: asyncio.Task[Any]) -> BaseException:
    if task.cancelled():
        return asyncio.CancelledError("dial was cancelled")
    exc = task.exception()
    assert exc is not None
    return exc


async def close_quietly(conn: Conn) -> None:
    """Close ``conn``; a failure to close is logged, never raised."""
    try:
        await conn.aclose()
    except Exception as err:
        log.warning("closing workspace agent connection failed: %s", err)
