"""Liveness benchmark: how fast a frozen agent becomes ``agent_unreachable``.

Runs a real server in-process (uvicorn on loopback, SQLite, local backend), a real
``tether agent`` process, the real chat worker with a scripted model, and production
liveness settings (session ping 1 s, ``agent_unreachable_after_s`` 3 s). Per trial:

* **freeze mid-call**: a turn runs ``execute`` of a long command; once it printed, the agent
  is frozen (SIGSTOP). Measured: freeze → the tool result (``agent_unreachable``, with the
  output so far). Before this change: 49.5 s for a command with a 10 s timeout (its read
  timeout 10 + 30 s, then a redial), ``dial_timeout``, output lost.
* **frozen before the turn**: with the agent still frozen and known down, a new turn's
  execute call: message sent → result (the old path waited for MCP discovery, ≈35 s, first).
* **resume**: SIGCONT → the agent's session is back (the next turn works unaided).

Prints figures, then one JSON object as the last line.

    .venv/bin/python -m bench.liveness [--trials 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import tempfile
import time
import uuid
from pathlib import Path

import bench.testpath  # noqa: F401  (before the tests' modules)
from tests.integration.binding.binding_env import BindingEnv, binding_env
from tether.domain.chat import ChatStatus
from tether.llm.scripted import Call, Say, script_model


async def _until(predicate: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.01)


async def _result(env: BindingEnv, chat_id: uuid.UUID) -> dict[str, object]:
    chat = await env.wait_status(chat_id, timeout=120)
    assert chat.status is ChatStatus.WAITING, chat.last_error
    return (await env.results(chat_id, "execute"))[-1]


async def trial(env: BindingEnv, ws: uuid.UUID, tmp: Path, n: int) -> dict[str, float]:
    marker = tmp / f"started-{n}"
    command = f"echo partial-{n}; touch {marker}; sleep 60"
    long_call = script_model([Call("execute", {"command": command, "timeout": "120s"}), Say("k")])
    chat = await env.new_chat(f"freeze {n}", long_call, workspace_id=ws)
    await _until(marker.exists, 30)
    await asyncio.sleep(0.5)  # let the output line reach the server (flushed every 50 ms)
    pid = await env.agent_pid(ws)
    agent = (await env.graph.agents.latest_build_agents(ws))[0]
    os.kill(pid, signal.SIGSTOP)
    try:
        froze = time.monotonic()
        result = await _result(env, chat.id)
        assert result.get("error_code") == "agent_unreachable", result
        assert f"partial-{n}" in str(result.get("result")), result
        span = env.spans(chat.id, "execute")[-1]
        assert span.ended is not None
        freeze_to_unreachable = span.ended - froze

        env.models[chat.id] = script_model([Call("execute", {"command": "true"}), Say("k")])
        sent = time.monotonic()
        await env.send(chat.id, "again")
        result = await _result(env, chat.id)
        assert result.get("error_code") == "agent_unreachable", result
        frozen_turn = env.spans(chat.id, "execute")[-1]
        assert frozen_turn.ended is not None
        frozen_before_turn = frozen_turn.ended - sent
    finally:
        os.kill(pid, signal.SIGCONT)
    resumed = time.monotonic()
    await _until(lambda: not env.graph.liveness.is_down(agent.id), 30)
    resume_to_up = time.monotonic() - resumed
    result = (await env.results(chat.id, "execute"))[-1]
    sent = time.monotonic()
    await env.send(chat.id, "after resume")
    result = await _result(env, chat.id)
    assert not result.get("is_error"), result
    return {
        "freeze_to_unreachable_s": freeze_to_unreachable,
        "frozen_before_turn_s": frozen_before_turn,
        "resume_to_session_up_s": resume_to_up,
        "turn_after_resume_s": time.monotonic() - sent,
    }


async def main(trials: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        async with binding_env(Path(tmp), agent_ping_interval_s=1.0, ttl_sweep_s=3600.0) as env:
            assert env.settings.agent_unreachable_after_s == 3.0
            ws, _ = await env.create_workspace()
            env.start_worker()
            runs = [await trial(env, ws, Path(tmp), n) for n in range(trials)]
    out: dict[str, float] = {"trials": float(trials)}
    for key in runs[0]:
        values = [r[key] for r in runs]
        out[f"{key}_max"] = round(max(values), 3)
        out[f"{key}_min"] = round(min(values), 3)
        print(f"{key}: min {min(values):.2f}s max {max(values):.2f}s over {trials} trials")
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()
    result = asyncio.run(main(max(args.trials, 1)))
    print(json.dumps(result))
