"""The benchmarks' HTTP client, in processes of their own (``python -m bench.client``), so the
server process's CPU time is the server's alone and a turn ends when the user's UI would see
it end: on the chat's Server-Sent Events stream, over the socket.

A client process is driven by :class:`Clients` in the bench process: one JSON command per
line on its stdin, answers as JSON lines on its stdout. It prints ``{"ready": pid}`` once
started, then per command:

* ``{"op": "chats", "workspaces": [...], "turns": n, "concurrency": c, "follow": f}``: one
  new chat per entry of ``workspaces`` (``POST /api/v1/chats`` bound to it: the first turn),
  then ``n − 1`` more turns each (``POST …/messages``), ``c`` chats at a time (all when
  null). ``follow="chat"``: each chat's stream is opened when the chat is made and stays
  open for all its turns, this command's and later ones, until the process exits (a UI with
  the chat open); ``"turn"``: opened after each message was accepted, from that message on,
  and closed at the turn's end. The chats join the process's pool for ``poisson``.
* ``{"op": "poisson", "rate": r, "duration": d, "seed": s}``: Poisson arrivals at ``r``/s for
  ``d`` s, each a message to a random chat of the pool with no turn in flight
  (``bench.benchlib.poisson``), followed on the chat's open stream or on one of the turn's
  own.

The answer to a command is one header line ``{"done": op, "results": k, "cpu_s", …}`` (the
process's CPU seconds during the command, ``window_s`` and ``skipped`` for ``poisson``), then
``k`` result lines, one per turn: ``chat``, ``turn`` (its index in the chat's command), the
times ``sent`` (just before the message's request), ``end`` (the turn's final status read off
the stream) and, for ``poisson``, ``scheduled`` (the arrival's time in the schedule), plus
``status`` (``waiting``, ``error``, or ``failed: …`` when a request or the stream failed).
Results are written only after the command's last turn, so the bench process reads nothing
while it measures the server.

Times are :func:`bench.benchlib.now`: ``CLOCK_MONOTONIC``, one clock for every process on
the machine, so the bench process matches them with the turns' start times it records in
the server (``ChatTimers``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.benchlib import IDLE, now, poisson

TURN_TIMEOUT_S = 120.0
START_TIMEOUT_S = 60.0  # a client process's start-up (imports, then "ready")
REPO = Path(__file__).resolve().parents[1]  # where `python -m bench.client` runs
TOKEN_ENV = "BENCH_CLIENT_TOKEN"  # the API token, kept off the command line


class Follower:
    """One chat's stream, read by a task of its own: every final status with the time it
    arrived and the message ``seq`` of its event id (None for the id-less status snapshot and
    polls)."""

    def __init__(self, api: httpx.AsyncClient, chat_id: uuid.UUID, after: str) -> None:
        self.ends: list[tuple[int | None, float, str]] = []
        self._arrived = asyncio.Event()
        self._task = asyncio.create_task(self._read(api, chat_id, after))

    async def _read(self, api: httpx.AsyncClient, chat_id: uuid.UUID, after: str) -> None:
        async with api.stream(
            "GET",
            f"/api/v1/chats/{chat_id}/stream",
            headers={"Last-Event-ID": after},
            timeout=httpx.Timeout(60.0, read=None),  # a stream is quiet between turns
        ) as stream:
            stream.raise_for_status()
            event = data = ""
            seq: int | None = None
            async for line in stream.aiter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("id:"):
                    seq = int(line[3:].strip().split(".", 1)[0])
                elif line.startswith("data:"):
                    data = line[5:]
                elif not line:  # the end of one event
                    if event == "status":
                        status = json.loads(data).get("status")
                        if status in IDLE:
                            self.ends.append((seq, now(), str(status)))
                            self._arrived.set()
                    event = data = ""
                    seq = None

    async def end(self, seq: int, accepted: float) -> tuple[str, float]:
        """The final status of the turn of the user message ``seq`` (accepted at ``accepted``)
        and when it arrived: the first one whose event id is at or after ``seq``, or an
        id-less one that arrived after ``accepted`` (the chat was then pending, so any final
        status it shows is this turn's). Bounded by ``TURN_TIMEOUT_S``."""
        async with asyncio.timeout(TURN_TIMEOUT_S):
            while True:
                for i, (at_seq, t, status) in enumerate(self.ends):
                    if (at_seq is not None and at_seq >= seq) or (at_seq is None and t > accepted):
                        del self.ends[: i + 1]
                        return status, t
                if self._task.done():
                    self._task.result()  # the stream's error, if it failed
                    raise RuntimeError("the stream ended before the turn did")
                self._arrived.clear()
                waiter = asyncio.ensure_future(self._arrived.wait())
                try:
                    await asyncio.wait({waiter, self._task}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waiter.cancel()

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task


class Client:
    """What one client process does: its API client and its pool of chats."""

    def __init__(self, api: httpx.AsyncClient) -> None:
        self.api = api
        self.pool: list[uuid.UUID] = []
        self.followers: dict[uuid.UUID, Follower] = {}  # the chats followed all along

    async def _send(self, chat_id: uuid.UUID | None, workspace: str) -> tuple[uuid.UUID, int]:
        """A message: to a new chat on ``workspace`` when ``chat_id`` is None. The chat and the
        message's seq (0 for a new chat: all its statuses are its first turn's)."""
        if chat_id is None:
            r = await self.api.post(
                "/api/v1/chats", json={"content": "turn 1", "workspace_id": workspace}
            )
            r.raise_for_status()
            return uuid.UUID(r.json()["id"]), 0
        r = await self.api.post(f"/api/v1/chats/{chat_id}/messages", json={"content": "go"})
        r.raise_for_status()
        return chat_id, int((r.json().get("message") or {}).get("seq", 0))

    async def _turn(
        self, chat_id: uuid.UUID | None, workspace: str, follower: Follower | None, keep: bool
    ) -> tuple[dict[str, Any], Follower | None]:
        """One turn, followed on ``follower``; when None, on a stream opened once the message
        was accepted, kept open for the chat's next turns (returned) when ``keep``, else
        closed at the turn's end."""
        result: dict[str, Any] = {"chat": str(chat_id) if chat_id else None, "sent": now()}
        opened: Follower | None = None
        try:
            chat_id, seq = await self._send(chat_id, workspace)
            accepted = now()
            result["chat"] = str(chat_id)
            if follower is None:
                follower = opened = Follower(self.api, chat_id, f"{seq}.0")
            result["status"], result["end"] = await follower.end(seq, accepted)
        except (httpx.HTTPError, TimeoutError, RuntimeError, ValueError) as exc:
            result["status"], result["end"] = f"failed: {exc!r}", now()
        finally:
            if opened is not None and not keep:
                await opened.close()
                follower = None
        return result, follower

    async def chats(
        self, workspaces: list[str], turns: int, concurrency: int | None, follow: str
    ) -> list[dict[str, Any]]:
        gate = asyncio.Semaphore(concurrency or max(1, len(workspaces)))
        keep = follow == "chat"

        async def one(workspace: str) -> list[dict[str, Any]]:
            out: list[dict[str, Any]] = []
            chat_id: uuid.UUID | None = None
            follower: Follower | None = None
            async with gate:
                for turn in range(turns):
                    result, follower = await self._turn(chat_id, workspace, follower, keep)
                    out.append({**result, "turn": turn})
                    if result["status"] != "waiting":
                        if follower is not None:
                            await follower.close()
                        return out
                    chat_id = uuid.UUID(result["chat"])
            if chat_id is not None:
                self.pool.append(chat_id)
                if follower is not None:
                    self.followers[chat_id] = follower
            return out

        return [r for chat in await asyncio.gather(*(one(w) for w in workspaces)) for r in chat]

    async def poisson(
        self, rate: float, duration: float, seed: int
    ) -> tuple[list[dict[str, Any]], float, int]:
        async def send(chat_id: uuid.UUID, scheduled: float) -> dict[str, Any]:
            follower = self.followers.get(chat_id)  # else a stream for this turn
            result, _ = await self._turn(chat_id, "", follower, keep=False)
            return {**result, "scheduled": scheduled, "turn": 0}

        return await poisson(send, self.pool, rate, duration, random.Random(seed), clock=now)


async def _serve(url: str, token: str) -> None:
    """The client process: commands from stdin, answers on stdout (see the module's doc)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    limits = httpx.Limits(max_connections=2000, max_keepalive_connections=200)
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60, limits=limits
    ) as api:
        client = Client(api)
        print(json.dumps({"ready": os.getpid()}), flush=True)
        while line := await reader.readline():
            cmd = json.loads(line)
            cpu0, t0 = time.process_time(), now()
            header: dict[str, Any] = {"done": cmd["op"]}
            if cmd["op"] == "chats":
                results = await client.chats(
                    cmd["workspaces"], cmd["turns"], cmd.get("concurrency"), cmd["follow"]
                )
            elif cmd["op"] == "poisson":
                results, header["window_s"], header["skipped"] = await client.poisson(
                    cmd["rate"], cmd["duration"], cmd["seed"]
                )
            else:
                raise SystemExit(f"unknown op {cmd['op']!r}")
            header.update(results=len(results), cpu_s=time.process_time() - cpu0)
            header["wall_s"] = now() - t0
            out = [json.dumps(header), *(json.dumps(r) for r in results)]
            sys.stdout.write("\n".join(out) + "\n")
            sys.stdout.flush()
        for follower in client.followers.values():
            await follower.close()


@dataclass
class Answer:
    """A command's answer from every client process: the per-turn results of all, the
    header of each."""

    results: list[dict[str, Any]]
    headers: list[dict[str, Any]]

    @property
    def cpu_s(self) -> float:
        return sum(h["cpu_s"] for h in self.headers)


class Clients:
    """``n`` client processes (``python -m bench.client``) of one server; :meth:`run` sends
    each its command and returns once all have answered."""

    def __init__(self, procs: list[asyncio.subprocess.Process]) -> None:
        self.procs = procs

    @classmethod
    async def start(cls, url: str, token: str, n: int = 1) -> Clients:
        procs: list[asyncio.subprocess.Process] = []
        clients = cls(procs)
        try:
            for _ in range(n):
                procs.append(
                    await asyncio.create_subprocess_exec(
                        sys.executable,
                        "-m",
                        "bench.client",
                        url,
                        env={**os.environ, TOKEN_ENV: token},
                        cwd=REPO,
                        stdin=asyncio.subprocess.PIPE,
                        stdout=asyncio.subprocess.PIPE,
                        limit=2**24,
                    )
                )
            async with asyncio.timeout(START_TIMEOUT_S):
                for proc in procs:
                    assert proc.stdout is not None
                    line = await proc.stdout.readline()
                    if not line:
                        raise RuntimeError(f"client process {proc.pid} exited at start-up")
        except BaseException:
            await clients.close()
            raise
        return clients

    async def run(
        self,
        commands: list[dict[str, Any]],
        *,
        timeout_s: float,
        on_answered: Callable[[], Awaitable[None] | None] | None = None,
    ) -> Answer:
        """Command ``i`` to process ``i``; their answers, within ``timeout_s``.
        ``on_answered`` runs once every header arrived, before the results are read (the
        end of the measured phase)."""
        assert len(commands) == len(self.procs)
        for proc, cmd in zip(self.procs, commands, strict=True):
            assert proc.stdin is not None
            proc.stdin.write((json.dumps(cmd) + "\n").encode())
        async with asyncio.timeout(timeout_s):
            headers = list(await asyncio.gather(*(self._line(p) for p in self.procs)))
            if on_answered is not None:
                done = on_answered()
                if done is not None:
                    await done
            results: list[dict[str, Any]] = []
            for proc, header in zip(self.procs, headers, strict=True):
                results.extend([await self._line(proc) for _ in range(header["results"])])
        return Answer(results, headers)

    @staticmethod
    async def _line(proc: asyncio.subprocess.Process) -> dict[str, Any]:
        assert proc.stdout is not None
        line = await proc.stdout.readline()
        if not line:
            raise RuntimeError(f"client process {proc.pid} exited (code {await proc.wait()})")
        return dict(json.loads(line))

    async def close(self) -> None:
        """Close the processes' stdin (they exit) and wait for them; kill one that does not
        exit in 10 s."""
        for proc in self.procs:
            if proc.stdin is not None and not proc.stdin.is_closing():
                proc.stdin.close()
        for proc in self.procs:
            try:
                async with asyncio.timeout(10.0):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()


if __name__ == "__main__":
    asyncio.run(_serve(sys.argv[1], os.environ[TOKEN_ENV]))
