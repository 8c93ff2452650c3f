"""Open-loop chat load (issue #12, target 2): ``--chats`` chats over ``--workspaces``
workspaces (real ``tether agent`` processes, local backend), with messages sent as a
Poisson process at each rate of ``--rates`` turns/s.

The server runs in-process as in ``bench/turns.py`` (uvicorn on loopback, SQLite) with the
chat worker installed here, so the model (``zero_latency_execute_model``: one
``execute true`` per turn, then ``ok``) and the agents' ``exec`` calls can be timed. Per
turn: **overhead** = wall − model − tool, as ``bench/turns.py`` defines it, except that
*wall starts at the send time the schedule gave the message*, not when the client got
round to sending it: a client (or server) that falls behind shows as overhead, never as
fewer samples (no coordinated omission).

Each message goes to a chat picked at random among those with no turn in flight (a chat
runs one turn at a time; a message to a running chat would be queued, not load). Each rate
runs ``--warmup`` seconds (not measured), then ``--duration`` seconds; turns still running
when the window closes are waited for (up to ``TURN_TIMEOUT_S``). ``achieved_rate`` is the
turns measured ÷ the time from the window's start to its last turn's end.

Set-up (not measured): the workspaces, then every chat's first turn.

    .venv/bin/python -m bench.openloop --chats 100 --workspaces 5 --rates 10,25 --duration 5

Prints figures, then one JSON object as the last line: ``open_loop`` (a list of
``{rate, overhead_ms_p50, overhead_ms_p99, achieved_rate, turns, errors, skipped}``) and
``max_rate_p99_le_100ms`` (the highest rate run whose overhead p99 ≤ 100 ms, or null).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.benchlib import (
    ChatTimers,
    create_workspaces,
    final_status,
    pct,
    process_figures,
    stop_workspaces,
)
from tether.chatd.binding import AgentDialer
from tether.chatd.install import install_chatd
from tether.demo import kill_workspace_processes
from tether.llm.scripted import zero_latency_execute_model
from tether.testing.harness import fast_settings, running_server

REPO = Path(__file__).resolve().parents[1]

TURN_TIMEOUT_S = 120.0
SETUP_CONCURRENCY = 32
P99_BOUND_MS = 100.0


@dataclass
class Sample:
    overhead_s: float
    late_s: float  # how far behind its scheduled time the client sent the message
    ok: bool


class Load:
    """Sends one chat's messages on schedule and times its turns."""

    def __init__(self, api: httpx.AsyncClient, hub: Any, timers: ChatTimers) -> None:
        self.api = api
        self.hub = hub
        self.timers = timers
        self.idle: list[uuid.UUID] = []

    async def first_turn(self, workspace_id: uuid.UUID, gate: asyncio.Semaphore) -> None:
        async with gate:
            r = await self.api.post(
                "/api/v1/chats", json={"content": "turn 1", "workspace_id": str(workspace_id)}
            )
            r.raise_for_status()
            chat_id = uuid.UUID(r.json()["id"])
            async with self.hub.subscribe(chat_id) as queue:
                early = self.hub.buffered_after(chat_id, 0, 0)
                status = await final_status(queue, timeout_s=TURN_TIMEOUT_S, early=early)
            if status != "waiting":
                raise RuntimeError(f"chat {chat_id}: first turn ended in {status}")
            self.timers.take(chat_id)
            self.idle.append(chat_id)

    async def turn(self, chat_id: uuid.UUID, scheduled: float) -> Sample:
        """One message to an idle chat, timed from ``scheduled`` (perf_counter)."""
        ok = False
        late = time.perf_counter() - scheduled
        try:
            async with self.hub.subscribe(chat_id) as queue:
                r = await self.api.post(f"/api/v1/chats/{chat_id}/messages", json={"content": "go"})
                r.raise_for_status()
                status = await final_status(queue, timeout_s=TURN_TIMEOUT_S)
                ok = status == "waiting"
        except (httpx.HTTPError, TimeoutError) as exc:  # counted in ``errors``
            print(f"chat {chat_id}: {exc!r}", file=sys.stderr)
        finally:
            self.idle.append(chat_id)
        wall = time.perf_counter() - scheduled
        model_s, tool_s = self.timers.take(chat_id)
        return Sample(wall - model_s - tool_s, late, ok)

    async def run_rate(
        self, rate: float, duration_s: float, rng: random.Random
    ) -> tuple[list[Sample], float, int]:
        """Poisson arrivals at ``rate`` for ``duration_s``: the samples, the window's length
        up to its last turn's end, and how many arrivals found no idle chat (skipped)."""
        tasks: list[asyncio.Task[Sample]] = []
        skipped = 0
        start = time.perf_counter()
        at = start
        while True:
            at += rng.expovariate(rate)
            if at - start >= duration_s:
                break
            delay = at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if not self.idle:
                skipped += 1
                continue
            chat_id = self.idle.pop(rng.randrange(len(self.idle)))
            tasks.append(asyncio.create_task(self.turn(chat_id, at)))
        samples = list(await asyncio.gather(*tasks))
        return samples, time.perf_counter() - start, skipped


