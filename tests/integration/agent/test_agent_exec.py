"""Exec and background processes against a real agent process."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from support.agent_procs import RunningAgent, pid_alive
from tether.agentconn import AgentClient
from tether.errors import AgentRequestFailed

pytestmark = pytest.mark.integration


async def poll(check, *, timeout: float = 5.0, interval: float = 0.05):  # type: ignore[no-untyped-def]
    """Await ``check()`` until it returns a truthy value, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(interval)


async def test_health(client: AgentClient) -> None:
    health = await client.health()
    assert health.status == "ok"
    assert health.lifecycle == "ready"
    assert health.uptime_s >= 0


async def test_requests_need_the_secret(agent: RunningAgent) -> None:
    async with httpx.AsyncClient(base_url=f"http://{agent.address}", trust_env=False) as raw:
        response = await raw.get("/health")
        assert response.status_code == 401
        assert response.json()["code"] == "unauthorized"
    wrong = AgentClient(agent.address, "wrong", connect_timeout=2, request_timeout=5)
    try:
        with pytest.raises(AgentRequestFailed) as info:
            await wrong.health()
        assert info.value.status == 401
        assert info.value.agent_code == "unauthorized"
    finally:
        await wrong.aclose()


async def test_exec_foreground_exit_codes_and_output(
    client: AgentClient, agent: RunningAgent
) -> None:
    ok = await client.exec("echo hello; echo oops >&2")
    assert (ok.exit_code, ok.timed_out, ok.truncated, ok.error) == (0, False, False, None)
    assert ok.output == "hello\noops\n"

    failed = await client.exec("echo partial; exit 3")
    assert failed.exit_code == 3
    assert failed.output == "partial\n"

    env = await client.exec('echo "$TETHER_CHAT_AGENT $PAGER $GIT_TERMINAL_PROMPT $TERM $PWD"')
    assert env.output.strip() == f"true cat 0 dumb {agent.project}"
    ws = await client.exec('echo "$TETHER_WORKSPACE_ID"; read line; echo "read=$?"')
    assert ws.output == "ws-test\nread=1\n"  # stdin is /dev/null: read hits EOF at once

    (agent.project / "sub").mkdir()
    sub = await client.exec("pwd", workdir="sub")
    assert sub.output.strip() == str(agent.project / "sub")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"timeout_s": 0}, "timeout_s"),
        ({"timeout_s": 3601}, "timeout_s"),
        ({"workdir": "missing-dir"}, "workdir"),
    ],
)
async def test_exec_rejects_invalid_input(
    client: AgentClient, kwargs: dict[str, object], field: str
) -> None:
    with pytest.raises(AgentRequestFailed) as info:
        await client.exec("true", **kwargs)  # type: ignore[call-overload]
    assert info.value.status == 400
    assert info.value.agent_code == "invalid_input"
    assert field in info.value.message


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"command": "echo a\0b"}, "command"),
        ({"command": "true", "env": {"A=B": "x"}}, "env.A=B"),
        ({"command": "true", "env": {"": "x"}}, "env."),
        ({"command": "true", "env": {"A": "x\0y"}}, "env.A"),
    ],
    ids=["nul-in-command", "equals-in-name", "empty-name", "nul-in-value"],
)
@pytest.mark.parametrize("mode", ["foreground", "background", "stream"])
async def test_exec_of_what_no_process_can_be_given_is_a_400_not_a_500(
    agent: RunningAgent, body: dict[str, object], field: str, mode: str
) -> None:
    """A NUL byte cannot pass into argv or the environment, nor "=" into a variable name:
    the agent says so (400 invalid_input naming the field) instead of failing the start (it
    used to answer 500 internal with a ValueError)."""
    if mode != "foreground":
        body = {**body, mode: True}
    async with httpx.AsyncClient(
        base_url=f"http://{agent.address}",
        headers={"Authorization": f"Bearer {agent.secret}"},
        trust_env=False,
    ) as raw:
        response = await raw.post("/exec", json=body)
        assert response.status_code == 400, response.text
        assert response.json()["code"] == "invalid_input"
        assert response.json()["message"].startswith(f"{field}: ")
        assert (await raw.get("/processes")).json() == {"processes": []}  # nothing started


