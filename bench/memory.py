"""Server memory with many idle chats, and a soak (issue #12, target 5).

Starts a real ``tether server`` process (SQLite, local backend, the zero-latency scripted
model), creates ``--workspaces`` workspaces (real agents, all connected) and ``--chats``
chats spread over them, each with a first turn (so each has history: the user message, the
``execute true`` call and its result, ``ok``). Then, with everything idle:
``server_rss_mb_1000_chats`` (named for the default 1,000 chats), open fds, threads and
event-loop tasks (``tether_event_loop_tasks`` on ``/metrics``) — once right after the
turns (each chat's agent connection still cached), once ``--chat-idle-s`` later
(``TETHER_WORKER_CHAT_IDLE_S``: the worker has dropped the idle chats' connections).
The server's fds include the bench client's keep-alive connections (≤ 100).

Soak: ``--soak-turns`` more turns (``--concurrency`` chats at a time, each turn to a random
idle chat), after ``--warmup-turns`` that warm caches and pools; the same figures before and
after (both taken idle, after ``SETTLE_S``): what grows per turn is a leak. The history
cache (``chatd/historycache.py``) is bounded by messages, not chats: it grows until it
holds ``history_cache_max_messages`` (≈ 4 per turn here); pass ``--history-cache`` small
enough for the warm-up to fill it to see growth beyond that bound.

    .venv/bin/python -m bench.memory --chats 100 --workspaces 5 --soak-turns 200

Prints figures, then one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import random
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.benchlib import (
    closed_loop,
    create_workspaces,
    elapsed,
    load_parser,
    loadavg,
    stop_workspaces,
)
from bench.procs import (
    api_client,
    chats_with_first_turn,
    figures,
    push_template,
    start_server,
    summary,
    turn,
)

SETTLE_S = 5.0  # idle before a snapshot: turns' connections drained, agents' pings steady
SETUP_CONCURRENCY = 16
HEARTBEAT_S = 2.0  # the worker forgets idle chats on its heartbeat (Settings.heartbeat_s)


async def soak(api: Any, chats: list[uuid.UUID], n: int, concurrency: int, seed: int) -> int:
    """``n`` turns, ``concurrency`` at a time, each to a random idle chat; the failures."""
    _, failed = await closed_loop(
        functools.partial(turn, api), chats, concurrency, random.Random(seed), turns=n
    )
    return failed


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tether-bench-memory-") as tmp:
        env = {"TETHER_WORKER_CHAT_IDLE_S": str(args.chat_idle_s)}
        if args.history_cache is not None:
            env["TETHER_HISTORY_CACHE_MAX_MESSAGES"] = str(args.history_cache)
        srv = start_server(Path(tmp) / "server", env=env)
        api = api_client(srv)
        ids: list[uuid.UUID] = []
        try:
            await push_template(api)
            empty = await figures(srv, api)
            print(f"empty server: {summary(empty)}")
            t0 = time.perf_counter()
            ids = await create_workspaces(api, args.workspaces, prefix="m")
            print(f"{len(ids)} workspaces ready in {elapsed(t0)}")
            t0 = time.perf_counter()
            chats = await chats_with_first_turn(
                [api], ids, args.chats, concurrency=SETUP_CONCURRENCY
            )
            print(f"{len(chats)} chats with a first turn in {elapsed(t0)}")
            await asyncio.sleep(SETTLE_S)
            held = await figures(srv, api)
            print(f"holding {len(chats)} idle chats, {len(ids)} agents: {summary(held)}")
            await asyncio.sleep(args.chat_idle_s + HEARTBEAT_S)
            expired = await figures(srv, api)
            print(f"after {args.chat_idle_s:g}s more idle: {summary(expired)}")
            failed = await soak(api, chats, args.warmup_turns, args.concurrency, args.seed)
            await asyncio.sleep(SETTLE_S)
            before = await figures(srv, api)
            print(f"soak: before ({args.warmup_turns} warm-up turns): {summary(before)}")
            t0 = time.perf_counter()
            failed += await soak(api, chats, args.soak_turns, args.concurrency, args.seed + 1)
            soak_s = time.perf_counter() - t0
            await asyncio.sleep(SETTLE_S)
            after = await figures(srv, api)
            print(
                f"soak: after {args.soak_turns} turns in {soak_s:.0f}s "
                f"({args.soak_turns / soak_s:.1f}/s, {failed} failed): {summary(after)}"
            )
        finally:
            t0 = time.perf_counter()
            await stop_workspaces(api, ids)
            await api.aclose()
            srv.stop()
            print(f"stopped in {elapsed(t0)}")
    return {
        "chats": args.chats,
        "workspaces": args.workspaces,
        "server_rss_mb_empty": empty["rss_mb"],
        "server_rss_mb_1000_chats": held["rss_mb"],
        "held": held,
        "server_rss_mb_1000_chats_expired": expired["rss_mb"],
        "expired": expired,
        "soak_turns": args.soak_turns,
        "soak_failed": failed,
        "soak_before": before,
        "soak_after": after,
        "soak_rss_mb_growth": round(after["rss_mb"] - before["rss_mb"], 1),
        "loadavg_1m": loadavg(),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = load_parser(__doc__, chats=1000, workspaces=50, seed=5)
    parser.add_argument("--soak-turns", "--soak", type=int, default=10_000)
    parser.add_argument("--warmup-turns", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--chat-idle-s", type=float, default=30.0)
    parser.add_argument(
        "--history-cache",
        type=int,
        default=None,
        help="TETHER_HISTORY_CACHE_MAX_MESSAGES (default: the server's, 20,000 messages); the "
        "cache fills up to it, so a soak shorter than that shows the fill as growth",
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(parse_args()))))