def summarise(rate: float, samples: list[Sample], window_s: float, skipped: int) -> dict[str, Any]:
    ok = [s for s in samples if s.ok]
    ms = [s.overhead_s * 1000 for s in ok] or [float("nan")]
    late = [s.late_s * 1000 for s in samples] or [0.0]
    row = {
        "rate": rate,
        "overhead_ms_p50": round(pct(ms, 50), 1),
        "overhead_ms_p99": round(pct(ms, 99), 1),
        "achieved_rate": round(len(ok) / window_s, 1) if window_s > 0 else 0.0,
        "turns": len(ok),
        "errors": len(samples) - len(ok),
        "skipped": skipped,
    }
    print(
        f"rate {rate:6.1f}/s: {len(ok)} turns, overhead p50 {row['overhead_ms_p50']:8.1f} ms "
        f"p99 {row['overhead_ms_p99']:8.1f} ms, achieved {row['achieved_rate']:.1f}/s, "
        f"send lateness p99 {pct(late, 99):.1f} ms, errors {row['errors']}, skipped {skipped}"
    )
    return row


async def main(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="tether-bench-openloop-") as tmp:
        settings = fast_settings(
            Path(tmp),
            run_chatd=False,  # installed below, with timed model and dialer
            agent_ping_interval_s=2.0,
            agent_unreachable_after_s=6.0,
            agent_inactive_disconnect_s=6.0,
            worker_poll_s=1.0,
            ttl_sweep_s=5.0,
        )
        timers = ChatTimers()
        try:
            async with running_server(settings) as srv:
                graph = srv.graph
                dialer = timers.dialer(AgentDialer(clients=graph.agent_clients))
                worker = install_chatd(
                    graph,
                    model_for=timers.model_for(zero_latency_execute_model()),
                    dialer=dialer,
                    register=False,
                )
                worker_task = asyncio.create_task(worker.run(), name="bench-chat-worker")
                api = httpx.AsyncClient(
                    base_url=srv.url,
                    headers={"Authorization": f"Bearer {srv.token}"},
                    timeout=60,
                    limits=httpx.Limits(max_connections=1000, max_keepalive_connections=200),
                )
                ids: list[uuid.UUID] = []
                try:
                    await srv.push_template()
                    t0 = time.perf_counter()
                    ids = await create_workspaces(api, args.workspaces, prefix="w")
                    print(f"{len(ids)} workspaces ready in {time.perf_counter() - t0:.1f}s")
                    load = Load(api, graph.hub, timers)
                    gate = asyncio.Semaphore(SETUP_CONCURRENCY)
                    t0 = time.perf_counter()
                    await asyncio.gather(
                        *(load.first_turn(ids[i % len(ids)], gate) for i in range(args.chats))
                    )
                    print(f"{args.chats} chats created in {time.perf_counter() - t0:.1f}s")
                    before = process_figures(os.getpid())
                    for rate in args.rates:
                        await load.run_rate(rate, args.warmup, rng)
                        cpu0 = time.process_time()
                        samples, window_s, skipped = await load.run_rate(rate, args.duration, rng)
                        row = summarise(rate, samples, window_s, skipped)
                        row["cpu_ms_per_turn"] = round(
                            (time.process_time() - cpu0) / max(1, len(samples)) * 1000, 1
                        )
                        rows.append(row)
                    after = process_figures(os.getpid())
                    print(f"process (server + client) before {before}, after {after}")
                finally:
                    await stop_workspaces(api, ids)
                    await api.aclose()
                    worker_task.cancel()
                    try:
                        await worker_task
                    except asyncio.CancelledError:
                        pass
        finally:
            leftovers = kill_workspace_processes(Path(tmp) / "data")
            if leftovers:
                print(f"warning: killed {leftovers} leftover workspace process(es)")
    within = [r["rate"] for r in rows if r["turns"] and r["overhead_ms_p99"] <= P99_BOUND_MS]
    return {
        "chats": args.chats,
        "workspaces": args.workspaces,
        "duration_s": args.duration,
        "open_loop": rows,
        "max_rate_p99_le_100ms": max(within) if within else None,
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chats", type=int, default=1000)
    parser.add_argument("--workspaces", type=int, default=50)
    parser.add_argument(
        "--rates",
        type=lambda s: [float(x) for x in s.split(",") if x],
        default=[10.0, 25.0, 50.0, 100.0],
        help="comma-separated turns/s (default 10,25,50,100)",
    )
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds per rate")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds per rate")
    parser.add_argument("--seed", type=int, default=12)
    return parser.parse_args(argv)


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(parse_args()))))