async def test_exec_output_cap_cuts_on_a_utf8_boundary(client: AgentClient) -> None:
    # 1 ASCII byte, then 2-byte characters: byte 32768 falls in the middle of one.
    result = await client.exec("printf a; for i in $(seq 20000); do printf 'é'; done")
    assert result.exit_code == 0
    assert result.truncated is True
    data = result.output.encode("utf-8")
    assert len(data) == 32767
    assert "\ufffd" not in result.output
    assert result.output == "a" + "é" * 16383


async def test_exec_timeout_returns_partial_output(client: AgentClient) -> None:
    start = time.monotonic()
    result = await client.exec("echo started; sleep 5; echo never", timeout_s=0.5)
    elapsed = time.monotonic() - start
    assert result.timed_out is True
    assert result.exit_code == -1
    assert result.output == "started\n"
    assert result.error == "command timed out after 0.5s"
    assert elapsed < 3.0


async def test_background_process_output_list_and_signals(client: AgentClient) -> None:
    started = await client.exec("echo $$; echo ready; sleep 30", background=True)
    pid = started.process_id

    async def ready() -> bool:
        out = await client.process_output(pid)
        return "ready" in out.output

    await poll(ready)
    out = await client.process_output(pid)
    assert out.running is True and out.exit_code is None
    shell_pid = int(out.output.split()[0])

    listing = await client.process_list()
    [info] = [p for p in listing.processes if p.process_id == pid]
    assert info.running is True
    assert info.command.startswith("echo $$")

    await client.process_signal(pid, "terminate")

    async def exited() -> bool:
        return not (await client.process_output(pid)).running

    await poll(exited)
    assert (await client.process_output(pid)).exit_code == 143  # 128 + SIGTERM
    assert not pid_alive(shell_pid)

    # A process that ignores TERM only stops with kill.
    stubborn = await client.exec("trap '' TERM; echo ready; sleep 30", background=True)
    sid = stubborn.process_id

    async def stubborn_ready() -> bool:
        return "ready" in (await client.process_output(sid)).output

    await poll(stubborn_ready)
    await client.process_signal(sid, "terminate")
    await asyncio.sleep(0.3)
    assert (await client.process_output(sid)).running is True
    await client.process_signal(sid, "kill")

    async def stubborn_exited() -> bool:
        return not (await client.process_output(sid)).running

    await poll(stubborn_exited)
    assert (await client.process_output(sid)).exit_code == 137  # 128 + SIGKILL


async def test_process_errors(client: AgentClient) -> None:
    with pytest.raises(AgentRequestFailed) as missing:
        await client.process_output("nope")
    assert (missing.value.status, missing.value.agent_code) == (404, "not_found")
    with pytest.raises(AgentRequestFailed) as unknown_signal:
        await client.process_signal("nope", "kill")
    assert unknown_signal.value.status == 404
    started = await client.exec("sleep 5", background=True)
    with pytest.raises(AgentRequestFailed) as bad_signal:
        await client.process_signal(started.process_id, "hangup")
    assert bad_signal.value.status == 400
    await client.process_signal(started.process_id, "kill")


async def test_background_output_keeps_the_tail(client: AgentClient) -> None:
    started = await client.exec("seq 1 20000; echo done", background=True)

    async def finished() -> bool:
        return not (await client.process_output(started.process_id)).running

    await poll(finished)
    out = await client.process_output(started.process_id)
    assert out.exit_code == 0
    assert out.truncated is True
    assert out.output.endswith("19999\n20000\ndone\n")
    assert len(out.output.encode()) <= 32 * 1024


async def test_agent_stays_responsive_while_commands_run(
    agent: RunningAgent, client: AgentClient
) -> None:
    started = agent.home / "long-started"
    long = asyncio.create_task(client.exec(f"touch {started}; sleep 1"))

    async def running() -> bool:
        return started.exists()

    await poll(running)  # the long command runs while the health check is asked
    start = time.monotonic()
    health = await client.health()
    assert health.status == "ok"
    assert time.monotonic() - start < 0.3

    start = time.monotonic()
    results = await asyncio.gather(*(client.exec("sleep 0.2") for _ in range(4)))
    assert all(r.exit_code == 0 for r in results)
    assert time.monotonic() - start < 0.8
    assert (await long).exit_code == 0
