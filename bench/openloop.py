"""Open-loop chat load (issue #12, target 2): ``--chats`` chats over ``--workspaces``
workspaces (real ``tether agent`` processes, local backend), with messages sent as a
Poisson process at each rate of ``--rates`` turns/s.

The server runs in this process as in ``bench/turns.py`` (uvicorn on loopback, SQLite;
``timed_server`` in ``bench/benchlib.py``) with the chat worker installed by the bench, so
the model (``zero_latency_execute_model``: one ``execute true`` per turn, then ``ok``) and
the agents' ``exec`` calls can be timed. The client is ``--clients`` processes of their own
(``bench/client.py``), each with its share of the chats and of the rate (the sum of
independent Poisson processes is one at the summed rate); a turn's end is its final status
read off the chat's SSE stream, opened once the message was accepted (``--follow chat``:
each chat's stream open all along, made with the chat). Per turn:
**overhead** = wall − model − tool, as ``bench/turns.py`` defines it, except that *wall
starts at the send time the schedule gave the message*, not when the client got round to
sending it: a client (or server) that falls behind shows as overhead, never as fewer
samples (no coordinated omission). ``send_lateness_ms_p99`` says how far behind its
schedule the client sent: when it is large at a rate, add client processes.

Each message goes to a chat picked at random among its process's chats with no turn in
flight (a chat runs one turn at a time; a message to a running chat would be queued, not
load). Each rate runs ``--warmup`` seconds (not measured), then ``--duration`` seconds; turns
still running when the window closes are waited for (up to ``TURN_TIMEOUT_S``).
``achieved_rate`` is the turns measured ÷ the time from the window's start to its last
turn's end (the longest over the client processes). ``cpu_ms_per_turn`` is the server
process's CPU time during the window ÷ its turns; ``client_cpu_ms_per_turn`` the client
processes'.

Set-up (not measured): the workspaces, then every chat's first turn.

    .venv/bin/python -m bench.openloop --chats 100 --workspaces 5 --rates 10,25 --duration 5

Prints figures, then one JSON object as the last line: ``open_loop`` (a list of
``{rate, overhead_ms_p50, overhead_ms_p99, achieved_rate, turns, errors, skipped,
send_lateness_ms_p99, cpu_ms_per_turn, client_cpu_ms_per_turn}``) and
``max_rate_p99_le_100ms`` (the highest rate run whose overhead p99 ≤ 100 ms, or null).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import json
import os
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx

from bench.benchlib import (
    ChatTimers,
    GcMeter,
    TurnTimes,
    add_rate_args,
    elapsed,
    load_parser,
    loadavg,
    pct,
    process_figures,
    run_in_server_loop,
    timed_server,
)
from bench.client import Answer, Clients
from bench.loopstall import LoopStallMonitor
from tether.db.engine import StatementCounter

TURN_TIMEOUT_S = 120.0
SLOW_SHOWN = 15
SETUP_CONCURRENCY = 32
P99_BOUND_MS = 100.0
IDLE_SAMPLE_S = 2.0


@dataclass
class Sample:
    overhead_s: float
    late_s: float  # how far behind its scheduled time the client sent the message
    ok: bool
    result: dict[str, Any]
    turns: list[TurnTimes]

    def phases(self) -> str:
        """Where a turn's time went (ms): the client's lateness, send → the worker asked
        for the model (API, wake-up, claim, history, binding), the model and tool calls
        (less their own time), the last call → the final status on the client's stream."""
        r = self.result
        if not self.turns:
            return f"late {self.late_s * 1000:.1f}, no server times ({r['status']})"
        first, last = self.turns[0], self.turns[-1]
        calls = last.last - first.start - sum(t.model + t.tool for t in self.turns)
        return (
            f"late {self.late_s * 1000:.1f}, send→model {(first.start - r['sent']) * 1000:.1f}, "
            f"calls {calls * 1000:.1f} (model {sum(t.model for t in self.turns) * 1000:.1f} "
            f"tool {sum(t.tool for t in self.turns) * 1000:.1f}), "
            f"last call→end {(r['end'] - last.last) * 1000:.1f}"
        )


