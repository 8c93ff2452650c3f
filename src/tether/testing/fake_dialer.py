"""A scriptable fake of chatd's agent dialer (``tether.chatd.binding.Dialer``).

Each agent gets a queue of :class:`DialPlan`\\ s, consumed one per dial; the last plan
repeats. Plans cover what real agents do: answer at once, fail fast, black-hole (hang until
cancelled), succeed only after the dial was cancelled (a late success that must be closed),
fail after cancellation while having produced a conn (which must *not* be closed), or wait
on a gate that ignores cancellation. Every dial and every close is recorded::

    dialer = FakeDialer()
    dialer.script(stale.id, DialPlan.hang())
    dialer.script(current.id, DialPlan.ok())
    ...
    assert dialer.dialed == [stale.id, current.id]
    assert dialer.conns_for(stale.id)[0].close_calls == 1
"""

from __future__ import annotations

import asyncio
import enum
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from tether.agentconn.liveness import AgentLiveness
from tether.chatd.binding import AgentRow
from tether.errors import AgentTransportError


class DialMode(enum.StrEnum):
    OK = "ok"  # a conn at once
    FAIL = "fail"  # raise at once
    HANG = "hang"  # block until cancelled, then propagate the cancellation
    LATE_SUCCESS = "late_success"  # block until cancelled, then return a conn anyway
    LATE_FAILURE = "late_failure"  # block until cancelled, make a conn, raise anyway
    GATED = "gated"  # wait for ``gate`` (ignoring cancellation if ``shielded``)


@dataclass(frozen=True)
class DialPlan:
    mode: DialMode
    error: Exception | None = None
    gate: asyncio.Event | None = None
    shielded: bool = False
    then_fail: bool = False  # for GATED: raise ``error`` once the gate opens

    @classmethod
    def ok(cls) -> DialPlan:
        return cls(DialMode.OK)

    @classmethod
    def fail(cls, message: str = "agent is not connected") -> DialPlan:
        return cls(DialMode.FAIL, error=AgentTransportError(message))

    @classmethod
    def raising(cls, error: Exception) -> DialPlan:
        return cls(DialMode.FAIL, error=error)

    @classmethod
    def hang(cls) -> DialPlan:
        return cls(DialMode.HANG)

    @classmethod
    def late_success(cls) -> DialPlan:
        return cls(DialMode.LATE_SUCCESS)

    @classmethod
    def late_failure(cls, message: str = "dial canceled") -> DialPlan:
        return cls(DialMode.LATE_FAILURE, error=AgentTransportError(message))

    @classmethod
    def gated(
        cls, gate: asyncio.Event, *, shielded: bool = False, fail: str | None = None
    ) -> DialPlan:
        """Wait for ``gate``; then succeed (or fail with ``fail``). ``shielded`` gates keep
        waiting through cancellation, like a dial stuck in cleanup."""
        error = AgentTransportError(fail) if fail is not None else None
        return cls(
            DialMode.GATED, error=error, gate=gate, shielded=shielded, then_fail=error is not None
        )


@dataclass
class FakeConn:
    """What the fake dialer hands out. ``call()`` stands in for a request to the agent."""

    agent_id: uuid.UUID
    headers: dict[str, str]
    serial: int
    dialer: FakeDialer = field(repr=False)
    close_calls: int = 0
    broken: bool = False

    @property
    def closed(self) -> bool:
        return self.close_calls > 0

    async def aclose(self) -> None:
        self.close_calls += 1

    async def call(self, what: str = "ping") -> str:
        """A request over this conn: fails with a transport error when the conn is closed
        or broken, or its agent was killed."""
        await asyncio.sleep(0)
        if self.closed or self.broken or self.agent_id in self.dialer.dead:
            raise AgentTransportError(f"connection to agent {self.agent_id} lost")
        return f"{what} from {self.agent_id}"


@dataclass
class DialCall:
    agent_id: uuid.UUID
    headers: dict[str, str]
    plan: DialPlan
    conn: FakeConn | None = None  # the conn produced (even by a dial that then failed)
    outcome: str = "running"  # running | ok | error | cancelled


