"""What opening and closing a chat's SSE stream costs the server (issue #12): CPU and
statements per stream, the way a client following one turn opens it (``bench/openloop.py``'s
default ``--follow turn``; the CLI and the SDK).

A real server in this process (uvicorn on loopback, SQLite; ``running_server`` in
``src/tether/testing/harness.py``, on the event loop and HTTP parser of ``tether server``)
with no chat worker, so nothing but the streams runs. One chat (its first message
persisted, status ``pending``). A client process of its own (``python -c``, a plain
``httpx.Client``) then opens ``--streams`` streams one after the other, each on a new
connection as an HTTP client that closes a stream mid-body must: ``GET …/stream`` after the
chat's last message, read until the ``status`` event, close. The server process's CPU time
and its statements while the client runs, ÷ streams, are the figures.

    .venv/bin/python -m bench.streamopen --streams 500

``--events N``: then one stream stays open and the server publishes ``N`` small
``message_part`` events on the chat's hub, each followed by two passes of the event loop
(so the stream takes each alone, as it takes a turn's events), until the client has read
them all: ``stream_event_cpu_us`` is the loop thread's CPU per event delivered (the
follower, the token guard's hand-off, the SSE encoding, the write), less the same
publishing loop for a chat nobody follows.

Prints figures, then one JSON object as its last line: ``stream_open_cpu_ms``,
``stream_open_statements`` (per stream, background work included: the idle server's own
rate is printed beside it), ``streams``, ``loadavg_1m``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from bench.benchlib import loadavg, run_in_server_loop
from tether.db.engine import StatementCounter
from tether.testing.harness import fast_settings, running_server

IDLE_SAMPLE_S = 1.0

CLIENT = """
import os, sys, time, httpx
url, chat, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
headers = {"Authorization": "Bearer " + os.environ["BENCH_TOKEN"]}
def one(client):
    with client.stream("GET", f"/api/v1/chats/{chat}/stream", params={"after": "1.0"}) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if line.startswith("event: status"):
                return
    raise SystemExit("the stream ended without a status")
with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
    for _ in range(5):
        one(client)  # warm-up (imports, first connections)
    print("go", flush=True)
    sys.stdin.readline()
    t0 = time.perf_counter()
    for _ in range(n):
        one(client)
    print(time.perf_counter() - t0, flush=True)
"""

EVENTS_CLIENT = """
import os, sys, httpx
url, chat, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
headers = {"Authorization": "Bearer " + os.environ["BENCH_TOKEN"]}
with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
    with client.stream("GET", f"/api/v1/chats/{chat}/stream", params={"after": "1.0"}) as r:
        r.raise_for_status()
        seen = 0
        for line in r.iter_lines():
            if line.startswith("event: status"):
                print("open", flush=True)
            elif line.startswith("event: message_part"):
                seen += 1
                if seen == n:
                    print("done", flush=True)
                    break
"""


async def _publish(hub: Any, chat_id: uuid.UUID, n: int) -> float:
    """Publish ``n`` small ``message_part`` events, each followed by two passes of the
    event loop (so the stream takes it alone, as a turn's events come); the loop thread's
    CPU seconds it took."""
    cpu0 = time.thread_time()
    for i in range(n):
        hub.publish(chat_id, "message_part", {"kind": "text", "text": f"part {i}"})
        await asyncio.sleep(0)
        await asyncio.sleep(0)
    return time.thread_time() - cpu0


async def per_event_cpu(srv: Any, chat: str, n: int) -> float:
    """The loop thread's CPU per event delivered on one open stream over the socket: the
    publishing loop with the stream open, less the same loop publishing to a chat nobody
    follows (its mean before and after)."""
    hub = srv.graph.chat_service.hub
    nobody = uuid.uuid4()
    alone = await _publish(hub, nobody, n)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        EVENTS_CLIENT,
        srv.url,
        chat,
        str(n),
        stdout=subprocess.PIPE,
        env={**os.environ, "BENCH_TOKEN": srv.token},
    )
    assert proc.stdout is not None
    assert (await proc.stdout.readline()).strip() == b"open"
    cpu0 = time.thread_time()
    await _publish(hub, uuid.UUID(chat), n)
    assert (await proc.stdout.readline()).strip() == b"done"
    delivered = time.thread_time() - cpu0
    await proc.wait()
    alone = (alone + await _publish(hub, nobody, n)) / 2
    return (delivered - alone) / n


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tether-bench-streamopen-") as tmp:
        settings = fast_settings(
            Path(tmp), run_chatd=False, provisioner_poll_s=5.0, ttl_sweep_s=5.0
        )
        async with running_server(settings) as srv:
            r = await srv.client.post("/api/v1/chats", json={"content": "hello"})
            r.raise_for_status()
            chat = r.json()["id"]
            counter = StatementCounter(srv.graph.engine)
            with counter.measure() as idle:
                await asyncio.sleep(IDLE_SAMPLE_S)
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                CLIENT,
                srv.url,
                chat,
                str(args.streams),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env={**os.environ, "BENCH_TOKEN": srv.token},
            )
            assert proc.stdin is not None and proc.stdout is not None
            assert (await proc.stdout.readline()).strip() == b"go"
            profiler = cProfile.Profile(time.thread_time) if args.profile else None
            with counter.measure() as busy:
                cpu0 = time.process_time()
                if profiler is not None:
                    profiler.enable()
                proc.stdin.write(b"go\n")
                await proc.stdin.drain()
                wall_s = float(await proc.stdout.readline())
                if profiler is not None:
                    profiler.disable()
                cpu_s = time.process_time() - cpu0
            if profiler is not None:
                profiler.dump_stats(args.profile)
                print(f"profile written to {args.profile} (it slows the server about 2x)")
            await proc.wait()
            counter.close()
            event_s = await per_event_cpu(srv, chat, args.events) if args.events else None
    n = args.streams
    idle_rate = idle.count / IDLE_SAMPLE_S
    print(
        f"{n} streams in {wall_s:.2f}s: server CPU {cpu_s / n * 1000:.3f} ms per stream, "
        f"{busy.count / n:.2f} statements per stream (idle server: {idle_rate:.1f}/s)"
    )
    if args.statements:
        by_text = Counter(" ".join(s.split())[:100] for s in busy.statements)
        for text, count in by_text.most_common(8):
            print(f"  {count / n:6.2f}  {text}")
    if event_s is not None:
        print(f"{args.events} events on one open stream: {event_s * 1e6:.1f} µs of CPU each")
    return {
        "stream_event_cpu_us": round(event_s * 1e6, 1) if event_s is not None else None,
        "streams": n,
        "stream_open_cpu_ms": round(cpu_s / n * 1000, 3),
        "stream_open_statements": round(busy.count / n, 2),
        "stream_open_wall_ms": round(wall_s / n * 1000, 3),
        "loadavg_1m": loadavg(),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=500)
    parser.add_argument(
        "--events", type=int, default=0, help="then N events delivered on one open stream"
    )
    parser.add_argument(
        "--profile",
        metavar="PATH",
        help="write a cProfile of the server's event loop thread (its CPU clock) to PATH",
    )
    parser.add_argument("--statements", action="store_true", help="print them by text")
    return parser.parse_args(argv)


if __name__ == "__main__":
    print(json.dumps(run_in_server_loop(main(parse_args()))))
