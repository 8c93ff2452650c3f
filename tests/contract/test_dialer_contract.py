"""The Dialer contract (``tether.chatd.binding.Dialer``), run against ``FakeDialer`` and
the real ``AgentDialer`` with a real ``tether agent`` process.

What every implementation promises:

* **ok**: a live agent gives a conn that answers and carries the chat headers; closing it
  works;
* **closed port**: fails fast (well under a second) with ``AgentTransportError``;
* **black hole** (SYNs dropped: a listener whose accept queue is full): never hangs the
  caller past its bound — the real dialer raises ``AgentTransportError`` after about its
  connect timeout; the fake, whose black hole hangs on purpose (to drive chatd's dial
  timeout), ends promptly when cancelled. Either way no conn is left open.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import pytest

from support.agent_procs import RunningAgent, start_agent, stop_agent
from tether.agentconn.clients import AgentClients
from tether.agentconn.liveness import AgentLiveness
from tether.chatd.binding import (
    ANCESTOR_CHAT_IDS_HEADER,
    CHAT_ID_HEADER,
    AgentDialer,
    AgentRow,
    Dialer,
)
from tether.errors import AgentTransportError
from tether.testing.fake_binding_store import agent_row
from tether.testing.fake_dialer import DialPlan, FakeDialer

CONNECT_TIMEOUT = 0.3
FAST_S = 0.5


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def black_hole() -> Iterator[str]:
    """An address whose SYNs are dropped: a listener (backlog 0) whose accept queue is
    already full and is never drained."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    time.sleep(0.05)  # let the handshakes land in the queue
    try:
        yield f"127.0.0.1:{port}"
    finally:
        for s in (*fillers, listener):
            s.close()


HEADERS = {CHAT_ID_HEADER: "chat-1", ANCESTOR_CHAT_IDS_HEADER: '["parent-1"]'}


class Side(Protocol):
    dialer: Dialer[Any]
    bounded_black_hole: bool
    liveness: AgentLiveness

    def live(self) -> AgentRow: ...

    def closed(self) -> AgentRow: ...

    def holed(self, address: str) -> AgentRow: ...

    async def answers(self, conn: Any) -> None: ...

    def saw_headers(self, conn: Any) -> bool: ...


def _row(name: str) -> AgentRow:
    ws, build = uuid.uuid4(), uuid.uuid4()
    return agent_row(ws, build, name=name)


class FakeSide:
    bounded_black_hole = False

    def __init__(self) -> None:
        self.liveness = AgentLiveness()
        self.fake = FakeDialer(liveness=self.liveness)
        self.dialer: Dialer[Any] = self.fake

    def live(self) -> AgentRow:
        row = _row("live")
        self.fake.script(row.id, DialPlan.ok())
        return row

    def closed(self) -> AgentRow:
        row = _row("closed")
        self.fake.script(row.id, DialPlan.fail("connection refused"))
        return row

    def holed(self, address: str) -> AgentRow:
        row = replace(_row("holed"), dial_address=address)
        self.fake.script(row.id, DialPlan.hang())
        return row

    async def answers(self, conn: Any) -> None:
        await conn.call()

    def saw_headers(self, conn: Any) -> bool:
        return dict(conn.headers) == HEADERS


class RealSide:
    bounded_black_hole = True

    def __init__(self, agent: RunningAgent, *, shared: AgentClients | None = None) -> None:
        self.agent = agent
        self.liveness = AgentLiveness() if shared is None else shared.liveness
        assert self.liveness is not None
        self.dialer = (
            AgentDialer(
                connect_timeout=CONNECT_TIMEOUT, request_timeout=5.0, liveness=self.liveness
            )
            if shared is None
            else AgentDialer(clients=shared)
        )

    def live(self) -> AgentRow:
        return replace(_row("live"), dial_address=self.agent.address, dial_secret=self.agent.secret)

    def closed(self) -> AgentRow:
        return replace(_row("closed"), dial_address=f"127.0.0.1:{closed_port()}")

    def holed(self, address: str) -> AgentRow:
        return replace(_row("holed"), dial_address=address)

    async def answers(self, conn: Any) -> None:
        assert (await conn.exec("true")).exit_code == 0

    def saw_headers(self, conn: Any) -> bool:
        return 'chat=chat-1 ancestors=["parent-1"]' in self.agent.stderr()


class DialerContract:
    async def test_live_agent_gives_a_conn_with_the_chat_headers(self, side: Side) -> None:
        conn = await side.dialer.dial(side.live(), headers=HEADERS)
        try:
            await side.answers(conn)
            assert side.saw_headers(conn)
        finally:
            await conn.aclose()

    async def test_closed_port_fails_fast_with_a_transport_error(self, side: Side) -> None:
        start = time.monotonic()
        with pytest.raises(AgentTransportError):
            await side.dialer.dial(side.closed(), headers=HEADERS)
        assert time.monotonic() - start < FAST_S

    async def test_black_hole_never_hangs_the_caller(self, side: Side) -> None:
        with black_hole() as address:
            start = time.monotonic()
            task = asyncio.ensure_future(side.dialer.dial(side.holed(address), headers=HEADERS))
            done, _ = await asyncio.wait({task}, timeout=CONNECT_TIMEOUT + FAST_S)
            elapsed = time.monotonic() - start
            if side.bounded_black_hole:
                assert task in done, "the dial outlived its connect timeout"
                with pytest.raises(AgentTransportError):
                    task.result()
                assert CONNECT_TIMEOUT * 0.8 <= elapsed < CONNECT_TIMEOUT + FAST_S
            else:
                assert not done  # the fake's black hole hangs until cancelled
                task.cancel()
                cancelled_at = time.monotonic()
                with pytest.raises(asyncio.CancelledError):
                    await task
                assert time.monotonic() - cancelled_at < 0.1

    async def test_agent_marked_down_fails_at_once(self, side: Side) -> None:
        with black_hole() as address:
            row = side.holed(address)
            side.liveness.mark_down(row.id, "no session frame for 3s")
            start = time.monotonic()
            with pytest.raises(AgentTransportError) as info:
                await side.dialer.dial(row, headers=HEADERS)
            assert time.monotonic() - start < 0.1
            assert not info.value.sent and "no session frame" in info.value.message


class TestFakeDialer(DialerContract):
    @pytest.fixture
    def side(self) -> Side:
        return FakeSide()


@pytest.mark.integration
class TestAgentDialer(DialerContract):
    @pytest.fixture
    async def side(self, tmp_path: Path) -> AsyncIterator[Side]:
        agent = await start_agent(tmp_path)
        try:
            yield RealSide(agent)
        finally:
            await stop_agent(agent.proc)


@pytest.mark.integration
class TestSharedAgentDialer(DialerContract):
    """The production shape: the dialer borrows from the one agent-client cache, which
    keeps idle clients (``agentconn/clients.py``)."""

    @pytest.fixture
    async def side(self, tmp_path: Path) -> AsyncIterator[Side]:
        agent = await start_agent(tmp_path)
        clients = AgentClients(
            connect_timeout=CONNECT_TIMEOUT, request_timeout=5.0, liveness=AgentLiveness()
        )
        try:
            yield RealSide(agent, shared=clients)
        finally:
            await clients.aclose()
            await stop_agent(agent.proc)