class FakeDialer:
    """Implements chatd's ``Dialer`` protocol with scripted per-agent behaviour."""

    def __init__(
        self, default: DialPlan | None = None, *, liveness: AgentLiveness | None = None
    ) -> None:
        self.default = default or DialPlan.ok()
        self.liveness = liveness  # as the real dialer: an agent marked down fails at once
        self.calls: list[DialCall] = []
        self.dead: set[uuid.UUID] = set()
        self._plans: dict[uuid.UUID, list[DialPlan]] = {}
        self._serial = 0
        self._dialled = asyncio.Event()  # set whenever a dial starts
        self.on_dial: Callable[[uuid.UUID], None] | None = None  # hook run as a dial starts

    def script(self, agent_id: uuid.UUID, *plans: DialPlan) -> None:
        """Replace ``agent_id``'s plans; consumed one per dial, the last one repeats."""
        self._plans[agent_id] = list(plans)

    def kill(self, agent_id: uuid.UUID) -> None:
        """The agent dies: its conns' requests fail and new dials fail fast."""
        self.dead.add(agent_id)

    @property
    def dialed(self) -> list[uuid.UUID]:
        return [c.agent_id for c in self.calls]

    def conns_for(self, agent_id: uuid.UUID) -> list[FakeConn]:
        return [c.conn for c in self.calls if c.agent_id == agent_id and c.conn is not None]

    @property
    def conns(self) -> list[FakeConn]:
        return [c.conn for c in self.calls if c.conn is not None]

    def open_conns(self) -> list[FakeConn]:
        """Conns handed out by successful dials and not closed yet."""
        return [
            c.conn
            for c in self.calls
            if c.conn is not None and c.outcome == "ok" and not c.conn.closed
        ]

    async def wait_for_dials(self, count: int, timeout: float = 2.0) -> None:
        """Wait (real time) until at least ``count`` dials have started."""
        async with asyncio.timeout(timeout):
            while len(self.calls) < count:
                self._dialled.clear()
                await self._dialled.wait()

    def _next_plan(self, agent_id: uuid.UUID) -> DialPlan:
        if agent_id in self.dead:
            return DialPlan.fail("agent is not connected")
        plans = self._plans.get(agent_id)
        if not plans:
            return self.default
        return plans.pop(0) if len(plans) > 1 else plans[0]

    def _new_conn(self, agent_id: uuid.UUID, headers: dict[str, str]) -> FakeConn:
        self._serial += 1
        return FakeConn(agent_id, dict(headers), self._serial, self)

    async def dial(self, agent: AgentRow, *, headers: dict[str, str]) -> FakeConn:
        if self.liveness is not None and self.liveness.is_down(agent.id):
            raise AgentTransportError(self.liveness.reason(agent.id), sent=False)
        plan = self._next_plan(agent.id)
        call = DialCall(agent.id, dict(headers), plan)
        self.calls.append(call)
        self._dialled.set()
        if self.on_dial is not None:
            self.on_dial(agent.id)
        try:
            conn = await self._run(plan, call, agent.id, headers)
        except asyncio.CancelledError:
            call.outcome = "cancelled"
            raise
        except BaseException:
            call.outcome = "error"
            raise
        call.outcome = "ok"
        return conn

    async def _run(
        self, plan: DialPlan, call: DialCall, agent_id: uuid.UUID, headers: dict[str, str]
    ) -> FakeConn:
        await asyncio.sleep(0)  # a dial is never synchronous
        mode = plan.mode
        if mode is DialMode.OK:
            call.conn = self._new_conn(agent_id, headers)
            return call.conn
        if mode is DialMode.FAIL:
            assert plan.error is not None
            raise plan.error
        if mode is DialMode.HANG:
            await asyncio.Event().wait()
            raise AssertionError("unreachable: a hung dial only ends by cancellation")
        if mode in (DialMode.LATE_SUCCESS, DialMode.LATE_FAILURE):
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                call.conn = self._new_conn(agent_id, headers)
                if mode is DialMode.LATE_FAILURE:
                    assert plan.error is not None
                    raise plan.error from None
                return call.conn  # swallow the cancellation: the late success
        assert mode is DialMode.GATED and plan.gate is not None
        if plan.shielded:
            while not plan.gate.is_set():
                try:
                    await asyncio.shield(plan.gate.wait())
                except asyncio.CancelledError:
                    continue  # stuck: ignores cancellation until the gate opens
        else:
            await plan.gate.wait()
        if plan.then_fail:
            assert plan.error is not None
            raise plan.error
        call.conn = self._new_conn(agent_id, headers)
        return call.conn