def samples(answer: Answer, timers: ChatTimers) -> list[Sample]:
    """The client's per-turn results with the server's model and tool time of each turn (a
    turn whose request or stream failed has none: its overhead is its wall time)."""
    out: list[Sample] = []
    for r in answer.results:
        ok = r["status"] == "waiting"
        turns = timers.take_turns(uuid.UUID(r["chat"]), r["sent"], r["end"]) if ok else []
        model_s = sum(t.model for t in turns)
        tool_s = sum(t.tool for t in turns)
        wall = r["end"] - r["scheduled"]
        out.append(Sample(wall - model_s - tool_s, r["sent"] - r["scheduled"], ok, r, turns))
    return out


def print_heap(n: int = 25) -> None:
    """The objects the garbage collector tracks (not frozen), by type and by module: what
    a full collection walks."""
    sizes = [len(gc.get_objects(generation=g)) for g in range(3)]
    costs = []
    for g in range(3):  # what one collection of each generation costs now (CPU ms)
        t0 = time.thread_time()
        gc.collect(g)
        costs.append(round((time.thread_time() - t0) * 1000, 1))
    print(f"generations' sizes {sizes}; one collection of each costs {costs} ms of CPU")
    objs = gc.get_objects()
    by_type = Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in objs)
    by_module = Counter(key.split(".", 1)[0] for key in by_type.elements())
    print(f"tracked objects {len(objs)} (frozen {gc.get_freeze_count()}); by package:")
    print("  " + ", ".join(f"{m} {c}" for m, c in by_module.most_common(12)))
    for key, count in by_type.most_common(n):
        print(f"  {count:8d} {key}")
    del objs
    tasks = Counter(t.get_coro().__qualname__ for t in asyncio.all_tasks())  # type: ignore[union-attr]
    print(f"tasks {sum(tasks.values())}: " + ", ".join(f"{k} {c}" for k, c in tasks.most_common(8)))


def explain_slow(got: list[Sample], monitor: LoopStallMonitor | None, bound_ms: float) -> None:
    """Print each turn whose overhead passed ``bound_ms``: its phases and the loop stalls
    during it (``--stalls``)."""
    slow = sorted((s for s in got if s.overhead_s * 1000 > bound_ms), key=lambda s: -s.overhead_s)
    for s in slow[:SLOW_SHOWN]:
        r = s.result
        stalls = monitor.during(r["scheduled"], r["end"]) if monitor is not None else []
        stalled = sum(st.duration for st in stalls) * 1000
        print(
            f"  slow turn {s.overhead_s * 1000:.1f} ms at {r['scheduled']:.3f}: {s.phases()}"
            + (f"; loop stalls during it {len(stalls)}, {stalled:.1f} ms" if monitor else "")
        )
    if len(slow) > SLOW_SHOWN:
        print(f"  … and {len(slow) - SLOW_SHOWN} more slow turns")


async def run_rate(
    clients: Clients,
    rate: float,
    duration_s: float,
    rng: random.Random,
    gcm: GcMeter | None = None,
    monitor: LoopStallMonitor | None = None,
    profiler: cProfile.Profile | None = None,
    counter: StatementCounter | None = None,
) -> tuple[Answer, float, list[str]]:
    """Poisson arrivals at ``rate`` for ``duration_s``, split evenly over the client
    processes: their answer, the server process's CPU seconds until the last answered
    and the statements on the engine meanwhile (with ``counter``, else 0); the garbage
    collector's runs go to ``gcm``, the window's profile to ``profiler``, when given."""
    n = len(clients.procs)
    command = {"op": "poisson", "rate": rate / n, "duration": duration_s}
    cpu: list[float] = []
    with contextlib.ExitStack() as scope:
        if gcm is not None:
            scope.enter_context(gcm.measure())
        counted = scope.enter_context(counter.measure()) if counter is not None else None
        if monitor is not None:
            monitor.reset()

        def answered() -> None:
            if profiler is not None:
                profiler.disable()
            cpu.append(time.process_time() - cpu0)

        cpu0 = time.process_time()
        if profiler is not None:
            profiler.enable()
        answer = await clients.run(
            [{**command, "seed": rng.randrange(2**32)} for _ in range(n)],
            timeout_s=duration_s + TURN_TIMEOUT_S,
            on_answered=answered,
        )
    return answer, cpu[0], counted.statements if counted is not None else []


