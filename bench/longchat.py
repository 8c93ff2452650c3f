"""Long-chat benchmark (issue #16): do turns slow down, and does memory grow, as chats get long?

Runs a real server in-process (uvicorn on loopback, SQLite, local backend, one workspace
with a real ``tether agent``) and a chat worker whose scripted model calls
``execute {"command": "seq 1 200"}`` once per turn (~900 characters of tool output), then
says ``ok``. Two phases:

* ``--long N``: 1 chat × N turns, one after another;
* ``--chats C --turns M``: C chats × M turns, the chats concurrently.

For each phase: turns/s over the first and the last 10 % of the turns (by completion time),
and their ratio; server RSS growth per 1,000 turns after the first 10 % (warm-up); open file
descriptors and sockets of the server process at warm-up and at the end; processes in the
workspace. ``--window T`` gives the model a context window of T tokens (compaction at 70 %);
without it the model states none (nothing is measured or compacted). The benchmark runs
on code without the long-chat modules too (for the "before" figure).

    .venv/bin/python -m bench.longchat --long 300 --chats 20 --turns 25 --window 8000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench.benchlib import IDLE, chat_worker, final_status, loadavg, server_client, wait_ready
from tether.demo import kill_workspace_processes
from tether.domain.chat import Chat
from tether.llm.scripted import Call, Say, script_model
from tether.testing.harness import fast_settings, running_server

try:  # absent before the long-chat work: the "before" run states no window
    from tether.llm.budget import Budget, attach_budget
except ImportError:  # pragma: no cover
    Budget = attach_budget = None  # type: ignore[assignment,misc]

READY_TIMEOUT_S = 60.0
TURN_TIMEOUT_S = 120.0


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def fds() -> tuple[int, int]:
    """(open fds, of which sockets) of this process."""
    total = sockets = 0
    for fd in os.listdir("/proc/self/fd"):
        total += 1
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                sockets += 1
    return total, sockets


def workspace_processes(data_dir: Path) -> int:
    """Processes whose command line or cwd lies in the data dir (agents and their children)."""
    count = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            if str(data_dir).encode() in cmd:
                count += 1
    return count


class Phase:
    def __init__(self, name: str, total: int, data_dir: Path) -> None:
        self.name = name
        self.total = total
        self.data_dir = data_dir
        self.done: list[float] = []
        self.cpu: list[float] = []  # the process's CPU time at each turn's end
        self.warm: dict[str, Any] | None = None
        self.start = time.perf_counter()
        self.cpu_start = time.process_time()

    def turn_done(self) -> None:
        self.done.append(time.perf_counter())
        self.cpu.append(time.process_time())
        if self.warm is None and len(self.done) >= max(1, self.total // 10):
            total, sockets = fds()
            self.warm = {
                "turns": len(self.done),
                "rss_mb": rss_mb(),
                "fds": total,
                "sockets": sockets,
                "procs": workspace_processes(self.data_dir),
            }

    def figures(self) -> dict[str, Any]:
        n = len(self.done)
        k = max(1, n // 10)
        first = k / (self.done[k - 1] - self.start)
        last = k / (self.done[-1] - self.done[-k - 1])
        # Server CPU per turn hardly depends on how loaded the shared machine is, where
        # turns/s does: the same comparison in CPU (a turn that costs more as the chat
        # grows shows here first).
        cpu_first = (self.cpu[k - 1] - self.cpu_start) / k * 1000
        cpu_last = (self.cpu[-1] - self.cpu[-k - 1]) / k * 1000
        assert self.warm is not None
        total, sockets = fds()
        after_warm = n - self.warm["turns"]
        growth = (rss_mb() - self.warm["rss_mb"]) / after_warm * 1000 if after_warm else 0.0
        return {
            "phase": self.name,
            "turns": n,
            "seconds": round(self.done[-1] - self.start, 1),
            "turns_per_s_first_10pct": round(first, 2),
            "turns_per_s_last_10pct": round(last, 2),
            "last_over_first": round(last / first, 2),
            "cpu_ms_per_turn_first_10pct": round(cpu_first, 1),
            "cpu_ms_per_turn_last_10pct": round(cpu_last, 1),
            "cpu_first_over_last": round(cpu_first / cpu_last, 2),
            "load_avg_1m": loadavg(),
            "rss_mb_warm": round(self.warm["rss_mb"], 1),
            "rss_mb_end": round(rss_mb(), 1),
            "rss_growth_mb_per_1000_turns": round(growth, 1),
            "fds_warm_end": [self.warm["fds"], total],
            "sockets_warm_end": [self.warm["sockets"], sockets],
            "workspace_procs_warm_end": [
                self.warm["procs"],
                workspace_processes(self.data_dir),
            ],
        }


async def _chat(
    api: httpx.AsyncClient, graph: Any, ws: uuid.UUID, turns: int, phase: Phase
) -> None:
    r = await api.post("/api/v1/chats", json={"content": "turn 1", "workspace_id": str(ws)})
    r.raise_for_status()
    chat_id = uuid.UUID(r.json()["id"])
    async with graph.hub.subscribe(chat_id) as queue:
        for turn in range(turns):
            if turn:
                r = await api.post(
                    f"/api/v1/chats/{chat_id}/messages", json={"content": f"turn {turn + 1}"}
                )
                r.raise_for_status()
                status = await final_status(queue, timeout_s=TURN_TIMEOUT_S)
            else:
                chat = (await api.get(f"/api/v1/chats/{chat_id}")).json()
                status = (
                    chat["status"]
                    if chat["status"] in IDLE
                    else await final_status(queue, timeout_s=TURN_TIMEOUT_S)
                )
            if status != "waiting":
                chat = (await api.get(f"/api/v1/chats/{chat_id}")).json()
                raise RuntimeError(f"turn {turn + 1} ended {status}: {chat.get('last_error')}")
            phase.turn_done()


async def _compactions(graph: Any) -> dict[str, Any]:
    import sqlalchemy as sa

    async with graph.engine.connect() as conn:
        try:
            n = await conn.scalar(sa.text("select count(*) from chat_compactions"))
        except Exception:  # before the long-chat work: no such table
            return {"compactions": None}
    return {"compactions": n}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="tether-bench-longchat-") as tmp:
        data_dir = Path(tmp) / "data"
        settings = fast_settings(
            Path(tmp),
            run_chatd=False,
            worker_poll_s=1.0,
            ttl_sweep_s=5.0,
            max_queued_messages=1000,
        )
        try:
            async with running_server(settings) as srv:
                graph = srv.graph
                models: dict[uuid.UUID, Any] = {}

                def model_for(chat: Chat) -> Any:
                    model = models.get(chat.id)
                    if model is None:
                        model = script_model(
                            [Call("execute", {"command": "seq 1 200"}), Say("ok")],
                            model_name="scripted-bench",
                        )
                        if args.window and attach_budget is not None:
                            attach_budget(model, Budget(args.window))
                        models[chat.id] = model
                    return model

                # idle connections close before the server's keep-alive timeout (5 s) can race
                # a new request on them (httpx.ReadError under load)
                limits = httpx.Limits(max_connections=100, keepalive_expiry=1.0)
                async with (
                    chat_worker(graph, model_for=model_for),
                    server_client(srv, limits) as api,
                ):
                    await srv.push_template()
                    r = await api.post(
                        "/api/v1/workspaces", json={"template": "python", "name": "w"}
                    )
                    r.raise_for_status()
                    ws = await wait_ready(api, "w", timeout_s=READY_TIMEOUT_S)
                    if args.long:
                        phase = Phase(f"1 chat x {args.long}", args.long, data_dir)
                        await _chat(api, graph, ws, args.long, phase)
                        results.append({**phase.figures(), **await _compactions(graph)})
                        print(json.dumps(results[-1]))
                        models.clear()
                    if args.chats:
                        total = args.chats * args.turns
                        phase = Phase(f"{args.chats} chats x {args.turns}", total, data_dir)
                        await asyncio.gather(
                            *(_chat(api, graph, ws, args.turns, phase) for _ in range(args.chats))
                        )
                        results.append(phase.figures())
                        print(json.dumps(results[-1]))
                    with contextlib.suppress(httpx.HTTPError):
                        await api.post(f"/api/v1/workspaces/{ws}/stop")
        finally:
            kill_workspace_processes(data_dir)
    return {"window": args.window, "phases": results}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--long", type=int, default=300, help="turns of the single chat")
    parser.add_argument("--chats", type=int, default=20)
    parser.add_argument("--turns", type=int, default=25, help="turns of each concurrent chat")
    parser.add_argument("--window", type=int, default=0, help="context window in tokens")
    print(json.dumps(asyncio.run(main(parser.parse_args()))))
