"""The one-line hooks the hot paths call: each binds the log ids of the work it starts and
records its metrics (a turn, an agent session, a build)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from tether.ids import new_id
from tether.observability.logs import bind_log_ids, log_context
from tether.observability.metrics import Metrics

T = TypeVar("T")

log = logging.getLogger("tether.observe")


async def observe_turn(
    metrics: Metrics, chat: Any, control: Any, turn: Coroutine[Any, Any, T]
) -> T:
    """Run a chat turn (the worker's task body) with its ids bound and its metrics kept.
    ``request_id`` names this turn in the logs (``turn-…``)."""
    with log_context(
        request_id=f"turn-{new_id().hex}",
        chat_id=chat.id,
        workspace_id=chat.workspace_id,
        build_id=chat.build_id,
        agent_id=chat.agent_id,
    ):
        log.info("turn started")
        try:
            return await metrics.turn(turn, interrupted=lambda: control.reason == "interrupt")
        finally:
            log.info("turn ended")


def agent_session_opened(metrics: Metrics, agent: Any) -> Callable[[], None]:
    """An agent's session is open: counted, and its ids bound for the session's logs.
    Returns the call that counts it closed."""
    bind_log_ids(agent_id=agent.id, workspace_id=agent.workspace_id, build_id=agent.build_id)
    metrics.agent_session_opened()
    log.info("agent session opened")

    def closed() -> None:
        metrics.agent_session_closed()
        log.info("agent session closed")

    return closed


async def observe_build(metrics: Metrics, build: Any, job: Coroutine[Any, Any, T]) -> T:
    """Run one build job with its ids bound; record its duration by outcome."""
    started = time.perf_counter()
    outcome = "failed"
    with log_context(build_id=build.id, workspace_id=build.workspace_id):
        try:
            result = await job
            outcome = "succeeded"
            return result
        except Exception as exc:
            if type(exc).__name__ == "_Canceled":  # the provisioner's cooperative cancel
                outcome = "canceled"
            raise
        finally:
            transition = str(getattr(build.transition, "value", build.transition))
            seconds = time.perf_counter() - started
            metrics.build_finished(transition, outcome, seconds)
            log.info("build %s %s in %.2fs", transition, outcome, seconds)
