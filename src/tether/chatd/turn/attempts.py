"""The turn's attempts (docs/behaviour.md §3.3): a provider's HTTP 429/5xx is retried with
exponential backoff, an over-budget or overflowing request compacts the history; either way
the turn runs again from the persisted history, so nothing is repeated. Every other failure
ends the turn with its error code."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from pydantic_ai.exceptions import ModelAPIError, ModelHTTPError
from pydantic_ai.models import Model

from tether.chatd.compaction import LongChat
from tether.chatd.context import NeedsCompaction, is_context_overflow, overflow_error
from tether.chatd.tools.base import ChatdDeps
from tether.chatd.turn.recorder import TurnRecorder
from tether.chatd.turn.steps import StepLimit
from tether.domain.chat import Chat
from tether.errors import Conflict, InvalidInput, TetherError
from tether.llm.budget import Budget
from tether.llm.provider import retry_policy, typed_provider_error

log = logging.getLogger(__name__)

MAX_COMPACTIONS_PER_TURN = 2  # then the turn ends with context_overflow

Outcome = tuple[str | None, str | None]  # (last_error, last_error_code); (None, None): done


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, ModelHTTPError) and (exc.status_code == 429 or exc.status_code >= 500)


async def run_attempts(
    deps: ChatdDeps,
    long: LongChat | None,
    chat: Chat,
    model: Model,
    budget: Budget | None,
    recorder: TurnRecorder,
    run_once: Callable[[], Awaitable[None]],
) -> Outcome:
    """Run ``run_once`` until it succeeds or the turn must end; the turn's outcome."""
    settings = deps.settings
    failures = 0
    compactions = 0
    while True:
        steps_before = recorder.steps_done
        try:
            await run_once()
            return None, None
        except StepLimit:
            return (
                f"the turn stopped after {settings.max_steps_per_turn} model steps",
                "step_limit",
            )
        except NeedsCompaction as exc:
            compactions += 1
            if (done := await _compact(long, chat, model, budget, compactions, exc)) is not None:
                return done
        except ModelHTTPError as exc:
            if long is not None and is_context_overflow(exc):
                compactions += 1
                if (
                    done := await _compact(long, chat, model, budget, compactions, exc)
                ) is not None:
                    return done
                continue
            if recorder.steps_done > steps_before:
                failures = 0  # progress was made: the budget is per stuck step
            max_retries, retry_base_s = retry_policy(
                model, settings.provider_max_retries, settings.provider_retry_base_s
            )
            if not _retryable(exc) or failures >= max_retries:
                return (
                    f"the model provider failed (HTTP {exc.status_code}): {exc.message}",
                    "provider_error",
                )
            failures += 1
            delay = retry_base_s * 2 ** (failures - 1)
            deps.hub.publish(
                chat.id,
                "retry",
                {
                    "attempt": failures,
                    "max_attempts": max_retries,
                    "delay_s": delay,
                    "error": f"HTTP {exc.status_code}",
                },
            )
            recorder.partial.clear()
            await deps.clock.sleep(delay)
        except ModelAPIError as exc:  # e.g. pydantic-ai's own deadlines, outside the model
            typed = typed_provider_error(exc, model)
            if isinstance(typed, TetherError):
                return typed.message, typed.code
            return str(exc), "provider_error"
        except TetherError as exc:
            return exc.message, exc.code
        except Exception as exc:
            log.exception("chat %s: turn failed", chat.id)
            return f"{type(exc).__name__}: {exc}", "internal"


async def _compact(
    long: LongChat | None,
    chat: Chat,
    model: Model,
    budget: Budget | None,
    n: int,
    cause: Exception,
) -> tuple[str, str] | None:
    """One compaction for an over-budget request (then the turn runs again from the
    persisted history), or the ``context_overflow`` outcome."""
    detail = cause.message if isinstance(cause, ModelHTTPError) else str(cause)
    if long is None or n > MAX_COMPACTIONS_PER_TURN:
        err = overflow_error(f"{detail} (after {n - 1} compactions)")
        return f"{err.message}. Remediation: {err.remediation}", err.code
    try:
        tail = cause.tail_budget if isinstance(cause, NeedsCompaction) else None
        reason = "budget" if isinstance(cause, NeedsCompaction) else "overflow"
        await long.compact(chat.id, model, reason=reason, tail_budget=tail)
    except InvalidInput:
        err = overflow_error(f"{detail}; the recent messages alone are too large")
        return f"{err.message}. Remediation: {err.remediation}", err.code
    except Conflict:
        pass  # another compaction of this chat won; its history is in force
    return None
