"""What the benches share: creating, waiting for and stopping workspaces, waiting for a
turn's end, timing the model and the tools of a turn, an in-process server with a timed
chat worker (:func:`timed_server`), Poisson arrivals, percentiles, process figures."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import gc
import os
import random
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
from pydantic_ai.models.function import FunctionModel

from tether.chatd.binding import AgentDialer
from tether.chatd.install import install_chatd
from tether.demo import kill_workspace_processes
from tether.eventloop import run
from tether.gctune import tune_collector
from tether.llm.scripted import zero_latency_execute_model
from tether.settings import Settings
from tether.testing.harness import RunningServer, fast_settings, running_server

T = TypeVar("T")

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


def load_parser(doc: str, *, chats: int, workspaces: int, seed: int) -> argparse.ArgumentParser:
    """A load bench's parser (``doc``'s first paragraph as its description) with the flags
    every one takes: ``--chats``, ``--workspaces`` and ``--seed``."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--chats", type=int, default=chats)
    parser.add_argument("--workspaces", type=int, default=workspaces)
    parser.add_argument("--seed", type=int, default=seed)
    return parser


def add_rate_args(
    parser: argparse.ArgumentParser, *, rates: list[float], duration: float, warmup: float
) -> None:
    """The open-loop flags: ``--rates`` (comma-separated turns/s), ``--duration`` and
    ``--warmup`` (seconds per rate)."""
    parser.add_argument(
        "--rates",
        type=lambda text: [float(x) for x in text.split(",") if x],
        default=rates,
        help=f"comma-separated turns/s (default {','.join(f'{r:g}' for r in rates)})",
    )
    parser.add_argument(
        "--duration", type=float, default=duration, help="measured seconds per rate"
    )
    parser.add_argument("--warmup", type=float, default=warmup, help="unmeasured seconds per rate")


def loadavg() -> float:
    """The machine's 1-minute load average, as the benches' JSON reports it."""
    return round(os.getloadavg()[0], 2)


def elapsed(t0: float) -> str:
    """Seconds since ``t0`` (``time.perf_counter()``), as the benches print them."""
    return f"{time.perf_counter() - t0:.1f}s"


def now() -> float:
    """The clock every bench process shares: ``CLOCK_MONOTONIC`` is system-wide on Linux, so
    a client process's send and end times compare with the server process's turn starts
    (``time.monotonic()`` does not promise a common reference point across processes)."""
    return time.clock_gettime(time.CLOCK_MONOTONIC)


@dataclass
class TurnTimes:
    """One turn's model and tool seconds; ``start`` (:func:`now`) is when the worker asked
    for the chat's model, at the start of the turn."""

    start: float
    model: float = 0.0
    tool: float = 0.0
    last: float = 0.0  # when its last model or tool call returned (:func:`now`)


# The turn that runs in this task (and in the tool-call tasks it starts, which copy the
# context): set when the worker asks for the chat's model, at the start of every turn. Lets
# the tool time of concurrent turns on one workspace be told apart.
CURRENT_TURN: contextvars.ContextVar[TurnTimes | None] = contextvars.ContextVar(
    "bench_current_turn", default=None
)


