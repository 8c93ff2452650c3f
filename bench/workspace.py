"""Workspace benchmark: create → agent ready, exec round trip through the agent,
concurrency on one agent, and agent responsiveness during a command.

Runs a real server (uvicorn on loopback, SQLite, local backend) and real `tether agent`
processes. Prints human-readable figures, then one JSON object as the last line.

    .venv/bin/python -m bench.workspace [--workspaces 10] [--execs 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from bench.benchlib import pct
from tether.agentconn.client import AgentClient
from tether.testing.harness import fast_settings, running_server


def agent_rss_mb(server_url: str) -> list[float]:
    """RSS of the ``tether agent`` processes of the server at ``server_url`` (the Python
    process inside bwrap; other servers' agents on the machine are left out)."""
    out = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            if b"tether.agent" not in argv or os.path.basename(argv[0]) == b"bwrap":
                continue
            env = (proc / "environ").read_bytes().split(b"\0")
            if f"TETHER_AGENT_URL={server_url}".encode() not in env:
                continue
            status = (proc / "status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                out.append(int(line.split()[1]) / 1024)
    return out


async def main(n_workspaces: int, n_execs: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = fast_settings(Path(tmp), agent_ping_interval_s=1.0)
        async with running_server(settings) as srv:
            await srv.push_template()
            ready: list[float] = []
            for i in range(n_workspaces):
                t0 = time.perf_counter()
                r = await srv.client.post(
                    "/api/v1/workspaces", json={"template": "python", "name": f"b{i}"}
                )
                r.raise_for_status()
                await srv.wait_ready(f"b{i}", timeout=30)
                ready.append(time.perf_counter() - t0)
            print(
                f"create → ready over {n_workspaces}: p50 {pct(ready, 50):.3f}s "
                f"p99 {pct(ready, 99):.3f}s"
            )
            await asyncio.sleep(2.0)  # idle: startup done, a ping or two exchanged
            rss = agent_rss_mb(srv.graph.settings.server_url())
            assert len(rss) == n_workspaces, f"found {len(rss)} agent processes"
            print(f"idle agent RSS: p50 {pct(rss, 50):.1f} MB, max {max(rss):.1f} MB")
            ws = (await srv.client.get("/api/v1/workspaces/b0")).json()
            agent = await srv.graph.agents.get(uuid.UUID(ws["agents"][0]["id"]))
            assert agent.dial_address and agent.dial_secret
            async with AgentClient(
                agent.dial_address, agent.dial_secret, connect_timeout=1.0, request_timeout=30.0
            ) as client:
                for _ in range(10):  # warm up the keep-alive connection
                    await client.exec("true")
                rtts = []
                for _ in range(n_execs):
                    t0 = time.perf_counter()
                    await client.exec("true")
                    rtts.append((time.perf_counter() - t0) * 1000)
                print(
                    f"exec `true` x{n_execs}: p50 {pct(rtts, 50):.2f}ms p99 {pct(rtts, 99):.2f}ms"
                )
                t0 = time.perf_counter()
                await asyncio.gather(*(client.exec("sleep 0.2") for _ in range(4)))
                concurrent_ms = (time.perf_counter() - t0) * 1000
                print(f"4 x `sleep 0.2` at once: {concurrent_ms:.0f}ms")
                long = asyncio.create_task(client.exec("sleep 1"))
                await asyncio.sleep(0.2)
                t0 = time.perf_counter()
                await client.health()
                health_ms = (time.perf_counter() - t0) * 1000
                await long
                print(f"health during `sleep 1`: {health_ms:.2f}ms")
            api_rtts = []
            async with httpx.AsyncClient(
                base_url=srv.url, headers={"Authorization": f"Bearer {srv.token}"}
            ) as api:
                for _ in range(50):
                    t0 = time.perf_counter()
                    (await api.post("/api/v1/workspaces/b0/exec", json={"command": "true"}))
                    api_rtts.append((time.perf_counter() - t0) * 1000)
            print(f"exec `true` through the server API x50: p50 {pct(api_rtts, 50):.2f}ms")
    return {
        "create_to_ready_s_p50": round(pct(ready, 50), 3),
        "create_to_ready_s_p99": round(pct(ready, 99), 3),
        "agent_rss_mb_idle": round(pct(rss, 50), 1),
        "exec_rtt_ms_p50": round(pct(rtts, 50), 2),
        "exec_rtt_ms_p99": round(pct(rtts, 99), 2),
        "concurrent_4x_sleep_0_2_ms": round(concurrent_ms, 1),
        "health_ms_during_command": round(health_ms, 2),
        "api_exec_rtt_ms_p50": round(statistics.median(api_rtts), 2),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--workspaces", type=int, default=10)
    parser.add_argument("--execs", type=int, default=200)
    args = parser.parse_args()
    result = asyncio.run(main(args.workspaces, args.execs))
    print(json.dumps(result))
