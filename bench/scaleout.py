"""Scale-out on PostgreSQL (issue #12, target 3): the same open-loop load against 1 and 2
``tether server`` processes (real OS processes) sharing one PostgreSQL database, chats
spread by the queue (``FOR UPDATE SKIP LOCKED`` claims).

A throwaway PostgreSQL cluster (``tests/support/pg.py``) and, per process count N, a fresh
database: process 0 runs API + provisioner + chat worker (the workspaces' agents connect
to it), processes 1…N-1 run API + chat worker. ``--workspaces`` workspaces (real agents)
and ``--chats`` chats; the client (this process) sends chat i's messages to process
i mod N and follows the chat's stream there — the turn runs on whichever process claimed
it, and its events reach the client through the stream relay (``tether.chatd.relay``).

Per N: Poisson arrivals at each of ``--rates`` for ``--duration`` s (after ``--warmup`` s),
wall per turn from its scheduled send time (model and tool time cannot be timed from
outside; with the zero-latency model, wall = overhead + one ``execute true`` round trip);
then a closed-loop saturation phase (``--concurrency`` clients, ``--saturate`` s): turns/s.

``scale_out_ratio``: the highest rate with wall p99 ≤ ``--p99-ms`` at 2 processes ÷ at 1;
when 1 process meets the bound at no rate, the saturated throughputs' ratio instead
(``scale_out_basis`` says which).

    .venv/bin/python -m bench.scaleout --chats 100 --workspaces 5 --rates 5,10 --duration 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.benchlib import (
    add_rate_args,
    closed_loop,
    cpu_seconds,
    create_workspaces,
    elapsed,
    load_parser,
    loadavg,
    pct,
    poisson,
    process_figures,
    stop_workspaces,
)
from bench.procs import (
    api_client,
    chats_with_first_turn,
    push_template,
    server_pid,
    start_server,
    turn,
)
from tests.support.pg import create_database, database_dsn, start_cluster

SETUP_CONCURRENCY = 16


async def saturate(turn_of: Any, chats: list[uuid.UUID], seconds: float, clients: int) -> float:
    """Closed loop: ``clients`` concurrent clients, each sending its next turn when the last
    ended, for ``seconds``; turns completed per second."""
    t0 = time.perf_counter()
    done, _ = await closed_loop(turn_of, chats, clients, random.Random(7), until=t0 + seconds)
    return done / (time.perf_counter() - t0)


async def run_n(n: int, admin_dsn: str, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    db_url = database_dsn(admin_dsn, await create_database(admin_dsn))
    shared = {"TETHER_DB_URL": db_url, "TETHER_SERVER_KEY_FILE": str(tmp / f"key{n}")}
    servers = [start_server(tmp / f"n{n}-0", env=shared)]
    for i in range(1, n):
        servers.append(
            start_server(
                tmp / f"n{n}-{i}",
                env={**shared, "TETHER_RUN_PROVISIONER": "false"},
                cli_config=servers[0].data_dir / "cli.json",
            )
        )
    apis = [api_client(s, max_connections=500) for s in servers]
    ids: list[uuid.UUID] = []
    try:
        await push_template(apis[0])
        t0 = time.perf_counter()
        ids = await create_workspaces(apis[0], args.workspaces, prefix=f"s{n}-")
        print(f"[{n} process(es)] {len(ids)} workspaces ready in {elapsed(t0)}")
        t0 = time.perf_counter()
        chats = await chats_with_first_turn(apis, ids, args.chats, concurrency=SETUP_CONCURRENCY)
        print(f"[{n} process(es)] {len(chats)} chats in {elapsed(t0)}")
        home = {chat_id: apis[i % n] for i, chat_id in enumerate(chats)}

        async def turn_of(chat_id: uuid.UUID) -> bool:
            return await turn(home[chat_id], chat_id)

        async def timed_turn(chat_id: uuid.UUID, scheduled: float) -> tuple[float, bool]:
            """One turn: its wall time from ``scheduled`` and whether it ended ``waiting``."""
            try:
                ok = await turn_of(chat_id)
            except Exception as exc:
                print(f"turn failed: {exc!r}")
                ok = False
            return time.perf_counter() - scheduled, ok

        rng = random.Random(args.seed)
        rows = []
        for rate in args.rates:
            await poisson(timed_turn, list(chats), rate, args.warmup, rng)
            samples, window, skipped = await poisson(
                timed_turn, list(chats), rate, args.duration, rng
            )
            ok = [w * 1000 for w, good in samples if good]
            row = {
                "rate": rate,
                "wall_ms_p50": round(pct(ok, 50), 1) if ok else None,
                "wall_ms_p99": round(pct(ok, 99), 1) if ok else None,
                "achieved_rate": round(len(ok) / window, 1),
                "turns": len(ok),
                "failed": len(samples) - len(ok),
                "skipped": skipped,
            }
            print(f"[{n} process(es)] {row}")
            rows.append(row)
        cpu0 = [_cpu(s) for s in servers]
        thr = await saturate(turn_of, chats, args.saturate, args.concurrency)
        cpu = [round(_cpu(s) - c, 1) for s, c in zip(servers, cpu0, strict=True)]
        print(
            f"[{n} process(es)] saturated: {thr:.1f} turns/s "
            f"(server CPU s per process: {cpu}; load {loadavg()})"
        )
        rss = [process_figures(server_pid(s))["rss_mb"] for s in servers]
    finally:
        t0 = time.perf_counter()
        await stop_workspaces(apis[0], ids)
        for api in apis:
            await api.aclose()
        for s in reversed(servers):
            s.stop()
        print(f"[{n} process(es)] stopped in {elapsed(t0)}")
    within = [
        r["rate"] for r in rows if r["wall_ms_p99"] is not None and r["wall_ms_p99"] <= args.p99_ms
    ]
    return {
        "processes": n,
        "open_loop": rows,
        "max_rate_within_bound": max(within) if within else None,
        "saturated_turns_per_s": round(thr, 1),
        "server_cpu_s_saturated": cpu,
        "server_rss_mb": rss,
    }


def _cpu(srv: Any) -> float:
    """User + system CPU seconds of the server process so far."""
    return cpu_seconds(Path(f"/proc/{server_pid(srv)}/stat"))


async def main(args: argparse.Namespace) -> dict[str, Any]:
    cluster = start_cluster()
    try:
        with tempfile.TemporaryDirectory(prefix="tether-bench-scaleout-") as tmp:
            results = [await run_n(n, cluster.dsn, Path(tmp), args) for n in args.replicas]
    finally:
        cluster.stop()
    by_n = {r["processes"]: r for r in results}
    one, two = by_n.get(1), by_n.get(2)
    ratio = basis = None
    if one and two:
        if one["max_rate_within_bound"] and two["max_rate_within_bound"]:
            ratio = two["max_rate_within_bound"] / one["max_rate_within_bound"]
            basis = f"max rate with wall p99 <= {args.p99_ms:g} ms"
        elif one["saturated_turns_per_s"]:
            ratio = two["saturated_turns_per_s"] / one["saturated_turns_per_s"]
            basis = "saturated throughput (no rate met the p99 bound at 1 process)"
    return {
        "scale_out": results,
        "scale_out_ratio": round(ratio, 2) if ratio is not None else None,
        "scale_out_basis": basis,
        "cores": len(os.sched_getaffinity(0)),
        "loadavg_1m": loadavg(),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = load_parser(__doc__, chats=200, workspaces=10, seed=3)
    add_rate_args(parser, rates=[5.0, 10.0, 20.0, 40.0], duration=15.0, warmup=3.0)
    parser.add_argument("--replicas", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2])
    parser.add_argument("--saturate", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--p99-ms", type=float, default=100.0)
    return parser.parse_args(argv)


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(parse_args()))))
