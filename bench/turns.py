"""Chat-turn benchmark: N concurrent chats, each bound to its own workspace (a real
``tether agent`` process), each running 5 turns with ``zero_latency_execute_model`` (one
``execute true`` per turn, then ``ok``).

Runs a real server in this process (uvicorn on loopback, SQLite, local backend;
``timed_server`` in ``bench/benchlib.py``) with the chat worker installed by the bench so
the model and the agent connections can be timed. The HTTP client is a process of its own
(``bench/client.py``): it creates the chats, sends the messages and reads each turn's end
off the chat's SSE stream over the socket (one stream per chat, open for all its turns, as
a UI with the chat open; ``--follow turn``: one stream per turn). Per turn:

* **wall** — from just before the message is sent (``POST /chats`` for the first turn,
  ``POST /chats/{id}/messages`` after) until the client reads the turn's final ``status``
  (``waiting``/``error``) on the stream; both times on ``CLOCK_MONOTONIC``
  (``bench.benchlib.now``), which the client and the server process share;
* **model** — time spent inside the model function (its stream generator), summed;
* **tool** — time spent inside the agent's ``exec`` call the ``execute`` tool makes (the
  dialer's connections are wrapped; the tool's own bookkeeping counts as overhead);
* **overhead** = wall − model − tool: the API, the worker's claim, history/instructions
  setup, persistence, streaming and scheduling — what tether itself costs per turn;
* **CPU** per turn: the server process's CPU time during the turn phase ÷ turns (the
  client's own, from its process, printed apart);
* **DB statements** per turn: every statement on ``graph.engine`` during the turn phase
  (``StatementCounter``) divided by the turns; the background rate (agent pings, worker
  polls) is measured while idle and reported separately. The open streams' database
  polls (``stream_poll_s``, 1 s) fall in the turn phase.

Workspaces are created with bounded concurrency and all stopped at the end (stragglers are
killed). Prints figures, then one JSON object as the last line.

    .venv/bin/python -m bench.turns --chats 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import os
import statistics
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite.core
import greenlet
import httpx
import sqlalchemy as sa

from bench.benchlib import (
    GcMeter,
    cpu_seconds,
    loadavg,
    pct,
    run_in_server_loop,
    stat_fields,
    timed_server,
)
from bench.client import Clients
from tests.support.pg import create_database, database_dsn, start_cluster
from tether.db.engine import StatementCounter

TURNS_PER_CHAT = 5
TURN_TIMEOUT_S = 120.0  # the client's bound per turn; the phase's is this × turns per chat
IDLE_SAMPLE_S = 2.0


class CallSites:
    """Where each statement on the engine was issued from (``--statements``): the innermost
    frames in ``tether`` outside ``tether/db``. A statement runs in SQLAlchemy's greenlet,
    whose stack starts afresh; the caller's stack continues from the frame the greenlet
    was spawned from (its parent's)."""

    def __init__(self, engine: Any) -> None:
        self.sites: Counter[tuple[str, str]] = Counter()
        self._engine = engine.sync_engine
        sa.event.listen(self._engine, "before_cursor_execute", self._on_execute)

    def _on_execute(self, _c: Any, _cur: Any, statement: str, *_rest: Any) -> None:
        current = greenlet.getcurrent()
        frame = current.parent.gr_frame if current.parent is not None else sys._getframe(1)
        where: list[str] = []
        while frame is not None and len(where) < 3:
            name = frame.f_code.co_filename
            if "/tether/" in name and "/tether/db/" not in name:
                where.append(f"{name.split('/tether/', 1)[1]}:{frame.f_code.co_name}")
            frame = frame.f_back
        self.sites[(" ".join(statement.split())[:60], " < ".join(where))] += 1

    def close(self) -> None:
        sa.event.remove(self._engine, "before_cursor_execute", self._on_execute)


class ThreadHops:
    """Counts aiosqlite's hand-offs to its connection threads (each statement, fetch,
    cursor close, commit and rollback is one): a CPU cost that does not depend on how
    loaded the machine is."""

    def __init__(self) -> None:
        self.count = 0
        self._original = aiosqlite.core.Connection._execute
        hops = self

        async def counted(conn: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
            hops.count += 1
            return await hops._original(conn, fn, *args, **kwargs)

        aiosqlite.core.Connection._execute = counted  # type: ignore[method-assign]

    def close(self) -> None:
        aiosqlite.core.Connection._execute = self._original  # type: ignore[method-assign]


def thread_cpu() -> dict[str, float]:
    """CPU seconds (user + system) of this process's event loop thread (``main``) and of
    its other threads (``threads``: aiosqlite's connection threads, executors)."""
    out: dict[str, float] = defaultdict(float)
    for tid in os.listdir("/proc/self/task"):
        with contextlib.suppress(OSError):
            name = "main" if int(tid) == os.getpid() else "threads"
            out[name] += cpu_seconds(Path(f"/proc/self/task/{tid}/stat"))
    return out


@dataclass
class TurnFigures:
    wall: float
    model: float
    tool: float
    first: bool

    @property
    def overhead(self) -> float:
        return self.wall - self.model - self.tool


def _figures(results: list[dict[str, Any]], timers: Any) -> list[TurnFigures]:
    """The client's per-turn results with the server's model and tool time of each turn."""
    figures: list[TurnFigures] = []
    for r in results:
        if r["status"] != "waiting":
            raise RuntimeError(f"chat {r['chat']} turn {r['turn'] + 1} ended in {r['status']}")
        model_s, tool_s = timers.take(uuid.UUID(r["chat"]), r["sent"], r["end"])
        figures.append(TurnFigures(r["end"] - r["sent"], model_s, tool_s, first=r["turn"] == 0))
    return figures


async def main(
    n_chats: int,
    turns_per_chat: int = TURNS_PER_CHAT,
    *,
    profile: str | None = None,
    profile_clock: str = "wall",
    show_statements: bool = False,
    follow: str = "chat",
    gc_figures: bool = False,
    db_url: str | None = None,
    db_cpu: Callable[[], float] | None = None,
) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=max(100, n_chats * 2))
    async with timed_server(
        "tether-bench-turns-", n_chats, workspace_prefix="t", limits=limits, db_url=db_url
    ) as bench:
        graph = bench.graph
        clients = await Clients.start(bench.srv.url, bench.srv.token)
        try:
            counter = StatementCounter(graph.engine)
            with counter.measure() as idle:
                await asyncio.sleep(IDLE_SAMPLE_S)
            idle_rate = idle.count / IDLE_SAMPLE_S
            sites = CallSites(graph.engine) if show_statements else None
            # ``cpu``: the loop thread's CPU time, which other processes on a loaded machine
            # do not inflate (a wall-time profile charges their time to whatever was
            # running); each call costs a clock system call, so it runs slower than ``wall``
            timer = time.thread_time if profile_clock == "cpu" else time.perf_counter
            profiler = cProfile.Profile(timer) if profile else None
            ended: list[float] = []
            threads1: dict[str, float] = {}
            db_used: list[float] = []
            db_cpu0 = db_cpu() if db_cpu is not None else 0.0

            def phase_end() -> None:
                if profiler is not None:
                    profiler.disable()
                ended.extend((time.perf_counter(), time.process_time()))
                threads1.update(thread_cpu())
                if db_cpu is not None:
                    db_used.append(db_cpu() - db_cpu0)

            gcm = GcMeter()
            with counter.measure() as busy, contextlib.ExitStack() as gc_scope:
                if gc_figures:
                    gc_scope.enter_context(gcm.measure())
                hops = ThreadHops()
                threads0 = thread_cpu()
                t0, cpu0 = time.perf_counter(), time.process_time()
                if profiler is not None:
                    profiler.enable()
                command = {
                    "op": "chats",
                    "workspaces": [str(ws) for ws in bench.workspaces],
                    "turns": turns_per_chat,
                    "concurrency": None,
                    "follow": follow,
                }
                answer = await clients.run(
                    [command], timeout_s=TURN_TIMEOUT_S * turns_per_chat, on_answered=phase_end
                )
                hops.close()
            phase_s, cpu_s = ended[0] - t0, ended[1] - cpu0
            counter.close()
            if sites is not None:
                sites.close()
            if profiler is not None and profile is not None:
                profiler.dump_stats(profile)
                print(f"profile of the turn phase written to {profile}")
        finally:
            await clients.close()
        turns = _figures(answer.results, bench.timers)
    ms = [t.overhead * 1000 for t in turns]
    first_ms = [t.overhead * 1000 for t in turns if t.first]
    later_ms = [t.overhead * 1000 for t in turns if not t.first]
    walls = [t.wall * 1000 for t in turns]
    model_ms = [t.model * 1000 for t in turns]
    tool_ms = [t.tool * 1000 for t in turns]
    raw_per_turn = busy.count / len(turns)
    net_per_turn = max(0.0, busy.count - idle_rate * phase_s) / len(turns)
    print(f"{n_chats} chats x {turns_per_chat} turns = {len(turns)} turns in {phase_s:.2f}s")
    print(
        f"wall     p50 {pct(walls, 50):7.1f} ms  p99 {pct(walls, 99):7.1f} ms  "
        f"mean {statistics.mean(walls):7.1f} ms"
    )
    print(f"model    p50 {pct(model_ms, 50):7.3f} ms  p99 {pct(model_ms, 99):7.3f} ms")
    print(f"tool     p50 {pct(tool_ms, 50):7.1f} ms  p99 {pct(tool_ms, 99):7.1f} ms")
    print(f"overhead p50 {pct(ms, 50):7.1f} ms  p99 {pct(ms, 99):7.1f} ms")
    print(
        f"overhead first turn p50 {pct(first_ms, 50):.1f} ms; later turns p50 "
        f"{pct(later_ms, 50):.1f} ms"
    )
    print(f"turns/s  {len(turns) / phase_s:.1f}")
    print(
        f"server process CPU during the turns: {cpu_s:.2f}s of {phase_s:.2f}s "
        f"({cpu_s / len(turns) * 1000:.1f} ms per turn; one event loop)"
    )
    print(
        f"client process CPU during the turns: {answer.cpu_s:.2f}s "
        f"({answer.cpu_s / len(turns) * 1000:.1f} ms per turn; not in the server's)"
    )
    by_thread = {k: v - threads0.get(k, 0.0) for k, v in threads1.items()}
    print(
        "CPU per turn: "
        + ", ".join(
            f"{name} {secs / len(turns) * 1000:.1f} ms"
            for name, secs in sorted(by_thread.items(), key=lambda kv: -kv[1])
            if secs > 0
        )
    )
    print(f"aiosqlite thread hand-offs per turn {hops.count / len(turns):.1f}")
    print(
        f"DB statements per turn {raw_per_turn:.1f} (background while idle: "
        f"{idle_rate:.1f}/s; net of background ≈ {net_per_turn:.1f})"
    )
    if show_statements:
        by_text = Counter(" ".join(st.split())[:110] for st in busy.statements)
        print("statements per turn, by text (first 110 characters):")
        for text, n in by_text.most_common():
            print(f"  {n / len(turns):5.2f}  {text}")
        if sites is not None:
            parts: Counter[str] = Counter()
            for (_, where), n in sites.sites.items():
                if "chatd/follow.py" in where or "chats.py:stream" in where:
                    part = "stream"
                elif "api/" in where:
                    part = "api"
                else:
                    part = "chatd" if "chatd/" in where else "other"
                parts[part] += n
            print(
                "statements per turn: the API request that sends the message "
                f"{parts['api'] / len(turns):.1f}, the turn (chat worker) "
                f"{parts['chatd'] / len(turns):.1f}, the client's open streams (their polls) "
                f"{parts['stream'] / len(turns):.1f}, background and other "
                f"{parts['other'] / len(turns):.1f}"
            )
            print("statements per turn, by call site:")
            for (text, where), n in sites.sites.most_common():
                print(f"  {n / len(turns):5.2f}  {text}\n         {where}")
    gc_out = gcm.figures(len(turns)) if gc_figures else {}
    return {
        **gc_out,
        "chats": n_chats,
        "turns": len(turns),
        "turn_overhead_ms_p50": round(pct(ms, 50), 1),
        "turn_overhead_ms_p99": round(pct(ms, 99), 1),
        "turns_per_s": round(len(turns) / phase_s, 1),
        "wall_ms_p50": round(pct(walls, 50), 1),
        "tool_ms_p50": round(pct(tool_ms, 50), 1),
        "cpu_ms_per_turn": round(cpu_s / len(turns) * 1000, 1),
        "client_cpu_ms_per_turn": round(answer.cpu_s / len(turns) * 1000, 1),
        "db_statements_per_turn": round(raw_per_turn, 1),
        "db_statements_per_turn_net": round(net_per_turn, 1),
        "sqlite_thread_hops_per_turn": round(hops.count / len(turns), 1),
        "follow": follow,
        "database": "postgresql" if db_url else "sqlite",
        **({"db_cpu_ms_per_turn": round(db_used[0] / len(turns) * 1000, 1)} if db_used else {}),
        "load_avg_1m": loadavg(),
    }


def cluster_cpu_seconds(data_dir: Path) -> float:
    """CPU seconds a PostgreSQL cluster used so far: its postmaster (with the children it
    reaped) and its live children (backends, background workers)."""
    postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = stat_fields(Path(f"/proc/{entry}/stat"))
        except OSError:
            continue  # ended meanwhile
        if int(entry) == postmaster:
            total += sum(int(f) for f in fields[11:15]) / tick  # own + reaped children
        elif int(fields[1]) == postmaster:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--chats", type=int, default=10)
    parser.add_argument("--turns", type=int, default=TURNS_PER_CHAT, help="turns per chat")
    parser.add_argument("--profile", help="write a cProfile of the turn phase to this file")
    parser.add_argument(
        "--profile-clock",
        choices=("wall", "cpu"),
        default="wall",
        help="the profile's clock: wall time (default) or the event loop thread's CPU time "
        "(steadier on a shared machine; slower)",
    )
    parser.add_argument(
        "--statements", action="store_true", help="print the turn phase's statements by text"
    )
    parser.add_argument(
        "--follow",
        choices=("chat", "turn"),
        default="chat",
        help="the client's stream: one per chat, open for all its turns (default), or one per "
        "turn, opened once the message was accepted (as bench/openloop.py)",
    )
    parser.add_argument(
        "--gc",
        action="store_true",
        help="count and time the server's garbage collections during the turn phase",
    )
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="run the server on a throwaway PostgreSQL cluster (tests/support/pg.py) instead "
        "of SQLite",
    )
    args = parser.parse_args()
    cluster = start_cluster() if args.postgres else None
    try:
        db_url = None
        if cluster is not None:
            admin = cluster.dsn
            db_url = database_dsn(admin, run_in_server_loop(create_database(admin)))
        result = run_in_server_loop(
            main(
                args.chats,
                args.turns,
                profile=args.profile,
                profile_clock=args.profile_clock,
                show_statements=args.statements,
                follow=args.follow,
                gc_figures=args.gc,
                db_url=db_url,
                db_cpu=None if cluster is None else lambda: cluster_cpu_seconds(cluster.data_dir),
            )
        )
    finally:
        if cluster is not None:
            cluster.stop()
    print(json.dumps(result))