def summarise(
    rate: float,
    answer: Answer,
    timers: ChatTimers,
    cpu_s: float,
    gcm: GcMeter | None = None,
    monitor: LoopStallMonitor | None = None,
    slow_ms: float | None = None,
    statements: list[str] | None = None,
    show_statements: bool = False,
) -> dict[str, Any]:
    got = samples(answer, timers)
    for r in answer.results:
        if r["status"] != "waiting":
            print(f"chat {r['chat']}: {r['status']}")
    ok = [s for s in got if s.ok]
    ms = [s.overhead_s * 1000 for s in ok] or [float("nan")]
    late = [s.late_s * 1000 for s in got] or [0.0]
    window_s = max(h["window_s"] for h in answer.headers)
    skipped = sum(h["skipped"] for h in answer.headers)
    row = {
        "rate": rate,
        "overhead_ms_p50": round(pct(ms, 50), 1),
        "overhead_ms_p99": round(pct(ms, 99), 1),
        "achieved_rate": round(len(ok) / window_s, 1) if window_s > 0 else 0.0,
        "turns": len(ok),
        "errors": len(got) - len(ok),
        "skipped": skipped,
        "send_lateness_ms_p99": round(pct(late, 99), 1),
        "cpu_ms_per_turn": round(cpu_s / max(1, len(got)) * 1000, 1),
        "client_cpu_ms_per_turn": round(answer.cpu_s / max(1, len(got)) * 1000, 1),
    }
    if statements is not None:
        n = max(1, len(got))
        row["db_statements_per_turn"] = round(len(statements) / n, 2)
        print(f"DB statements per turn (all, background included): {row['db_statements_per_turn']}")
        if show_statements:
            by_text = Counter(" ".join(st.split())[:110] for st in statements)
            for text, count in by_text.most_common(25):
                print(f"  {count / n:6.2f}  {text}")
    print(
        f"rate {rate:6.1f}/s: {len(ok)} turns, overhead p50 {row['overhead_ms_p50']:8.1f} ms "
        f"p99 {row['overhead_ms_p99']:8.1f} ms, achieved {row['achieved_rate']:.1f}/s, "
        f"send lateness p99 {row['send_lateness_ms_p99']:.1f} ms, errors {row['errors']}, "
        f"skipped {skipped}; CPU per turn: server {row['cpu_ms_per_turn']} ms, client "
        f"{row['client_cpu_ms_per_turn']} ms"
    )
    if gcm is not None:
        row.update(gcm.figures(len(got)))
    if monitor is not None:
        row.update(monitor.figures())
        print(f"event loop: {monitor.figures()}; longest stalls:\n{monitor.report()}")
    if slow_ms is not None:
        explain_slow(got, monitor, slow_ms)
    return row


