"""docs/behaviour.md §9.1 (DV-1 … DV-15): every outcome of ``dial_with_lazy_validation``.

All timing runs on a FakeClock: "delay 1 min" and "30 s deadline" take no wall time. Where
Coder's test says "within WaitShort" the test bounds the wait with a short real timeout
whose failure message names the hang.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from tether.chatd.binding import DialResult, dial_with_lazy_validation
from tether.chatd.taskowner import TaskOwner
from tether.errors import AgentTransportError, AgentUnreachable, DialTimeout, WorkspaceStopped
from tether.testing.clock import FakeClock, settle
from tether.testing.fake_binding_store import agent_row
from tether.testing.fake_dialer import DialPlan, FakeConn, FakeDialer

WS = uuid.uuid4()
BUILD = uuid.uuid4()


@dataclass
class Harness:
    clock: FakeClock = field(default_factory=FakeClock)
    drain: TaskOwner = field(default_factory=lambda: TaskOwner("test"))
    dialer: FakeDialer = field(default_factory=FakeDialer)
    validate_calls: int = 0
    bound: uuid.UUID = field(default_factory=uuid.uuid4)
    current: uuid.UUID = field(default_factory=uuid.uuid4)

    async def dial(self, agent_id: uuid.UUID) -> FakeConn:
        return await self.dialer.dial(agent_row(WS, BUILD, agent_id=agent_id), headers={})

    def validator(
        self, answer: Callable[[], Awaitable[uuid.UUID]]
    ) -> Callable[[uuid.UUID], Awaitable[uuid.UUID]]:
        async def validate(workspace_id: uuid.UUID) -> uuid.UUID:
            assert workspace_id == WS
            self.validate_calls += 1
            return await answer()

        return validate

    def returns(self, agent_id: uuid.UUID) -> Callable[[uuid.UUID], Awaitable[uuid.UUID]]:
        async def answer() -> uuid.UUID:
            return agent_id

        return self.validator(answer)

    def raises(self, error: Exception) -> Callable[[uuid.UUID], Awaitable[uuid.UUID]]:
        async def answer() -> uuid.UUID:
            raise error

        return self.validator(answer)

    async def run(
        self,
        validate: Callable[[uuid.UUID], Awaitable[uuid.UUID]],
        *,
        delay: float,
        timeout: float | None = None,
    ) -> DialResult[FakeConn]:
        return await dial_with_lazy_validation(
            bound_agent_id=self.bound,
            workspace_id=WS,
            dial=self.dial,
            validate=validate,
            delay=delay,
            clock=self.clock,
            drain=self.drain,
            timeout=timeout,
        )


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    harness = Harness()
    yield harness
    await harness.drain.aclose()


async def test_dv1_fast_dial_returns_bound_conn_without_validation(h: Harness) -> None:
    """DV-1: the bound agent answers at once; validation is never consulted."""
    result = await h.run(h.raises(AssertionError("validate must not run")), delay=60)
    assert result.agent_id == h.bound
    assert not result.switched
    assert result.conn.agent_id == h.bound
    assert h.validate_calls == 0
    assert h.dialer.dialed == [h.bound]
    await result.conn.aclose()
    await h.drain.wait_idle()
    assert result.conn.close_calls == 1


async def test_dv2_slow_dial_same_agent_keeps_original(h: Harness) -> None:
    """DV-2: delay 0; the dial completes only once validation ran and confirmed it."""
    gate = asyncio.Event()
    h.dialer.script(h.bound, DialPlan.gated(gate))

    async def confirm() -> uuid.UUID:
        gate.set()
        return h.bound

    result = await h.run(h.validator(confirm), delay=0)
    assert (result.agent_id, result.switched) == (h.bound, False)
    assert h.validate_calls == 1
    assert h.dialer.dialed == [h.bound]
    await result.conn.aclose()
    assert result.conn.close_calls == 1


async def test_dv3_slow_dial_no_current_agent_fails_fast(h: Harness) -> None:
    """DV-3 (#23707): validation says the workspace has no agent; the hung dial is
    cancelled and WorkspaceStopped returns without waiting for it."""
    h.dialer.script(h.bound, DialPlan.hang())

    async def stopped() -> uuid.UUID:
        await h.dialer.wait_for_dials(1)
        raise WorkspaceStopped()

    with pytest.raises(WorkspaceStopped):
        try:
            async with asyncio.timeout(2):
                await h.run(h.validator(stopped), delay=0)
        except TimeoutError:
            pytest.fail("blocked after validation reported no current agent")
    assert h.dialer.dialed == [h.bound]
    assert h.validate_calls == 1
    await h.drain.wait_idle()
    assert h.dialer.calls[0].outcome == "cancelled"


async def test_dv4_stale_dial_late_success_is_closed(h: Harness) -> None:
    """DV-4: the stale dial returns a conn only after being cancelled; that late conn is
    closed exactly once in the background while the caller gets the current agent."""
    h.dialer.script(h.bound, DialPlan.late_success())
    result = await h.run(h.returns(h.current), delay=0)
    assert (result.agent_id, result.switched) == (h.current, True)
    assert result.conn.agent_id == h.current
    await h.drain.wait_idle()
    assert h.dialer.dialed == [h.bound, h.current]
    assert h.validate_calls == 1
    (stale,) = h.dialer.conns_for(h.bound)
    assert stale.close_calls == 1
    assert result.conn.close_calls == 0
    await result.conn.aclose()
    assert result.conn.close_calls == 1


async def test_dv5_cancelled_stale_failure_is_not_closed(h: Harness) -> None:
    """DV-5: the cancelled stale dial produced a conn but failed; a failed dial's result is
    never closed (there is nothing the caller owns)."""
    h.dialer.script(h.bound, DialPlan.late_failure())
    result = await h.run(h.returns(h.current), delay=0)
    assert (result.agent_id, result.switched) == (h.current, True)
    await h.drain.wait_idle()
    (stale,) = h.dialer.conns_for(h.bound)
    assert stale.close_calls == 0
    assert h.dialer.calls[0].outcome == "error"


async def test_dv6_switch_does_not_block_on_stale_dial(h: Harness) -> None:
    """DV-6: the stale dial ignores cancellation until a gate opens; the switched result is
    delivered before that, and the stale conn is closed once the gate opens."""
    gate = asyncio.Event()
    h.dialer.script(h.bound, DialPlan.gated(gate, shielded=True))
    try:
        async with asyncio.timeout(2):
            result = await h.run(h.returns(h.current), delay=0)
    except TimeoutError:
        pytest.fail("blocked on stale dial cleanup")
    assert (result.agent_id, result.switched) == (h.current, True)
    assert h.dialer.calls[0].outcome == "running"
    gate.set()
    await h.drain.wait_idle()
    (stale,) = h.dialer.conns_for(h.bound)
    assert stale.close_calls == 1


async def test_dv7_fast_failure_switches_without_waiting_for_delay(h: Harness) -> None:
    """DV-7: a fast failure validates at once (no 1-minute wait) and switches."""
    h.dialer.script(h.bound, DialPlan.fail())
    result = await h.run(h.returns(h.current), delay=60)
    assert (result.agent_id, result.switched) == (h.current, True)
    assert h.dialer.dialed == [h.bound, h.current]
    assert h.validate_calls == 1
    assert h.clock.monotonic() == 0


async def test_dv8_fast_failure_same_agent_redials_once(h: Harness) -> None:
    """DV-8: the bound agent fails then answers; validation confirms it; one redial."""
    h.dialer.script(h.bound, DialPlan.fail(), DialPlan.ok())
    result = await h.run(h.returns(h.bound), delay=60)
    assert (result.agent_id, result.switched) == (h.bound, False)
    assert h.dialer.dialed == [h.bound, h.bound]
    assert h.validate_calls == 1


async def test_dv9_same_agent_retry_failure_is_wrapped(h: Harness) -> None:
    """DV-9: both dials fail. tether raises AgentUnreachable (typed) whose text is exactly
    the retry error with the lazy-validation prefix, chained to the original error."""
    h.dialer.script(h.bound, DialPlan.fail("dial failed"), DialPlan.fail("retry failed"))
    with pytest.raises(AgentUnreachable) as info:
        await h.run(h.returns(h.bound), delay=60)
    assert str(info.value) == "dial with lazy validation: retry failed"
    assert info.value.code == "agent_unreachable"
    assert isinstance(info.value.__cause__, AgentTransportError)
    assert h.dialer.dialed == [h.bound, h.bound]
    assert h.validate_calls == 1


async def test_dv10_validation_error_falls_back_to_original_dial(h: Harness) -> None:
    """DV-10: validation fails (DB error) and cannot prove the binding stale: keep the
    original dial."""
    gate = asyncio.Event()
    h.dialer.script(h.bound, DialPlan.gated(gate))

    async def db_error() -> uuid.UUID:
        gate.set()
        raise RuntimeError("database is locked")

    result = await h.run(h.validator(db_error), delay=0)
    assert (result.agent_id, result.switched) == (h.bound, False)
    assert h.validate_calls == 1
    assert h.dialer.dialed == [h.bound]


async def test_dv11_caller_cancelled_during_validation(h: Harness) -> None:
    """DV-11: the caller is cancelled while validating: CancelledError propagates (tether:
    cancellation always wins) and the hung dial is cancelled in the background."""
    h.dialer.script(h.bound, DialPlan.hang())
    caller: asyncio.Task[DialResult[FakeConn]] | None = None

    async def cancel_caller() -> uuid.UUID:
        assert caller is not None
        caller.cancel()
        return h.bound

    caller = asyncio.create_task(h.run(h.validator(cancel_caller), delay=0))
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert h.validate_calls == 1
    await h.drain.wait_idle()
    assert h.dialer.calls[0].outcome == "cancelled"


async def test_dv12_fast_failure_no_agent_is_workspace_stopped(h: Harness) -> None:
    """DV-12: fast failure, validation finds no agent → WorkspaceStopped, no redial."""
    h.dialer.script(h.bound, DialPlan.fail())
    with pytest.raises(WorkspaceStopped):
        await h.run(h.raises(WorkspaceStopped()), delay=60)
    assert h.dialer.dialed == [h.bound]


async def test_dv13_fast_failure_validation_error_is_wrapped(h: Harness) -> None:
    """DV-13: fast failure and validation error → AgentUnreachable naming both, chained to
    the validation error; no further dial."""
    h.dialer.script(h.bound, DialPlan.fail("connection refused"))
    db_error = RuntimeError("database is locked")
    with pytest.raises(AgentUnreachable) as info:
        await h.run(h.raises(db_error), delay=60)
    assert info.value.__cause__ is db_error
    assert str(info.value).startswith("dial with lazy validation: connection refused")
    assert "database is locked" in str(info.value)
    assert h.dialer.dialed == [h.bound]


async def test_dv14_switch_dial_failure_is_wrapped_and_leaks_nothing(h: Harness) -> None:
    """DV-14: stale fails, validated agent fails too → wrapped error, no open conn."""
    h.dialer.script(h.bound, DialPlan.fail())
    h.dialer.script(h.current, DialPlan.fail("current down"))
    with pytest.raises(AgentUnreachable, match=r"^dial with lazy validation: current down$"):
        await h.run(h.returns(h.current), delay=60)
    assert h.dialer.dialed == [h.bound, h.current]
    await h.drain.wait_idle()
    assert h.dialer.open_conns() == []


async def test_dv15_validation_error_then_deadline_is_dial_timeout(h: Harness) -> None:
    """DV-15: dial hangs, validation errors at the delay, the caller's deadline expires →
    DialTimeout (tether raises the typed error itself; the deadline is a clock timer)."""
    h.dialer.script(h.bound, DialPlan.hang())
    task = asyncio.create_task(h.run(h.raises(RuntimeError("db down")), delay=5, timeout=30))
    await h.clock.wait_for_sleepers(2)  # validation delay + deadline
    h.clock.advance(5)
    await settle()
    assert h.validate_calls == 1
    assert not task.done()
    h.clock.advance(24.9)
    await settle()
    assert not task.done()
    h.clock.advance(0.1)
    with pytest.raises(DialTimeout):
        await task
    await h.drain.wait_idle()
    assert h.dialer.calls[0].outcome == "cancelled"


async def test_dv15_callers_own_asyncio_timeout_also_bounds_the_call(h: Harness) -> None:
    """DV-15 (variant): with no ``timeout`` the caller's own asyncio deadline bounds the
    call; the hung dial is cancelled in the background."""
    h.dialer.script(h.bound, DialPlan.hang())
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await h.run(h.raises(RuntimeError("db down")), delay=0)
    await h.drain.wait_idle()
    assert h.dialer.calls[0].outcome == "cancelled"


async def test_row11_deadline_with_ready_original_success_returns_it(h: Harness) -> None:
    """Row 11: the deadline expires in the same instant the original dial succeeds; the
    ready conn wins over the deadline."""
    gate = asyncio.Event()
    h.dialer.script(h.bound, DialPlan.gated(gate))
    task = asyncio.create_task(h.run(h.returns(h.bound), delay=1, timeout=2))
    await h.clock.wait_for_sleepers(2)
    h.clock.advance(1)
    await settle()
    assert h.validate_calls == 1
    gate.set()
    h.clock.advance(1)
    result = await task
    assert (result.agent_id, result.switched) == (h.bound, False)
    await h.drain.wait_idle()
    assert result.conn.close_calls == 0


async def test_row10_timer_switch_closes_late_stale_success(h: Harness) -> None:
    """Row 10 at the real delay: the stale dial is cancelled when validation (at 5 s) finds
    another agent; its late success is closed."""
    h.dialer.script(h.bound, DialPlan.late_success())
    task = asyncio.create_task(h.run(h.returns(h.current), delay=5, timeout=30))
    await h.clock.wait_for_sleepers(2)
    h.clock.advance(4.9)
    await settle()
    assert h.validate_calls == 0
    h.clock.advance(0.1)
    result = await task
    assert (result.agent_id, result.switched) == (h.current, True)
    await h.drain.wait_idle()
    assert h.dialer.conns_for(h.bound)[0].close_calls == 1


async def test_row11_deadline_during_validation_returns_ready_original(h: Harness) -> None:
    """Row 11 ("ctx ends first" while validating, rows 8/9): the original dial succeeded
    while validation was still running; when the deadline expires that conn is returned."""
    gate = asyncio.Event()
    h.dialer.script(h.bound, DialPlan.gated(gate))
    never = asyncio.Event()

    async def slow_validation() -> uuid.UUID:
        await never.wait()
        return h.bound

    task = asyncio.create_task(h.run(h.validator(slow_validation), delay=1, timeout=2))
    await h.clock.wait_for_sleepers(2)
    h.clock.advance(1)
    await settle()
    assert h.validate_calls == 1
    gate.set()
    await settle()
    assert h.dialer.calls[0].outcome == "ok"
    assert not task.done()
    h.clock.advance(1)
    result = await task
    assert (result.agent_id, result.switched) == (h.bound, False)
    await h.drain.wait_idle()
    assert result.conn.close_calls == 0
