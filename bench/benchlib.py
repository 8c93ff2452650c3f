"""What the benches share: creating, waiting for and stopping workspaces, waiting for a
turn's end, timing the model and the tools of a turn, percentiles, process figures."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pydantic_ai.models.function import FunctionModel

IDLE = ("waiting", "error")  # the statuses a chat ends a turn in


async def wait_ready(
    api: httpx.AsyncClient, name: str, *, timeout_s: float, poll_s: float = 0.25
) -> uuid.UUID:
    """The workspace's id once its first agent is connected and ready; RuntimeError when the
    agent's lifecycle ends otherwise or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while True:
        data = (await api.get(f"/api/v1/workspaces/{name}")).json()
        agents = data.get("agents") or []
        if agents and agents[0]["status"] == "connected":
            if agents[0]["lifecycle_state"] == "ready":
                return uuid.UUID(data["id"])
            if agents[0]["lifecycle_state"] not in ("created", "starting"):
                raise RuntimeError(f"workspace {name}: agent {agents[0]['lifecycle_state']}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"workspace {name} not ready in {timeout_s:g}s: {data}")
        await asyncio.sleep(poll_s)


async def final_status(
    queue: asyncio.Queue[Any], *, timeout_s: float, early: Iterable[Any] = ()
) -> str:
    """The status a chat's turn ended in: from the events already received (``early``), else
    the next idle status on its event ``queue``. A turn publishes status(running) first, then
    its final status last; the service's own status events (pending) never carry an idle one."""
    for ev in early:
        if ev.event == "status" and ev.data.get("status") in IDLE:
            return str(ev.data["status"])
    async with asyncio.timeout(timeout_s):
        while True:
            ev = await queue.get()
            if ev.event == "status" and ev.data.get("status") in IDLE:
                return str(ev.data["status"])


def pct(values: list[float], q: float) -> float:
    """The ``q``-th percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


# The chat whose turn runs in this task (and the tool-call tasks it starts, which copy the
# context): set when the worker asks for the chat's model, at the start of every turn. Lets
# the tool time of concurrent turns on one workspace be told apart.
CURRENT_CHAT: contextvars.ContextVar[uuid.UUID | None] = contextvars.ContextVar(
    "bench_current_chat", default=None
)


@dataclass
class ChatTimers:
    """Model and tool seconds accumulated per chat since the last :meth:`take`."""

    model: dict[uuid.UUID, float] = field(default_factory=lambda: defaultdict(float))
    tool: dict[uuid.UUID, float] = field(default_factory=lambda: defaultdict(float))

    def take(self, chat_id: uuid.UUID) -> tuple[float, float]:
        return self.model.pop(chat_id, 0.0), self.tool.pop(chat_id, 0.0)

    def model_for(self, base: FunctionModel) -> Callable[[Any], FunctionModel]:
        """A worker ``model_for``: ``base`` timed into the chat's model seconds."""

        def model_for(chat: Any) -> FunctionModel:
            CURRENT_CHAT.set(chat.id)

            def add(seconds: float) -> None:
                self.model[chat.id] += seconds

            return timed_model(base, add)

        return model_for

    def dialer(self, inner: Any) -> Any:
        """An agent dialer whose connections add ``exec`` time to the current chat's tool
        seconds."""
        return _TimedDialer(inner, self)


def timed_model(base: FunctionModel, add: Callable[[float], None]) -> FunctionModel:
    """``base`` with the time spent inside its functions reported to ``add(seconds)``."""
    function, stream_function = base.function, base.stream_function
    assert function is not None and stream_function is not None

    async def respond(messages: Any, info: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return await function(messages, info)  # type: ignore[misc]
        finally:
            add(time.perf_counter() - t0)

    async def stream(messages: Any, info: Any) -> AsyncIterator[Any]:
        gen = stream_function(messages, info)
        while True:
            t0 = time.perf_counter()
            try:
                item = await gen.__anext__()
            except StopAsyncIteration:
                add(time.perf_counter() - t0)
                return
            add(time.perf_counter() - t0)
            yield item

    return FunctionModel(respond, stream_function=stream, model_name=base.model_name)


class _TimedConn:
    def __init__(self, conn: Any, timers: ChatTimers) -> None:
        self._conn = conn
        self._timers = timers

    async def exec(self, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return await self._conn.exec(*args, **kwargs)
        finally:
            chat_id = CURRENT_CHAT.get()
            if chat_id is not None:
                self._timers.tool[chat_id] += time.perf_counter() - t0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


class _TimedDialer:
    def __init__(self, inner: Any, timers: ChatTimers) -> None:
        self._inner = inner
        self._timers = timers

    async def dial(self, agent: Any, *, headers: dict[str, str]) -> Any:
        return _TimedConn(await self._inner.dial(agent, headers=headers), self._timers)


async def create_workspaces(
    api: httpx.AsyncClient,
    n: int,
    *,
    prefix: str = "t",
    concurrency: int = 8,
    timeout_s: float = 120.0,
) -> list[uuid.UUID]:
    """Create ``n`` workspaces from the ``python`` template; their ids once all are ready."""
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> uuid.UUID:
        async with gate:
            name = f"{prefix}{i}"
            r = await api.post("/api/v1/workspaces", json={"template": "python", "name": name})
            r.raise_for_status()
            return await wait_ready(api, name, timeout_s=timeout_s)

    return list(await asyncio.gather(*(one(i) for i in range(n))))


async def stop_workspaces(
    api: httpx.AsyncClient,
    ids: list[uuid.UUID],
    *,
    concurrency: int = 16,
    timeout_s: float = 120.0,
) -> None:
    """Stop the workspaces and wait (bounded) until none is running."""
    gate = asyncio.Semaphore(concurrency)

    async def one(ws: uuid.UUID) -> None:
        async with gate:
            with contextlib.suppress(httpx.HTTPError):
                await api.post(f"/api/v1/workspaces/{ws}/stop")

    await asyncio.gather(*(one(ws) for ws in ids))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        states = [w["state"] for w in (await api.get("/api/v1/workspaces")).json()]
        if all(s in ("stopped", "failed", "deleted") for s in states):
            return
        await asyncio.sleep(0.5)
    print(f"warning: some workspaces did not stop in {timeout_s:g}s", file=sys.stderr)


def process_figures(pid: int) -> dict[str, float]:
    """RSS (MB), open file descriptors and threads of process ``pid`` (Linux /proc)."""
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {
        "rss_mb": round(int(fields["VmRSS"].split()[0]) / 1024, 1),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "threads": int(fields["Threads"]),
    }