@dataclass
class ChatTimers:
    """Model and tool seconds of each chat's turns, kept until :meth:`take` reads them."""

    turns: dict[uuid.UUID, list[TurnTimes]] = field(default_factory=lambda: defaultdict(list))

    def take(self, chat_id: uuid.UUID, sent: float, end: float) -> tuple[float, float]:
        """Model and tool seconds of the chat's turn that started between ``sent`` and
        ``end`` (:func:`now` times: when its message was sent and when its final status
        reached the client); that turn and any older one are dropped. RuntimeError when no
        turn of the chat started then: the times do not belong to one of its turns."""
        matched = self.take_turns(chat_id, sent, end)
        return sum(t.model for t in matched), sum(t.tool for t in matched)

    def take_turns(self, chat_id: uuid.UUID, sent: float, end: float) -> list[TurnTimes]:
        """:meth:`take`, returning the matched turns' times."""
        matched: list[TurnTimes] = []
        kept: list[TurnTimes] = []
        for times in self.turns.pop(chat_id, []):
            if sent <= times.start <= end:
                matched.append(times)
            elif times.start > end:
                kept.append(times)
        if kept:
            self.turns[chat_id] = kept
        if not matched:
            raise RuntimeError(f"chat {chat_id}: no turn started between {sent} and {end}")
        return matched

    def model_for(self, base: FunctionModel) -> Callable[[Any], FunctionModel]:
        """A worker ``model_for``: starts the chat's next turn's timers, and gives ``base``
        timed into its model seconds."""

        def model_for(chat: Any) -> FunctionModel:
            times = TurnTimes(now())
            self.turns[chat.id].append(times)
            CURRENT_TURN.set(times)

            def add(seconds: float) -> None:
                times.model += seconds
                times.last = now()

            return timed_model(base, add)

        return model_for

    def dialer(self, inner: Any) -> Any:
        """An agent dialer whose connections add ``exec`` time to the current turn's tool
        seconds."""
        return _TimedDialer(inner)


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
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def exec(self, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return await self._conn.exec(*args, **kwargs)
        finally:
            times = CURRENT_TURN.get()
            if times is not None:
                times.tool += time.perf_counter() - t0
                times.last = now()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


class _TimedDialer:
    def __init__(self, inner: Any) -> None:
        self._inner = inner

    async def dial(self, agent: Any, *, headers: dict[str, str]) -> Any:
        return _TimedConn(await self._inner.dial(agent, headers=headers))


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


def stat_fields(stat: Path) -> list[str]:
    """The fields of a ``/proc/…/stat`` file after the name: ``[0]`` is the state, ``[1]``
    the parent's pid, ``[11:15]`` utime, stime, cutime, cstime in clock ticks."""
    text = stat.read_text()
    return text[text.rindex(")") + 2 :].split()  # the name may hold spaces and parentheses


def cpu_seconds(stat: Path) -> float:
    """User + system CPU seconds in a ``/proc/…/stat`` file (a process's or a thread's)."""
    fields = stat_fields(stat)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def poisson(
    send: Callable[[uuid.UUID, float], Awaitable[T]],
    idle: list[uuid.UUID],
    rate: float,
    duration_s: float,
    rng: random.Random,
    *,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[list[T], float, int]:
    """Open-loop arrivals at ``rate``/s for ``duration_s``: each runs ``send(chat_id,
    scheduled)`` on a random chat of ``idle``, taken out while its turn runs (a chat runs
    one turn at a time) and put back when ``send`` returns. ``scheduled`` is the arrival's
    time on ``clock``: timing from it, a client that falls behind shows as latency, not
    as fewer samples. Returns what each ``send`` returned, the window up to the last turn's
    end, and the arrivals that found no idle chat."""

    async def one(chat_id: uuid.UUID, at: float) -> T:
        try:
            return await send(chat_id, at)
        finally:
            idle.append(chat_id)

    tasks: list[asyncio.Task[T]] = []
    skipped = 0
    start = at = clock()
    while True:
        at += rng.expovariate(rate)
        if at - start >= duration_s:
            break
        delay = at - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        if not idle:
            skipped += 1
            continue
        chat_id = idle.pop(rng.randrange(len(idle)))
        tasks.append(asyncio.create_task(one(chat_id, at)))
    samples = list(await asyncio.gather(*tasks))
    return samples, clock() - start, skipped


async def closed_loop(
    run_turn: Callable[[uuid.UUID], Awaitable[bool]],
    chats: list[uuid.UUID],
    clients: int,
    rng: random.Random,
    *,
    turns: int | None = None,
    until: float | None = None,
) -> tuple[int, int]:
    """Closed loop: ``clients`` concurrent clients, each sending ``run_turn(chat_id)`` to a
    random idle chat of ``chats`` when its last turn ended, until ``turns`` turns were sent
    (all clients together) or ``time.perf_counter()`` passed ``until``. Returns how many
    turns ``run_turn`` called good and how many not."""
    idle = list(chats)
    left = turns
    good = bad = 0

    async def client() -> None:
        nonlocal left, good, bad
        while (left is None or left > 0) and (until is None or time.perf_counter() < until):
            if left is not None:
                left -= 1
            chat_id = idle.pop(rng.randrange(len(idle)))
            try:
                if await run_turn(chat_id):
                    good += 1
                else:
                    bad += 1
            finally:
                idle.append(chat_id)

    await asyncio.gather(*(client() for _ in range(clients)))
    return good, bad


@contextlib.asynccontextmanager
async def chat_worker(graph: Any, **install: Any) -> AsyncIterator[None]:
    """The chat worker ``install_chatd(graph, register=False, **install)`` running in a task
    of its own; cancelled and awaited on exit."""
    worker = install_chatd(graph, register=False, **install)
    task = asyncio.create_task(worker.run(), name="bench-chat-worker")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def run_in_server_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run a bench whose server is in this process on the event loop ``tether server``
    runs on (``event_loop``: uvloop when importable; src/tether/eventloop.py), so the
    bench measures what production runs."""
    return run(main, Settings().event_loop)


def server_client(srv: RunningServer, limits: httpx.Limits | None = None) -> httpx.AsyncClient:
    """An API client of the in-process server, as its admin; ``limits``: httpx's defaults
    when None."""
    return httpx.AsyncClient(
        base_url=srv.url,
        headers={"Authorization": f"Bearer {srv.token}"},
        timeout=60,
        limits=limits or httpx.Limits(max_connections=100, max_keepalive_connections=20),
    )


@dataclass
class TimedServer:
    """What :func:`timed_server` yields."""

    srv: RunningServer
    api: httpx.AsyncClient
    timers: ChatTimers
    workspaces: list[uuid.UUID]

    @property
    def graph(self) -> Any:
        return self.srv.graph


@contextlib.asynccontextmanager
async def timed_server(
    tmp_prefix: str,
    n_workspaces: int,
    *,
    workspace_prefix: str,
    limits: httpx.Limits,
    db_url: str | None = None,
) -> AsyncIterator[TimedServer]:
    """A server in this process (uvicorn on loopback, SQLite or ``db_url``, local backend; see
    ``src/tether/testing/harness.py``) with the timings of a loaded production-like server,
    its chat worker installed here with ``zero_latency_execute_model`` and the agent
    connections timed into :class:`ChatTimers`, an API client with ``limits``, and
    ``n_workspaces`` ready workspaces. On exit the workspaces are stopped, the worker
    cancelled and any leftover workspace process killed."""
    with tempfile.TemporaryDirectory(prefix=tmp_prefix) as tmp:
        settings = fast_settings(
            Path(tmp),
            run_chatd=False,  # installed below, with timed model and dialer
            agent_ping_interval_s=2.0,
            agent_unreachable_after_s=6.0,  # at least two ping intervals (a settings rule)
            agent_inactive_disconnect_s=6.0,
            worker_poll_s=1.0,
            ttl_sweep_s=5.0,
            **({"db_url": db_url} if db_url else {}),
        )
        timers = ChatTimers()
        try:
            async with running_server(settings) as srv:
                dialer = timers.dialer(AgentDialer(clients=srv.graph.agent_clients))
                model_for = timers.model_for(zero_latency_execute_model())
                async with (
                    chat_worker(srv.graph, model_for=model_for, dialer=dialer),
                    server_client(srv, limits) as api,
                ):
                    # as `tether server` (src/tether/server.py)
                    freezer = tune_collector(settings)
                    ids: list[uuid.UUID] = []
                    try:
                        await srv.push_template()
                        t0 = time.perf_counter()
                        ids = await create_workspaces(api, n_workspaces, prefix=workspace_prefix)
                        print(f"{len(ids)} workspaces ready in {elapsed(t0)}")
                        yield TimedServer(srv, api, timers, ids)
                    finally:
                        t0 = time.perf_counter()
                        await stop_workspaces(api, ids)
                        print(f"stopped {len(ids)} workspaces in {elapsed(t0)}")
                        if freezer is not None:
                            freezer.uninstall()
        finally:
            leftovers = kill_workspace_processes(Path(tmp) / "data")
            if leftovers:
                print(f"warning: killed {leftovers} leftover workspace process(es)")


class GcMeter:
    """Counts and times the garbage collector's runs by generation (``gc.callbacks``) while
    :meth:`measure` is open (``--gc``): what the collector costs the server per turn, the
    longest pause of each generation (wall and the thread's CPU) and how many objects the
    largest collection of generation 1 and 2 walked (counted before it starts, outside the
    timed pause: a young collection walks generation 0 and 1, a full one all three, never
    the frozen objects)."""

    def __init__(self) -> None:
        self.count = [0, 0, 0]
        self.seconds = [0.0, 0.0, 0.0]
        self.max_pause_s = 0.0
        self.max_cpu_pause_s = 0.0  # the thread's CPU time in its longest-by-CPU collection
        self.max_by_gen_s = [0.0, 0.0, 0.0]
        self.max_cpu_by_gen_s = [0.0, 0.0, 0.0]
        self.max_walked = [0, 0, 0]  # generations 1 and 2 only (counting costs a walk)
        self._t0 = 0.0
        self._cpu0 = 0.0

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        gen = info["generation"]
        if phase == "start":
            if gen >= 1:
                walked = sum(len(gc.get_objects(generation=g)) for g in range(gen + 1))
                self.max_walked[gen] = max(self.max_walked[gen], walked)
            self._t0 = time.perf_counter()
            self._cpu0 = time.thread_time()
            return
        pause = time.perf_counter() - self._t0
        cpu = time.thread_time() - self._cpu0
        self.max_cpu_pause_s = max(self.max_cpu_pause_s, cpu)
        self.count[gen] += 1
        self.seconds[gen] += pause
        self.max_pause_s = max(self.max_pause_s, pause)
        self.max_by_gen_s[gen] = max(self.max_by_gen_s[gen], pause)
        self.max_cpu_by_gen_s[gen] = max(self.max_cpu_by_gen_s[gen], cpu)

    @contextlib.contextmanager
    def measure(self) -> Iterator[GcMeter]:
        gc.callbacks.append(self._on_gc)
        try:
            yield self
        finally:
            gc.callbacks.remove(self._on_gc)

    def figures(self, turns: int) -> dict[str, Any]:
        """Per-turn figures for the bench's JSON; also printed."""
        n = max(1, turns)
        out = {
            "gc_collections_per_turn": [round(c / n, 3) for c in self.count],
            "gc_counts": list(self.count),
            "gc_ms_per_turn": round(sum(self.seconds) / n * 1000, 3),
            "gc_ms_by_generation": [round(s * 1000, 1) for s in self.seconds],
            "gc_max_pause_ms": round(self.max_pause_s * 1000, 1),
            "gc_max_cpu_pause_ms": round(self.max_cpu_pause_s * 1000, 1),
            "gc_max_pause_ms_by_generation": [round(s * 1000, 1) for s in self.max_by_gen_s],
            "gc_max_cpu_ms_by_generation": [round(s * 1000, 1) for s in self.max_cpu_by_gen_s],
            "gc_max_objects_walked_gen1_gen2": self.max_walked[1:],
            "gc_threshold": list(gc.get_threshold()),
            "gc_freeze_count": gc.get_freeze_count(),
        }
        print(
            f"GC: collections per turn gen0/1/2 {out['gc_collections_per_turn']} "
            f"(counts {self.count}), {out['gc_ms_per_turn']} ms per turn, by generation "
            f"{out['gc_ms_by_generation']} ms, max pause {out['gc_max_pause_ms']} ms "
            f"(CPU {out['gc_max_cpu_pause_ms']} ms); by generation max "
            f"{out['gc_max_pause_ms_by_generation']} ms (CPU "
            f"{out['gc_max_cpu_ms_by_generation']} ms), objects walked at most by gen 1/2 "
            f"{out['gc_max_objects_walked_gen1_gen2']}; "
            f"threshold {out['gc_threshold']}, frozen {out['gc_freeze_count']}"
        )
        return out