async def main(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    rows: list[dict[str, Any]] = []
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)  # set-up only
    async with timed_server(
        "tether-bench-openloop-", args.workspaces, workspace_prefix="w", limits=limits
    ) as bench:
        clients = await Clients.start(bench.srv.url, bench.srv.token, args.clients)
        try:
            ids = [str(ws) for ws in bench.workspaces]
            n = args.clients
            t0 = time.perf_counter()
            setup = await clients.run(
                [
                    {
                        "op": "chats",
                        "workspaces": [ids[j % len(ids)] for j in range(i, args.chats, n)],
                        "turns": 1,
                        "concurrency": max(1, SETUP_CONCURRENCY // n),
                        "follow": args.follow,
                    }
                    for i in range(n)
                ],
                timeout_s=TURN_TIMEOUT_S * max(1, args.chats // SETUP_CONCURRENCY + 1),
            )
            failed = [r for r in setup.results if r["status"] != "waiting"]
            if failed:
                raise RuntimeError(f"{len(failed)} first turns failed, e.g. {failed[0]}")
            for r in setup.results:
                bench.timers.take(uuid.UUID(r["chat"]), r["sent"], r["end"])
            print(f"{args.chats} chats created in {elapsed(t0)} ({n} client processes)")
            if args.heap:
                print_heap()
            before = process_figures(os.getpid())
            profiler = cProfile.Profile(time.thread_time) if args.profile else None
            counter = StatementCounter(bench.graph.engine)
            with counter.measure() as idle:  # what the server costs with no turns at all
                cpu0 = time.process_time()
                await asyncio.sleep(IDLE_SAMPLE_S)
                idle_cpu = time.process_time() - cpu0
            print(
                f"idle server (streams closed, agents connected): "
                f"{idle_cpu / IDLE_SAMPLE_S * 1000:.1f} ms CPU per s, "
                f"{idle.count / IDLE_SAMPLE_S:.1f} statements per s"
            )
            async with contextlib.AsyncExitStack() as watch:
                watch.callback(counter.close)
                monitor = None
                if args.stalls:
                    monitor = await watch.enter_async_context(LoopStallMonitor().watching())
                for rate in args.rates:
                    warm, _, _ = await run_rate(clients, rate, args.warmup, rng)
                    samples(warm, bench.timers)  # drops the warm-up turns' timers
                    gcm = GcMeter() if args.gc else None
                    answer, cpu_s, statements = await run_rate(
                        clients, rate, args.duration, rng, gcm, monitor, profiler, counter
                    )
                    rows.append(
                        summarise(
                            rate,
                            answer,
                            bench.timers,
                            cpu_s,
                            gcm,
                            monitor,
                            args.slow,
                            statements,
                            args.statements,
                        )
                    )
            if profiler is not None:
                profiler.dump_stats(args.profile)
                print(f"profile of the measured windows written to {args.profile}")
            if args.heap:
                print_heap()
            after = process_figures(os.getpid())
            print(f"server process before {before}, after {after}")
        finally:
            await clients.close()
    within = [r["rate"] for r in rows if r["turns"] and r["overhead_ms_p99"] <= P99_BOUND_MS]
    return {
        "chats": args.chats,
        "workspaces": args.workspaces,
        "clients": args.clients,
        "follow": args.follow,
        "duration_s": args.duration,
        "open_loop": rows,
        "max_rate_p99_le_100ms": max(within) if within else None,
        "idle_cpu_ms_per_s": round(idle_cpu / IDLE_SAMPLE_S * 1000, 1),
        "idle_statements_per_s": round(idle.count / IDLE_SAMPLE_S, 1),
        "loadavg_1m": loadavg(),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = load_parser(__doc__, chats=1000, workspaces=50, seed=12)
    add_rate_args(parser, rates=[10.0, 25.0, 50.0, 100.0], duration=20.0, warmup=3.0)
    parser.add_argument(
        "--clients",
        type=int,
        default=2,
        help="client processes (each sends rate ÷ clients); more when send lateness grows",
    )
    parser.add_argument(
        "--follow",
        choices=("turn", "chat"),
        default="turn",
        help="the client's streams: one per turn, opened once the message was accepted "
        "(default), or one per chat open all along (each polls the database every "
        "stream_poll_s, 1 s)",
    )
    parser.add_argument(
        "--gc",
        action="store_true",
        help="count and time the server's garbage collections during each measured window",
    )
    parser.add_argument(
        "--stalls",
        action="store_true",
        help="watch the server's event loop (bench/loopstall.py): its lag, and the stacks "
        "of what held it for 20 ms or more",
    )
    parser.add_argument(
        "--slow",
        type=float,
        default=None,
        metavar="MS",
        help="print each turn whose overhead passed MS: its phases (and, with --stalls, "
        "the loop stalls during it)",
    )
    parser.add_argument(
        "--profile",
        metavar="PATH",
        help="write a cProfile of the server's event loop thread over the measured windows "
        "(every rate's, not the warm-ups) to PATH, timed by the thread's CPU clock (the "
        "default wall clock charges a socket write with the wait for a core that follows "
        "it); it slows the server about 2x",
    )
    parser.add_argument(
        "--statements",
        action="store_true",
        help="print each measured window's statements per turn by text",
    )
    parser.add_argument(
        "--heap",
        action="store_true",
        help="after set-up and after the last rate, print the objects the garbage collector "
        "tracks, by type",
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    print(json.dumps(run_in_server_loop(main(parse_args()))))
