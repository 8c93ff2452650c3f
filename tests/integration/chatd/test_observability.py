"""Observability against the real thing (uvicorn on loopback, real agents, the real worker,
a scripted model): ``GET /metrics`` shows every family after a build, a dial and a turn and
is refused without an admin token; the JSON log lines of one turn carry its ids across the
worker, the dial and the agent session; no secret reaches a log line."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from chatd_env import Chatd
from prometheus_client.parser import text_string_to_metric_families

from support.server import fast_settings, free_port, running_server
from tether.domain.chat import ChatStatus
from tether.llm.scripted import Call, Say, script_model
from tether.observability.logs import JsonFormatter

FAMILIES = (
    "tether_turns",
    "tether_turn_duration_seconds",
    "tether_turn_overhead_seconds",
    "tether_model_call_duration_seconds",
    "tether_tool_call_duration_seconds",
    "tether_dials",
    "tether_dial_duration_seconds",
    "tether_binding_repairs",
    "tether_mcp_discovery_duration_seconds",
    "tether_mcp_discovery_failures",
    "tether_agent_sessions_connected",
    "tether_build_duration_seconds",
    "tether_db_pool_connections_in_use",
    "tether_db_pool_size",
    "tether_chats_pending",
    "tether_queued_messages",
    "tether_event_loop_tasks",
    "tether_event_loop_lag_seconds",
    "tether_gc_pause_seconds",
)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def families(text: str) -> set[str]:
    return {f.name for f in text_string_to_metric_families(text)}


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """Every record of the process (DEBUG and up) as JSON lines, for the test's duration."""
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield buf
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def lines(buf: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buf.getvalue().splitlines() if line.strip()]


async def _turn_on_workspace(chatd: Chatd) -> Any:
    ws, _ = await chatd.create_workspace()
    chatd.start_worker()
    model = script_model([Call("execute", {"command": "true"}), Say("done")])
    chat = await chatd.new_chat("go", model, workspace_id=ws.id)
    chat = await chatd.wait_status(chat.id)
    assert chat.status is ChatStatus.WAITING, chat.last_error
    return chat


async def test_metrics_show_every_family_after_a_build_a_dial_and_a_turn(chatd: Chatd) -> None:
    await _turn_on_workspace(chatd)
    r = await chatd.server.client.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    assert families(r.text) >= set(FAMILIES)
    got = samples(r.text)
    assert got[("tether_turns_total", (("outcome", "ok"),))] == 1
    assert got[("tether_turn_duration_seconds_count", ())] == 1
    assert got[("tether_turn_overhead_seconds_count", ())] == 1
    # two model requests (the tool call, then the answer) and one tool call
    assert got[("tether_model_call_duration_seconds_count", (("outcome", "ok"),))] == 2
    assert got[("tether_tool_call_duration_seconds_count", (("outcome", "ok"),))] == 1
    assert got[("tether_dials_total", (("outcome", "ok"),))] >= 1
    assert got[("tether_binding_repairs_total", ())] >= 1  # the agent is bound lazily
    assert got[("tether_mcp_discovery_duration_seconds_count", (("outcome", "ok"),))] >= 1
    assert got[("tether_agent_sessions_connected", ())] == 1
    build = (("outcome", "succeeded"), ("transition", "start"))
    assert got[("tether_build_duration_seconds_count", build)] == 1
    assert got[("tether_chats_pending", ())] == 0


async def test_overhead_excludes_model_and_tool_time(chatd: Chatd) -> None:
    """A tool that takes 0.5 s makes the turn at least that long, but not its overhead."""
    ws, _ = await chatd.create_workspace()
    chatd.start_worker()
    model = script_model([Call("execute", {"command": "sleep 0.5"}), Say("done")])
    chat = await chatd.new_chat("go", model, workspace_id=ws.id)
    assert (await chatd.wait_status(chat.id)).status is ChatStatus.WAITING
    got = samples((await chatd.server.client.get("/metrics")).text)
    total = got[("tether_turn_duration_seconds_sum", ())]
    overhead = got[("tether_turn_overhead_seconds_sum", ())]
    assert total >= 0.5
    assert overhead < total - 0.45  # the old "overhead = duration" would fail here


async def test_metrics_refused_without_admin(chatd: Chatd) -> None:
    server = chatd.server
    async with httpx.AsyncClient(base_url=server.url) as anonymous:
        r = await anonymous.get("/metrics")
        assert r.status_code == 401 and "tether_" not in r.text
        r = await anonymous.get("/metrics", headers={"Authorization": "Bearer tt_forged"})
        assert r.status_code == 401 and "tether_" not in r.text
    member = await server.user_client("mia")
    async with member:
        r = await member.get("/metrics")
        assert r.status_code == 403 and "tether_" not in r.text


