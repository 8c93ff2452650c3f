"""Streamed foreground exec against a real agent (issue #9 §2): output is recorded by the
agent as the command runs, the command outlives a caller that went away, and it can be read
again by its process id."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from support.agent_procs import RunningAgent
from tether.agent.processes import KEEP_FINISHED_FOREGROUND
from tether.agentconn import AgentClient
from tether.errors import AgentRequestFailed


async def test_streamed_exec_returns_the_result_and_the_command_stays_readable(
    client: AgentClient,
) -> None:
    result = await client.exec("echo one; echo two >&2", timeout_s=10)
    assert result.exit_code == 0 and result.output == "one\ntwo\n"
    assert result.process_id is not None
    again = await client.process_output(result.process_id)
    assert not again.running and again.exit_code == 0 and again.output == "one\ntwo\n"
    # foreground commands are readable by id but not listed as background processes
    listed = await client.process_list()
    assert result.process_id not in {p.process_id for p in listed.processes}


async def test_command_outlives_a_caller_that_went_away(agent: RunningAgent) -> None:
    headers = {"Authorization": f"Bearer {agent.secret}"}
    body = {
        "command": "echo early; sleep 0.5; echo late",
        "timeout_s": 10,
        "stream": True,
    }
    lines: list[dict[str, object]] = []
    async with (
        httpx.AsyncClient(base_url=f"http://{agent.address}", headers=headers) as http,
        http.stream("POST", "/exec", json=body) as response,
    ):
        assert response.headers["content-type"].startswith("application/x-ndjson")
        async for line in response.aiter_lines():
            lines.append(json.loads(line))
            if any("output" in x and "early" in str(x["output"]) for x in lines):
                break  # hang up mid-command, as a server that lost the agent does
    process_id = lines[0]["process_id"]
    assert isinstance(process_id, str)
    c = agent.client()
    try:
        for _ in range(200):
            out = await c.process_output(process_id)
            if not out.running:
                break
            await asyncio.sleep(0.05)
        assert not out.running and out.exit_code == 0, out
        assert out.output == "early\nlate\n"  # it ran to the end although nobody listened
    finally:
        await c.aclose()


async def test_streamed_exec_timeout_is_enforced_by_the_agent(client: AgentClient) -> None:
    result = await client.exec("echo start; sleep 30", timeout_s=0.5)
    assert result.timed_out and result.exit_code == -1
    assert result.output == "start\n"


async def test_only_the_most_recent_foreground_commands_are_kept(client: AgentClient) -> None:
    first = await client.exec("echo first", timeout_s=5)
    assert first.process_id is not None
    # one more than kept: all but the last are surely reaped when the last one answers
    count = KEEP_FINISHED_FOREGROUND + 1
    later = [await client.exec(f"echo {i}", timeout_s=5) for i in range(count)]
    with pytest.raises(AgentRequestFailed) as info:
        await client.process_output(first.process_id)
    assert info.value.status == 404
    assert later[-1].process_id is not None
    assert (await client.process_output(later[-1].process_id)).output == f"{len(later) - 1}\n"
