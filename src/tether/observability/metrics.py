"""tether's Prometheus metrics, one :class:`Metrics` (with its own registry) per Graph.

``wiring.py`` builds it; components take it as an argument and call one method per event,
so the instrumentation in hot paths stays one line. Nothing lives at module level: several
servers in one process (the tests) each have their own registry.

A turn's timings live in a :class:`TurnScope` held in a context variable for the duration of
the turn task (set by :meth:`Metrics.turn`): the model wrapper and the tool events add their
time to it, and the turn's *overhead* is its duration less the model and tool time — what
tether itself cost.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

from tether.errors import TetherError
from tether.observability.logs import log_context

T = TypeVar("T")

log = logging.getLogger("tether.observe")

# Seconds. Turns with a scripted model take milliseconds; real ones take minutes.
_FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_SLOW = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


@dataclass
class TurnScope:
    """The running turn's timings (perf-counter seconds)."""

    started: float
    model_s: float = 0.0
    tool_s: float = 0.0
    outcome: str | None = None
    tool_starts: dict[str, tuple[str, float]] = field(default_factory=dict)


_turn: contextvars.ContextVar[TurnScope | None] = contextvars.ContextVar(
    "tether_turn_scope", default=None
)


def outcome_of(exc: BaseException) -> str:
    """A bounded label for a failure: the error tree's code, else ``error``."""
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    if isinstance(exc, TetherError):
        return exc.code
    return "error"