async def test_metrics_bind_serves_a_separate_listener(tmp_path: Path) -> None:
    port = free_port()
    settings = fast_settings(tmp_path, run_chatd=False, metrics_bind=f"127.0.0.1:{port}")
    async with running_server(settings) as server, httpx.AsyncClient() as scraper:
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):  # the listener starts with the server's background jobs
            try:
                r = await scraper.get(f"{url}/metrics")
                break
            except httpx.ConnectError:
                await server.graph.clock.sleep(0.05)
        assert r.status_code == 200 and "tether_turns" in r.text
        assert (await scraper.get(f"{url}/api/v1/users")).status_code == 404  # nothing else
        assert (await scraper.post(f"{url}/metrics")).status_code == 404


async def test_json_logs_follow_one_turn_across_components(
    chatd: Chatd, json_logs: io.StringIO
) -> None:
    chat = await _turn_on_workspace(chatd)
    chat = await chatd.chats.get(chat.id)
    records = lines(json_logs)
    by_chat = [r for r in records if r.get("chat_id") == str(chat.id)]
    turn = [r for r in by_chat if r["msg"] in ("turn started", "turn ended")]
    assert [r["msg"] for r in turn] == ["turn started", "turn ended"]
    request_id = turn[0]["request_id"]
    assert request_id.startswith("turn-") and turn[1]["request_id"] == request_id
    assert turn[0]["workspace_id"] == str(chat.workspace_id)
    # the dial, inside the turn: same turn id, and the agent it reached
    dials = [r for r in by_chat if r["msg"].startswith("dial ")]
    assert dials and all(r["request_id"] == request_id for r in dials)
    assert dials[-1]["msg"].startswith("dial ok") and dials[-1]["agent_id"] == str(chat.agent_id)
    # the agent's session (another component, its own request): found by the agent id
    session = [r for r in records if r["msg"] == "agent session opened"]
    assert {r["agent_id"] for r in session} == {str(chat.agent_id)}  # (once, or on reconnect)
    assert session[0]["workspace_id"] == str(chat.workspace_id)
    assert session[0]["build_id"] == str(chat.build_id)
    builds = [r for r in records if r["logger"] == "tether.observe" and "build" in r["msg"]]
    assert builds and builds[0]["build_id"] == str(chat.build_id)


async def test_no_secret_values_in_logs(chatd: Chatd, json_logs: io.StringIO) -> None:
    server = chatd.server
    chat = await _turn_on_workspace(chatd)
    chat = await chatd.chats.get(chat.id)
    agent = await server.graph.agents.find(chat.agent_id)
    assert agent is not None and agent.dial_secret
    # the attack: credentials handed to the server in places that get logged
    stolen = "tt_" + "x" * 43
    async with httpx.AsyncClient(base_url=server.url) as anonymous:
        await anonymous.get("/metrics", headers={"Authorization": f"Bearer {stolen}"})
    logging.getLogger("tether.test").warning("leaked %s and Bearer %s", server.token, stolen)
    text = json_logs.getvalue()
    assert "turn started" in text  # the logs were captured
    key = server.graph.server_key
    assert key is not None
    for secret in (server.token, stolen, agent.dial_secret, key.dial_secret(agent.id)):
        assert secret not in text
    assert repr(key._key)[2:-1] not in text
    assert "[redacted]" in text
    assert not re.search(r"\b(tt|agt)_[A-Za-z0-9_-]{32}", text)  # no user or agent token


async def test_queue_depth_and_sessions_follow_the_state(chatd: Chatd) -> None:
    """The gauges move both ways: a chat no worker has claimed is pending, a stopped
    workspace's agent session is no longer counted."""

    async def gauges() -> tuple[float, float]:
        got = samples((await chatd.server.client.get("/metrics")).text)
        return got[("tether_chats_pending", ())], got[("tether_agent_sessions_connected", ())]

    ws, _ = await chatd.create_workspace()
    assert await gauges() == (0, 1)
    await chatd.new_chat("nobody runs this yet", script_model([Say("later")]))  # no worker
    assert await gauges() == (1, 1)
    await chatd.stop_workspace(ws.id)
    deadline = asyncio.get_running_loop().time() + 10
    while (await gauges())[1] != 0:
        assert asyncio.get_running_loop().time() < deadline, "session still counted"
        await asyncio.sleep(0.05)
    assert await gauges() == (1, 0)
