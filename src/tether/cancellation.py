"""Ending tasks without swallowing the caller's own cancellation.

``task.cancel()`` followed by ``with suppress(BaseException): await task`` (or
``suppress(CancelledError)``) cannot tell the task's cancellation from the caller's: when
the caller is cancelled while it waits, the suppress eats that cancellation too and the
caller runs on as if nothing happened. :func:`cancel_and_wait` gathers the tasks with
``return_exceptions=True`` instead, so their outcomes are values and only the caller's
cancellation raises.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger("tether.cancellation")


async def cancel_and_wait(*tasks: asyncio.Future[Any] | None, timeout: float | None = None) -> bool:
    """Cancel ``tasks`` (``None`` entries are skipped) and wait until they have ended.

    Their results and exceptions are retrieved and dropped (an unexpected error is logged
    at debug level). The caller's own cancellation while it waits propagates. With
    ``timeout``, give up waiting after that many seconds; return whether every task ended.
    """
    live = [task for task in tasks if task is not None]
    for task in live:
        task.cancel()
    if not live:
        return True
    if timeout is None:
        outcomes = await asyncio.gather(*live, return_exceptions=True)
        _log_errors(outcomes)
        return True
    done, pending = await asyncio.wait(live, timeout=timeout)
    _log_errors([task.exception() for task in done if not task.cancelled()])
    return not pending


def _log_errors(outcomes: list[Any]) -> None:
    for outcome in outcomes:
        if isinstance(outcome, BaseException) and not isinstance(outcome, asyncio.CancelledError):
            log.debug("a cancelled task ended with %r", outcome)
