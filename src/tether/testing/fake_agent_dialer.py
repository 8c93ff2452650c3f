"""The server side of :class:`~tether.testing.fake_agent.FakeAgent`: :class:`FakeAgentDialer`
hands out :class:`FakeAgentConn`\\ s (a :class:`~tether.testing.fake_dialer.FakeConn` that
also speaks the agent API), one :class:`FakeAgent` per agent id, with per-agent
:class:`AgentSide` overrides for answers the agent contract does not cover."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tether.agent.schemas import (
    EditResult,
    FileEdits,
    Health,
    Instructions,
    ListDirResult,
    McpCallResult,
    McpToolList,
    ProcessList,
    ProcessOutput,
    ReadFileResult,
    SignalResult,
    WriteFileResult,
)
from tether.testing.fake_agent import FakeAgent
from tether.testing.fake_dialer import FakeConn, FakeDialer

T = TypeVar("T")


HANG = "hang"  # an :class:`AgentSide` answer: the call never returns (until cancelled)


@dataclass
class AgentSide:
    """Per-agent overrides and counters on top of a :class:`FakeAgent`, for tests that need
    an answer the contract does not cover (a hang, a server error, a canned listing).

    Each answer is ``None`` (the :class:`FakeAgent` answers), a value, an exception to raise,
    :data:`HANG`, or an async function run when the agent is asked."""

    instructions: Any = None
    tools: Any = None
    call: Any = None
    instruction_calls: int = 0
    list_calls: int = 0
    waits: list[float | None] = field(default_factory=list)
    mcp_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    async def answer(self, what: Any, agent: Callable[[], Awaitable[T]]) -> T:
        await asyncio.sleep(0)
        if what is None:
            return await agent()
        if isinstance(what, str) and what == HANG:
            await asyncio.Event().wait()
        if isinstance(what, Exception):
            raise what
        if callable(what):
            return await what()
        return what


class FakeAgentConn(FakeConn):
    """A :class:`FakeConn` that also speaks the agent API, through its agent's
    :class:`FakeAgent` (and :class:`AgentSide` overrides); a closed or broken conn, or a
    killed agent, fails with a transport error first (like :meth:`FakeConn.call`)."""

    @property
    def agent(self) -> FakeAgent:
        assert isinstance(self.dialer, FakeAgentDialer)
        return self.dialer.agent(self.agent_id)

    def side(self) -> AgentSide:
        assert isinstance(self.dialer, FakeAgentDialer)
        return self.dialer.side(self.agent_id)

    async def _live(self) -> FakeAgent:
        await self.call()
        return self.agent

    async def health(self, *, timeout: float | None = None) -> Health:
        return await (await self._live()).health(timeout=timeout)

    async def exec(self, command: str, **kwargs: Any) -> Any:
        return await (await self._live()).exec(command, **kwargs)

    async def process_list(self) -> ProcessList:
        return await (await self._live()).process_list()

    async def process_output(self, pid: str) -> ProcessOutput:
        return await (await self._live()).process_output(pid)

    async def process_signal(self, pid: str, signal: str) -> SignalResult:
        return await (await self._live()).process_signal(pid, signal)

    async def read_file(self, path: str, offset: int = 1, limit: int = 2000) -> ReadFileResult:
        return await (await self._live()).read_file(path, offset, limit)

    async def write_file(self, path: str, content: str) -> WriteFileResult:
        return await (await self._live()).write_file(path, content)

    async def edit_files(self, specs: Sequence[FileEdits | Mapping[str, Any]]) -> EditResult:
        return await (await self._live()).edit_files(specs)

    async def list_dir(self, path: str = ".") -> ListDirResult:
        return await (await self._live()).list_dir(path)

    async def instructions(self) -> Instructions:
        agent, side = await self._live(), self.side()
        side.instruction_calls += 1
        return await side.answer(side.instructions, agent.instructions)

    async def mcp_tools(
        self, *, timeout: float | None = None, wait: float | None = None
    ) -> McpToolList:
        agent, side = await self._live(), self.side()
        side.list_calls += 1
        side.waits.append(wait)
        return await side.answer(side.tools, lambda: agent.mcp_tools(timeout=timeout, wait=wait))

    async def mcp_call(self, name: str, arguments: Mapping[str, Any]) -> McpCallResult:
        agent, side = await self._live(), self.side()
        side.mcp_calls.append((name, dict(arguments)))
        return await side.answer(side.call, lambda: agent.mcp_call(name, arguments))


class FakeAgentDialer(FakeDialer):
    """A :class:`FakeDialer` whose conns speak the agent API; each agent id gets its own
    :class:`FakeAgent` rooted in ``root/<agent id>`` (made on first use, then passed to
    ``setup``) and :class:`AgentSide`."""

    def __init__(
        self, root: Path, *, setup: Callable[[FakeAgent], None] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.root = root
        self.setup = setup
        self.agents: dict[uuid.UUID, FakeAgent] = {}
        self.sides: dict[uuid.UUID, AgentSide] = {}

    def agent(self, agent_id: uuid.UUID) -> FakeAgent:
        found = self.agents.get(agent_id)
        if found is None:
            home = self.root / str(agent_id)
            (home / "project").mkdir(parents=True, exist_ok=True)
            found = self.agents[agent_id] = FakeAgent(
                home, home / "project", address=f"fake-agent-{agent_id}"
            )
            if self.setup is not None:
                self.setup(found)
        return found

    def side(self, agent_id: uuid.UUID) -> AgentSide:
        return self.sides.setdefault(agent_id, AgentSide())

    def _new_conn(self, agent_id: uuid.UUID, headers: dict[str, str]) -> FakeConn:
        self._serial += 1
        return FakeAgentConn(agent_id, dict(headers), self._serial, self)
