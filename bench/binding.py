"""Binding benchmark: what the chat→workspace binding costs and how fast it reacts.

Runs a real server in-process (uvicorn on loopback, SQLite, local backend), real
`tether agent` processes, the real chat worker with a scripted model that calls `execute`
each turn, and a StatementCounter on the engine. Measures, over >= --trials trials each:

* warm turns: agent-resolution queries (SELECT … FROM workspace_agents) and dials per turn;
* a tool call on a cached connection: the SELECT statements the tool call itself runs
  (attributed through a context variable its task inherits, between the hub's tool-call and
  tool-result events, so the turn's message persistence and background jobs are outside);
* stopped workspace: time from the tool call to its `workspace_stopped` result, with the
  old agent's process gone (connection refused) and with its address black-holed (accepts
  TCP, never answers);
* rebuild between turns: time of the first tool call after the rebuild (old dial fails →
  validation → switch → binding rewritten);
* the same two on a cold worker (a new worker, as after a restart or an idle chat forgotten,
  that heard no build event): the turn's pre-dial gate reads the latest build, so neither
  the black-holed stopped agent nor the stale one is dialled.

Prints figures, then one JSON object as the last line.

    .venv/bin/python -m bench.binding [--trials 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import tempfile
import time
import uuid
from pathlib import Path

import bench.testpath  # noqa: F401  (before the tests' modules)
from bench.benchlib import pct
from tests.integration.binding.binding_env import (
    BindingEnv,
    binding_env,
    resolution_queries,
    tcp_black_hole,
)
from tether.domain.chat import ChatStatus
from tether.domain.workspace import Transition
from tether.llm.scripted import Call, Say, script_model

SELECT = re.compile(r"^\s*SELECT\b", re.IGNORECASE)
EXECUTE = script_model([Call("execute", {"command": "true"}), Say("ok")])


async def _turn(env: BindingEnv, chat_id: uuid.UUID, expect: str | None) -> tuple[float, float]:
    """One turn; checks the execute call's outcome and returns its duration and the time
    from sending the message to its result (which includes the pre-LLM setup, where the
    gate and MCP discovery may already have repaired the binding)."""
    sent = time.monotonic()
    chat = await env.turn(chat_id, "go", timeout=60)
    assert chat.status is ChatStatus.WAITING, chat.last_error
    result = (await env.results(chat_id, "execute"))[-1]
    if expect is None:
        assert not result.get("is_error"), result
    else:
        assert result.get("error_code") == expect, result
    span = env.spans(chat_id, "execute")[-1]
    assert span.ended is not None
    return span.seconds, span.ended - sent


async def _start(env: BindingEnv, ws: uuid.UUID) -> None:
    build, _ = await env.graph.workspaces.transition(env.owner, ws, Transition.START)
    await env.graph.workspaces.wait_for_build(build.id, timeout_s=30)
    await env.wait_agent_ready(ws)


async def main(trials: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        async with binding_env(
            Path(tmp), agent_ping_interval_s=1.0, ttl_sweep_s=3600.0, heartbeat_s=30.0
        ) as env:
            ws, _ = await env.create_workspace()
            env.start_worker()
            assert env.counter is not None
            chat = await env.new_chat("bind", EXECUTE, workspace_id=ws)
            await env.wait_status(chat.id)

            # --- warm turns and cache-hit tool calls ----------------------------------------
            queries, dials, reads, statements = [], [], [], []
            for _ in range(trials):
                before = len(env.dialer.calls)
                with env.counter.measure() as m:
                    await _turn(env, chat.id, None)
                queries.append(len(resolution_queries(m.statements)))
                dials.append(len(env.dialer.calls) - before)
                span = env.spans(chat.id, "execute")[-1]
                reads.append(sum(1 for s in span.own if SELECT.match(s)))
                statements.append(len(span.statements))
            print(
                f"warm turn x{trials}: resolution queries max {max(queries)}, dials max "
                f"{max(dials)}; cache-hit tool call: its own SELECTs max {max(reads)} (statements "
                f"on the engine meanwhile, background jobs included: max {max(statements)})"
            )

            # --- stopped workspace: dead address, then black-holed address ---------------
            stopped, holed, stopped_turn = [], [], []
            for _ in range(trials):
                await _turn(env, chat.id, None)  # warm conn to the running agent
                agent = (await env.graph.agents.latest_build_agents(ws))[0]
                await env.stop_workspace(ws)
                tool_s, turn_s = await _turn(env, chat.id, "workspace_stopped")
                stopped.append(tool_s)
                stopped_turn.append(turn_s)
                with tcp_black_hole() as hole:
                    await env.set_agent(agent.id, dial_address=hole.address)
                    holed.append((await _turn(env, chat.id, "workspace_stopped"))[0])
                await _start(env, ws)
            print(
                f"stopped workspace x{trials} (tool call → workspace_stopped): p50 "
                f"{pct(stopped, 50) * 1000:.1f}ms max {max(stopped) * 1000:.1f}ms "
                f"(message sent → result: max {max(stopped_turn) * 1000:.1f}ms); black-holed "
                f"address: p50 {pct(holed, 50) * 1000:.1f}ms max {max(holed) * 1000:.1f}ms"
            )

            # --- rebuild between turns ---------------------------------------------------
            repair, repair_tool = [], []
            for _ in range(trials):
                await _turn(env, chat.id, None)
                await env.rebuild(ws)
                tool_s, turn_s = await _turn(env, chat.id, None)
                repair.append(turn_s)
                repair_tool.append(tool_s)
            print(
                f"rebuild repair x{trials} (message sent → first tool result on the new agent):"
                f" p50 {pct(repair, 50) * 1000:.1f}ms max {max(repair) * 1000:.1f}ms; the tool"
                f" call alone: p50 {pct(repair_tool, 50) * 1000:.1f}ms"
            )
            # --- the same, cold: a new worker that heard nothing of the stop or rebuild ----
            cold_holed, cold_repair, cold_dials = [], [], []
            for _ in range(trials):
                await _turn(env, chat.id, None)
                agent = (await env.graph.agents.latest_build_agents(ws))[0]
                await env.stop_worker()
                await env.stop_workspace(ws)
                with tcp_black_hole() as hole:
                    await env.set_agent(agent.id, dial_address=hole.address)
                    env.start_worker()
                    before = len(env.dialer.calls)
                    cold_holed.append((await _turn(env, chat.id, "workspace_stopped"))[0])
                    cold_dials.append(len(env.dialer.calls) - before)
                await _start(env, ws)
                await _turn(env, chat.id, None)
                await env.stop_worker()
                await env.rebuild(ws)
                env.start_worker()
                before = len(env.dialer.calls)
                cold_repair.append((await _turn(env, chat.id, None))[1])
                cold_dials.append(len(env.dialer.calls) - before - 1)  # the new agent's dial
            print(
                f"cold worker x{trials}: black-holed stopped workspace p50 "
                f"{pct(cold_holed, 50) * 1000:.1f}ms max {max(cold_holed) * 1000:.1f}ms; rebuild "
                f"repair (message sent → first tool result) p50 {pct(cold_repair, 50) * 1000:.1f}ms"
                f" max {max(cold_repair) * 1000:.1f}ms; stale dials max {max(cold_dials)}"
            )
    return {
        "warm_turn_resolution_queries": max(queries),
        "warm_turn_dials": max(dials),
        "cache_hit_tool_db_reads": max(reads),
        "stopped_error_s_p50": round(pct(stopped, 50), 4),
        "stopped_error_s_max": round(max(stopped), 4),
        "blackhole_stopped_error_s_max": round(max(holed), 4),
        "rebuild_repair_s_p50": round(pct(repair, 50), 4),
        "rebuild_repair_s_max": round(max(repair), 4),
        "cold_blackhole_stopped_error_s_max": round(max(cold_holed), 4),
        "cold_rebuild_repair_s_p50": round(pct(cold_repair, 50), 4),
        "cold_stale_dials_max": max(cold_dials),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()
    result = asyncio.run(main(max(args.trials, 1)))
    print(json.dumps(result))
