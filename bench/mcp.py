"""Workspace MCP benchmark: the first-model-call delay of chat turns when the workspace's
``.mcp.json`` has one MCP server that hangs (accepts stdio, never answers:
``tests/fixtures/mcp_hanging_server.py``) next to a working one (the echo server).

Runs a real server in-process (uvicorn on loopback, SQLite, local backend, a real
``tether agent``) with default MCP settings, creates one workspace from a template that
configures both servers, then runs ``--turns`` turns on one chat, ``--gap`` seconds apart
(the first ``--after-ready`` seconds after the workspace is ready, default 0: both servers
are cold or just starting).
Per turn it reports the time from the API request until the model is first called, and
whether the working server's tools were in that first call. ``--only-hanging`` drops the
echo server (then the old code cached nothing and waited again on later turns). Prints
figures, then one JSON object as the last line.

    .venv/bin/python -m bench.mcp
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench.benchlib import chat_worker, final_status, server_client, wait_ready
from tether.demo import kill_workspace_processes
from tether.domain.chat import Chat
from tether.llm.scripted import Say, script_model
from tether.testing.harness import fast_settings, running_server

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
READY_TIMEOUT_S = 120.0
TURN_TIMEOUT_S = 120.0


def template(only_hanging: bool) -> str:
    servers = {
        "echo": {"command": sys.executable, "args": [str(FIXTURES / "mcp_echo_server.py")]},
        "hangs": {"command": sys.executable, "args": [str(FIXTURES / "mcp_hanging_server.py")]},
    }
    if only_hanging:
        del servers["echo"]
    return f"""
name: mcpbench
directory: project
backend: local
mcp: {json.dumps({"mcpServers": servers})}
agents:
  - name: main
    chat: true
"""


async def main(
    turns: int, gap_s: float, after_ready_s: float, only_hanging: bool
) -> dict[str, Any]:
    firsts: list[tuple[float, list[str]]] = []  # (time of the turn's first request, tools)

    def record(messages: Any, info: Any) -> None:
        firsts.append((time.perf_counter(), [t.name for t in info.function_tools]))

    def model_for(chat: Chat) -> Any:
        return script_model([Say("ok")], per_turn=True, on_request=record)

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="tether-bench-mcp-") as tmp:
        settings = fast_settings(Path(tmp), run_chatd=False)
        try:
            async with running_server(settings) as srv:
                async with (
                    chat_worker(srv.graph, model_for=model_for),
                    server_client(srv) as api,
                ):
                    try:
                        await srv.push_template(template(only_hanging))
                        r = await api.post(
                            "/api/v1/workspaces", json={"template": "mcpbench", "name": "mcp"}
                        )
                        r.raise_for_status()
                        ws = await wait_ready(api, "mcp", timeout_s=READY_TIMEOUT_S, poll_s=0.1)
                        await asyncio.sleep(after_ready_s)  # the user opens a chat
                        chat_id: uuid.UUID | None = None
                        for turn in range(turns):
                            if turn:
                                await asyncio.sleep(gap_s)  # the user reads, then types
                            seen = len(firsts)
                            t0 = time.perf_counter()
                            if chat_id is None:
                                r = await api.post(
                                    "/api/v1/chats", json={"content": "hi", "workspace_id": str(ws)}
                                )
                                r.raise_for_status()
                                chat_id = uuid.UUID(r.json()["id"])
                                async with srv.graph.hub.subscribe(chat_id) as queue:
                                    early = srv.graph.hub.buffered_after(chat_id, 0, 0)
                                    status = await final_status(
                                        queue, timeout_s=TURN_TIMEOUT_S, early=early
                                    )
                            else:
                                async with srv.graph.hub.subscribe(chat_id) as queue:
                                    r = await api.post(
                                        f"/api/v1/chats/{chat_id}/messages",
                                        json={"content": "again"},
                                    )
                                    r.raise_for_status()
                                    status = await final_status(queue, timeout_s=TURN_TIMEOUT_S)
                            wall = time.perf_counter() - t0
                            at, tools = firsts[seen]
                            rows.append(
                                {
                                    "turn": turn + 1,
                                    "first_model_call_s": round(at - t0, 3),
                                    "wall_s": round(wall, 3),
                                    "working_tools_in_first_call": "echo__echo" in tools,
                                    "status": status,
                                }
                            )
                            print(
                                f"turn {turn + 1}: first model call after {at - t0:6.2f}s, "
                                f"echo tools {'in' if 'echo__echo' in tools else 'NOT in'} it, "
                                f"turn {wall:6.2f}s ({status})"
                            )
                    finally:
                        with contextlib.suppress(httpx.HTTPError):
                            await api.post("/api/v1/workspaces/mcp/stop")
        finally:
            kill_workspace_processes(Path(tmp) / "data")
    return {
        "bench": "mcp_hanging_server",
        "gap_s": gap_s,
        "after_ready_s": after_ready_s,
        "servers": ["hangs"] if only_hanging else ["echo", "hangs"],
        "first_model_call_s": [r["first_model_call_s"] for r in rows],
        "working_tools_in_first_call": [r["working_tools_in_first_call"] for r in rows],
        "turns": rows,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--gap", type=float, default=2.0, help="seconds between turns")
    parser.add_argument(
        "--after-ready", type=float, default=0.0, help="seconds from ready to the first turn"
    )
    parser.add_argument(
        "--only-hanging", action="store_true", help="configure the hanging server alone"
    )
    args = parser.parse_args()
    result = asyncio.run(main(args.turns, args.gap, args.after_ready, args.only_hanging))
    print(json.dumps(result))