class Metrics:
    """The metric families and one method per instrumented event."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.turns = Counter(
            "tether_turns", "Chat turns finished, by outcome.", ["outcome"], registry=r
        )
        self.turn_seconds = Histogram(
            "tether_turn_duration_seconds", "Wall time of a chat turn.", buckets=_SLOW, registry=r
        )
        self.turn_overhead = Histogram(
            "tether_turn_overhead_seconds",
            "A turn's wall time less its model and tool time: what tether itself cost.",
            buckets=_FAST,
            registry=r,
        )
        self.model_seconds = Histogram(
            "tether_model_call_duration_seconds",
            "Model requests, by outcome.",
            ["outcome"],
            buckets=_SLOW,
            registry=r,
        )
        self.tool_seconds = Histogram(
            "tether_tool_call_duration_seconds",
            "Tool calls (built-in and workspace MCP), by outcome.",
            ["outcome"],
            buckets=_SLOW,
            registry=r,
        )
        self.dials = Counter(
            "tether_dials",
            "Lazy-validation dials of a workspace agent, by outcome (ok: the bound agent; "
            "switched: the latest build's agent; else the error code).",
            ["outcome"],
            registry=r,
        )
        self.dial_seconds = Histogram(
            "tether_dial_duration_seconds", "Lazy-validation dial time.", buckets=_FAST, registry=r
        )
        self.binding_repairs = Counter(
            "tether_binding_repairs",
            "Chat bindings written by chatd (lazy bind, stale binding repaired, switch adopted).",
            registry=r,
        )
        self.mcp_seconds = Histogram(
            "tether_mcp_discovery_duration_seconds",
            "Workspace MCP tool discovery, by outcome.",
            ["outcome"],
            buckets=_SLOW,
            registry=r,
        )
        self.mcp_failures = Counter(
            "tether_mcp_discovery_failures",
            "Workspace MCP discoveries that timed out or failed (the turn went on without).",
            ["reason"],
            registry=r,
        )
        self.agent_sessions = Gauge(
            "tether_agent_sessions_connected",
            "Workspace agent sessions connected to this process.",
            registry=r,
        )
        self.build_seconds = Histogram(
            "tether_build_duration_seconds",
            "Workspace builds run by this process's provisioner, by outcome.",
            ["transition", "outcome"],
            buckets=_SLOW,
            registry=r,
        )
        self.db_pool_checked_out = Gauge(
            "tether_db_pool_connections_in_use",
            "Database connections checked out of the pool.",
            registry=r,
        )
        self.db_pool_size = Gauge(
            "tether_db_pool_size", "Database connections held by the pool.", registry=r
        )
        self.chats_pending = Gauge(
            "tether_chats_pending", "Chats waiting for a worker (queue depth).", registry=r
        )
        self.messages_queued = Gauge(
            "tether_queued_messages",
            "User messages queued behind a running turn.",
            registry=r,
        )
        self.loop_tasks = Gauge(
            "tether_event_loop_tasks",
            "Tasks on the serving process's event loop (a steady rise is a leak).",
            registry=r,
        )
        self.loop_lag = Histogram(
            "tether_event_loop_lag_seconds",
            "How late a timer on the event loop fired: the loop was held that long "
            "(observability/loopwatch.py).",
            buckets=_FAST,
            registry=r,
        )
        self.gc_pause = Histogram(
            "tether_gc_pause_seconds",
            "Garbage collections of the serving process, by generation (2: full).",
            ["generation"],
            buckets=_FAST,
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)

    # --- turns -------------------------------------------------------------------------------

    async def turn(self, coro: Coroutine[Any, Any, T], *, interrupted: Callable[[], bool]) -> T:
        """Run one turn's coroutine and record its outcome, duration and overhead."""
        scope = TurnScope(started=time.perf_counter())
        token = _turn.set(scope)
        outcome = "crashed"
        try:
            result = await coro
            outcome = "interrupted" if interrupted() else scope.outcome or "ok"
            return result
        except asyncio.CancelledError:
            outcome = "interrupted" if interrupted() else "cancelled"
            raise
        finally:
            _turn.reset(token)
            elapsed = time.perf_counter() - scope.started
            self.turns.labels(outcome).inc()
            self.turn_seconds.observe(elapsed)
            self.turn_overhead.observe(max(0.0, elapsed - scope.model_s - scope.tool_s))

    def turn_outcome(self, error_code: str | None) -> None:
        """The running turn ended with ``error_code`` (None: it succeeded)."""
        scope = _turn.get()
        if scope is not None:
            scope.outcome = error_code or "ok"

    @contextlib.asynccontextmanager
    async def model_call(self) -> AsyncIterator[None]:
        """Time one model request of the running turn (streamed to its end)."""
        started = time.perf_counter()
        outcome = "ok"
        try:
            yield
        except BaseException as exc:
            outcome = outcome_of(exc)
            raise
        finally:
            seconds = time.perf_counter() - started
            self.model_seconds.labels(outcome).observe(seconds)
            scope = _turn.get()
            if scope is not None:
                scope.model_s += seconds

    @contextlib.asynccontextmanager
    async def tools_step(self) -> AsyncIterator[None]:
        """Time one step's tool calls (run in parallel) for the turn's overhead."""
        started = time.perf_counter()
        try:
            yield
        finally:
            scope = _turn.get()
            if scope is not None:
                scope.tool_s += time.perf_counter() - started

    def tool_event(self, event: Any) -> None:
        """A pydantic-ai tool event of the running turn: a call starts, or its result came."""
        scope = _turn.get()
        if scope is None:
            return
        kind = getattr(event, "event_kind", "")
        if kind == "function_tool_call":
            part = event.part
            scope.tool_starts[part.tool_call_id] = (part.tool_name, time.perf_counter())
        elif kind == "function_tool_result":
            part = event.part
            started = scope.tool_starts.pop(part.tool_call_id, None)
            if started is None:
                return
            seconds = time.perf_counter() - started[1]
            # retry: the call failed validation or the tool asked the model to retry
            outcome = "ok"
            if getattr(part, "part_kind", "") == "retry-prompt":
                outcome = "retry"
            elif isinstance(getattr(part, "content", None), dict) and "error" in part.content:
                outcome = "error"  # tether's tools answer failures with an ``error`` key
            self.tool_seconds.labels(outcome).observe(seconds)

    # --- dials, bindings, MCP ----------------------------------------------------------------

    async def dial(self, aw: Awaitable[T]) -> T:
        """Await one lazy-validation dial (a ``DialResult``) and record its outcome."""
        started = time.perf_counter()
        try:
            result = await aw
        except BaseException as exc:
            outcome = outcome_of(exc)
            self.dials.labels(outcome).inc()
            log.info("dial %s after %.1f ms", outcome, (time.perf_counter() - started) * 1e3)
            raise
        finally:
            self.dial_seconds.observe(time.perf_counter() - started)
        outcome = "switched" if getattr(result, "switched", False) else "ok"
        self.dials.labels(outcome).inc()
        agent_id = getattr(result, "agent_id", None)
        with log_context(agent_id=agent_id):
            log.info("dial %s after %.1f ms", outcome, (time.perf_counter() - started) * 1e3)
        return result

    def binding_repaired(self) -> None:
        self.binding_repairs.inc()

    async def mcp_discovery(self, aw: Awaitable[T]) -> T:
        """Await one workspace MCP discovery; a timeout (its deadline cancels it) or an
        error counts as a failure, with the turn going on without the tools."""
        started = time.perf_counter()
        outcome = "ok"
        try:
            return await aw
        except BaseException as exc:
            outcome = (
                "timeout" if isinstance(exc, TimeoutError | asyncio.CancelledError) else "error"
            )
            self.mcp_failures.labels(outcome).inc()
            raise
        finally:
            self.mcp_seconds.labels(outcome).observe(time.perf_counter() - started)

    # --- agents, builds, database ------------------------------------------------------------

    def agent_session_opened(self) -> None:
        self.agent_sessions.inc()

    def agent_session_closed(self) -> None:
        self.agent_sessions.dec()

    def build_finished(self, transition: str, outcome: str, seconds: float) -> None:
        self.build_seconds.labels(transition, outcome).observe(seconds)

    def pool(self, checked_out: int, size: int) -> None:
        self.db_pool_checked_out.set(checked_out)
        self.db_pool_size.set(size)

    def queue(self, chats_pending: int, messages_queued: int) -> None:
        self.chats_pending.set(chats_pending)
        self.messages_queued.set(messages_queued)
