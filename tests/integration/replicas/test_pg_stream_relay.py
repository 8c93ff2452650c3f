"""A process that only serves the API (no chat worker, no provisioner) relays the stream of a
chat another process runs: every event the running process's hub publishes — status, part
deltas, persisted messages — reaches a client streaming through the API-only process, in
order, with the running process's ids (tether.chatd.relay over PostgreSQL NOTIFY)."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from support.server import fast_settings, running_server
from tether.chatd.relay import RESYNC, StreamRelay
from tether.chatd.stream import ChatStreamHub, StreamEvent, parse_event_id
from tether.db.pgbus import PostgresBus

pytestmark = [pytest.mark.postgres, pytest.mark.integration]

MODEL = "python:support.ui_models:MODEL"  # anything but its keywords: an echo, word by word
IDLE = ("waiting", "error")


async def _wait_idle(client: httpx.AsyncClient, chat_id: str) -> None:
    async with asyncio.timeout(30):
        while True:
            if (await client.get(f"/api/v1/chats/{chat_id}")).json()["status"] in IDLE:
                return
            await asyncio.sleep(0.05)


async def _read_stream(
    client: httpx.AsyncClient,
    chat_id: str,
    after: str,
    out: list[tuple[str, str, Any]],
    subscribed: asyncio.Event,
) -> None:
    """Events with an id, until a final status with an id (one the turn published).
    ``subscribed`` is set at the first line: the stream sends its first event (the chat's
    status) after it has subscribed to the hub and the relay."""
    async with client.stream(
        "GET", f"/api/v1/chats/{chat_id}/stream", headers={"Last-Event-ID": after}
    ) as stream:
        event, ev_id = "", ""
        async for line in stream.aiter_lines():
            subscribed.set()
            if line.startswith("event:"):
                event = line.removeprefix("event:").strip()
            elif line.startswith("id:"):
                ev_id = line.removeprefix("id:").strip()
            elif line.startswith("data:"):
                data = json.loads(line.removeprefix("data:"))
                if ev_id:
                    out.append((ev_id, event, data))
                    if event == "status" and data.get("status") in IDLE:
                        return
            elif not line:
                event, ev_id = "", ""


async def test_api_only_process_relays_every_event_of_a_turn_run_elsewhere(tmp_path, pg_db_url):
    shared = {
        "db_url": pg_db_url,
        "model": MODEL,
        "cli_config": tmp_path / "cli.json",
        "server_key_file": tmp_path / "server.key",
        "stream_auth_recheck_s": 30.0,
    }
    runner_settings = fast_settings(tmp_path / "runner", **shared)
    api_settings = fast_settings(tmp_path / "api", run_chatd=False, run_provisioner=False, **shared)
    async with running_server(runner_settings) as runner, running_server(api_settings) as api:
        assert "chat_worker" not in api.graph.extras  # the API-only process runs no turn
        r = await api.client.post("/api/v1/chats", json={"content": "warm up"})
        assert r.status_code == 201, r.text
        chat_id = r.json()["id"]
        await _wait_idle(api.client, chat_id)
        last = (await api.client.get(f"/api/v1/chats/{chat_id}/messages")).json()["messages"]
        after = f"{last[-1]['seq']}.999999"  # nothing of the first turn

        published: list[tuple[str, str, Any]] = []  # ground truth: the running process's hub

        recording = asyncio.Event()
        reading = asyncio.Event()

        async def record() -> None:
            async with runner.graph.hub.subscribe(uuid.UUID(chat_id)) as queue:
                recording.set()
                while True:
                    ev = await queue.get()
                    published.append((ev.id, ev.event, json.loads(json.dumps(ev.data))))
                    if ev.event == "status" and ev.data.get("status") in IDLE:
                        return

        seen: list[tuple[str, str, Any]] = []
        recorder = asyncio.create_task(record())
        reader = asyncio.create_task(_read_stream(api.client, chat_id, after, seen, reading))
        async with asyncio.timeout(30):  # both subscribed
            await recording.wait()
            await reading.wait()
        relay = api.graph.chat_service.stream_remote
        assert isinstance(relay, StreamRelay)
        deadline = asyncio.get_running_loop().time() + 30
        while not relay.live():  # the API process's relay listens
            assert asyncio.get_running_loop().time() < deadline, "the relay never listened"
            await asyncio.sleep(0.01)
        words = "alpha beta gamma delta epsilon zeta eta theta"
        r = await api.client.post(f"/api/v1/chats/{chat_id}/messages", json={"content": words})
        assert r.status_code == 200, r.text
        async with asyncio.timeout(30):
            await recorder
            await reader

    assert any(e == "message_part" for _, e, _ in published), published
    assert any(e == "status" and d["status"] == "running" for _, e, d in published)
    # every event of the turn, in the order the running process published it, same data
    ids = {i for i, _, _ in published}
    assert [ev for ev in seen if ev[0] in ids] == published
    # ids only increase; the only other events are the API process's own (the user message
    # and its pending status), which precede the turn's
    order = [parse_event_id(i) for i, _, _ in seen]
    assert order == sorted(order) and len(set(order)) == len(order), seen
    extra = [(i, e) for i, e, _ in seen if i not in ids]
    assert [e for _, e in extra] == ["message", "status"], extra
    assert order.index(parse_event_id(extra[-1][0])) < order.index(parse_event_id(published[0][0]))


async def _until(condition: Any) -> None:
    """Wait until ``condition()`` holds: a state of the bus, which offers nothing to wait on."""
    deadline = asyncio.get_running_loop().time() + 10
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.01)


async def test_events_offered_while_the_bus_is_down_come_back_as_a_resync(pg_dsn):
    """The sending replica's bus lost its connection: what it could not send reaches the
    other replicas' streams as RESYNC (re-read the database) once it is back, so their
    streams need no frequent poll (tether.chatd.follow.Pacing)."""
    async with (
        PostgresBus(pg_dsn, reconnect_delay_s=0.3) as a,
        PostgresBus(pg_dsn) as b,
    ):
        sender, receiver = StreamRelay(a), StreamRelay(b)
        hub = ChatStreamHub()
        hub.relay = sender.offer
        chat = uuid.uuid4()
        queue: asyncio.Queue[StreamEvent] = asyncio.Queue()
        with receiver.watch(chat, queue):
            receiving = asyncio.create_task(receiver.run())
            sending = asyncio.create_task(sender.run())
            try:
                async with asyncio.timeout(10):
                    await _until(lambda: sender.live() and receiver.live())
                    admin = await asyncpg.connect(pg_dsn)
                    try:
                        await admin.execute("SELECT pg_terminate_backend($1)", a._own_pid)
                    finally:
                        await admin.close()
                    await _until(lambda: not a.connected)
                    assert not sender.live()  # its streams poll every stream_poll_s now
                    hub.publish(chat, "status", {"status": "running"})  # cannot be sent
                    ev = await queue.get()
                assert ev.event == RESYNC
                assert sender.live()
            finally:
                for task in (receiving, sending):
                    task.cancel()
                await asyncio.gather(receiving, sending, return_exceptions=True)
