"""The session WebSocket, against a tiny websockets server acting as the tether server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from support.agent_procs import RunningAgent, pid_alive, start_agent, stop_agent
from tether.agent.protocol import Hello, Manifest, Ping, encode_frame, parse_agent_frame

pytestmark = pytest.mark.integration

TOKEN = "agent-token-123"
FRAME_TIMEOUT_S = 10.0


class FakeServer:
    """Accepts agent sessions, answers hello with a manifest, records every frame.

    ``frames`` gets ``(connection number, frame dict)``; pings are counted, not queued.
    """

    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest
        self.frames: asyncio.Queue[tuple[int, dict[str, Any]]] = asyncio.Queue()
        self.connections = 0
        self.pings = 0
        self.reject_next = 0  # answer this many handshakes with 401
        self.port = 0
        self._server: Server | None = None
        self.current: ServerConnection | None = None
        self.ping_every: float | None = None  # send server pings (liveness both ways)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _check(self, conn: ServerConnection, request: Request) -> Response | None:
        if request.path != "/api/v1/agent/session":
            return conn.respond(404, "not found\n")
        if request.headers.get("Authorization") != f"Bearer {TOKEN}" or self.reject_next:
            self.reject_next = max(0, self.reject_next - 1)
            return conn.respond(401, "bad token\n")
        return None

    async def _handle(self, conn: ServerConnection) -> None:
        self.connections += 1
        number = self.connections
        self.current = conn
        hello = parse_agent_frame(await conn.recv())
        assert isinstance(hello, Hello)
        await self.frames.put((number, hello.model_dump(mode="json")))
        await conn.send(encode_frame(self.manifest))
        pinger = asyncio.create_task(self._ping(conn))
        with contextlib.suppress(Exception):
            async for raw in conn:
                frame = json.loads(raw)
                if frame["type"] == "ping":
                    self.pings += 1
                else:
                    await self.frames.put((number, frame))
        pinger.cancel()

    async def _ping(self, conn: ServerConnection) -> None:
        if self.ping_every is None:
            return
        with contextlib.suppress(Exception):
            while True:
                await asyncio.sleep(self.ping_every)
                await conn.send(encode_frame(Ping()))

    async def start(self) -> None:
        self._server = await serve(
            self._handle, "127.0.0.1", self.port, process_request=self._check
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def next_frame(self, *, skip_logs: bool = False) -> tuple[int, dict[str, Any]]:
        while True:
            number, frame = await asyncio.wait_for(self.frames.get(), FRAME_TIMEOUT_S)
            if skip_logs and frame["type"] == "log":
                continue
            return number, frame

    async def collect_until_lifecycle(self, *states: str) -> list[dict[str, Any]]:
        """Frames up to and including the first lifecycle frame in ``states``."""
        seen: list[dict[str, Any]] = []
        while True:
            _, frame = await self.next_frame()
            seen.append(frame)
            if frame["type"] == "lifecycle" and frame["state"] in states:
                return seen


def manifest(script: str | None, *, directory: str | None = "project") -> Manifest:
    return Manifest(
        agent_id=uuid.uuid4(),
        name="main",
        workspace_id=uuid.uuid4(),
        directory=directory,
        startup_script=script,
        startup_script_timeout_s=30,
        ping_interval_s=0.1,
        env={"FROM_MANIFEST": "yes"},
    )


@contextlib.asynccontextmanager
async def session_agent(tmp_path: Path, server: FakeServer) -> AsyncIterator[RunningAgent]:
    agent = await start_agent(
        tmp_path,
        {
            "TETHER_AGENT_NO_SESSION": "",
            "TETHER_AGENT_URL": server.url,
            "TETHER_AGENT_TOKEN": TOKEN,
            "TETHER_AGENT_DIRECTORY": "",
            "TETHER_AGENT_RECONNECT_MAX_S": "0.2",
            "TETHER_AGENT_AUTH_RETRY_S": "0.2",
        },
    )
    try:
        yield agent
    finally:
        await stop_agent(agent.proc)


async def test_failing_startup_script_reports_start_error_and_logs(tmp_path: Path) -> None:
    server = FakeServer(manifest("echo hi; exit 3"))
    await server.start()
    try:
        async with session_agent(tmp_path, server) as agent:
            _, hello = await server.next_frame()
            assert hello["type"] == "hello"
            assert hello["address"] == agent.address
            # the server derives the dial secret itself: the agent never sends it
            assert "secret" not in hello and agent.secret not in json.dumps(hello)
            assert hello["pid"] == agent.proc.pid and hello["os"] == "linux"

            frames = await server.collect_until_lifecycle("start_error")
            states = [f["state"] for f in frames if f["type"] == "lifecycle"]
            assert states == ["starting", "start_error"]
            lines = [line for f in frames if f["type"] == "log" for line in f["lines"]]
            assert "hi" in lines
            assert any("exited with code 3" in line for line in lines)

            # The server can shut the agent down.
            assert server.current is not None
            await server.current.send(json.dumps({"type": "shutdown"}))
            frames = await server.collect_until_lifecycle("off")
            assert [f["state"] for f in frames if f["type"] == "lifecycle"] == [
                "shutting_down",
                "off",
            ]
            assert await asyncio.wait_for(agent.proc.wait(), FRAME_TIMEOUT_S) == 0
    finally:
        await server.stop()


async def test_ready_reconnect_without_rerun_and_sigterm(tmp_path: Path) -> None:
    script = 'echo run >> "$HOME/runs.txt"; echo "dir=$PWD env=$FROM_MANIFEST"'
    server = FakeServer(manifest(script))
    server.reject_next = 1  # the first handshake is refused: the agent must retry
    await server.start()
    try:
        async with session_agent(tmp_path, server) as agent:
            _, hello = await server.next_frame()
            assert hello["type"] == "hello"
            frames = await server.collect_until_lifecycle("ready", "start_error")
            assert [f["state"] for f in frames if f["type"] == "lifecycle"] == [
                "starting",
                "ready",
            ]
            lines = [line for f in frames if f["type"] == "log" for line in f["lines"]]
            assert f"dir={agent.project} env=yes" in lines
            assert server.pings > 0
            assert "rejected the agent token (HTTP 401)" in agent.stderr()

            client = agent.client()
            try:
                health = await client.health()
                assert health.lifecycle == "ready"
                assert (await client.exec("pwd")).output.strip() == str(agent.project)

                # The server restarts on the same port: the agent comes back by itself.
                await server.stop()
                await server.start()
                number, hello = await server.next_frame()
                assert (number, hello["type"]) == (2, "hello")
                _, state = await server.next_frame()
                assert state == {"type": "lifecycle", "state": "ready"}
                assert (agent.home / "runs.txt").read_text() == "run\n"  # not re-run

                sleeper = await client.exec("echo $$; exec sleep 100", background=True)
                deadline = time.monotonic() + FRAME_TIMEOUT_S
                while not (await client.process_output(sleeper.process_id)).output:
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.05)
                sleep_pid = int((await client.process_output(sleeper.process_id)).output)
                assert pid_alive(sleep_pid)
            finally:
                await client.aclose()

            agent.proc.send_signal(signal.SIGTERM)
            frames = await server.collect_until_lifecycle("off")
            assert [f["state"] for f in frames if f["type"] == "lifecycle"] == [
                "shutting_down",
                "off",
            ]
            assert await asyncio.wait_for(agent.proc.wait(), FRAME_TIMEOUT_S) == 0
            assert not pid_alive(sleep_pid)
    finally:
        await server.stop()


async def test_agent_reconnects_when_the_server_goes_silent(tmp_path: Path) -> None:
    """Liveness both ways: a server that pings keeps the session; one that goes silent (its
    TCP connection still up) past the manifest's ``silence_timeout_s`` is left and the agent
    reconnects by itself."""
    server = FakeServer(manifest(None).model_copy(update={"silence_timeout_s": 0.6}))
    server.ping_every = 0.1
    await server.start()
    try:
        async with session_agent(tmp_path, server):
            number, hello = await server.next_frame()
            assert (number, hello["type"]) == (1, "hello")
            await server.collect_until_lifecycle("ready")
            await asyncio.sleep(1.5)  # well past the silence timeout: pings keep it up
            assert server.connections == 1
            server.ping_every = None  # new connections get no pings …
            assert server.current is not None
            await server.current.close()  # … and the first one is replaced
            number, _ = await server.next_frame(skip_logs=True)
            assert number == 2
            started = time.monotonic()
            while server.connections < 3:  # connection 2 gets no pings: the agent leaves it
                assert time.monotonic() - started < FRAME_TIMEOUT_S, "stayed on a silent server"
                await asyncio.sleep(0.02)
            assert time.monotonic() - started >= 0.3  # it did wait for the silence bound
    finally:
        await server.stop()
