"""The agent's session WebSocket to the server: hello/manifest, pings, lifecycle, logs.

One :class:`AgentSession` keeps reconnecting (0.1 s doubling up to ``max_backoff_s``; slower,
``auth_retry_s``, when the server rejects the agent token) until it is closed. Frames queued
with :meth:`send` survive a reconnect: a frame leaves the outbox only after it was sent.
After a reconnect the agent re-sends ``hello`` and its current lifecycle state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable

from tether.agent.frames import (
    AgentFrame,
    FrameError,
    Hello,
    Lifecycle,
    Manifest,
    Ping,
    Shutdown,
    encode_frame,
    parse_server_frame,
)
from tether.agent.lifecycle import LifecycleState
from tether.agent.state import AgentState
from tether.agent.wsclient import ClientConnection, InvalidStatus, WebSocketError, connect
from tether.clock import Clock

log = logging.getLogger("tether.agent")

SESSION_PATH = "/api/v1/agent/session"
_OUTBOX_LIMIT = 10_000


def session_url(server_url: str) -> str:
    """``http(s)://host`` → ``ws(s)://host/api/v1/agent/session``."""
    base = server_url.rstrip("/")
    if base.startswith("https://"):
        base = "wss://" + base[len("https://") :]
    elif base.startswith("http://"):
        base = "ws://" + base[len("http://") :]
    return base + SESSION_PATH


class AgentSession:
    """Owns the session connection. Run :meth:`run` in a task; :meth:`close` ends it."""

    def __init__(
        self,
        *,
        server_url: str,
        token: str,
        state: AgentState,
        hello: Callable[[], Hello],
        on_manifest: Callable[[Manifest, bool], None],
        on_shutdown: Callable[[], None],
        clock: Clock,
        max_backoff_s: float = 2.0,
        auth_retry_s: float = 5.0,
        open_timeout_s: float = 10.0,
        server_socket: str | None = None,
    ) -> None:
        self._url = session_url(server_url)
        self._token = token
        self._state = state
        self._hello = hello
        self._on_manifest = on_manifest
        self._on_shutdown = on_shutdown
        self._clock = clock
        self._max_backoff = max_backoff_s
        self._auth_retry = auth_retry_s
        self._open_timeout = open_timeout_s
        # A sandbox without network reaches the server through the backend's relay socket.
        self._via = server_socket
        self._outbox: deque[AgentFrame] = deque(maxlen=_OUTBOX_LIMIT)
        self._wake = asyncio.Event()
        self._empty = asyncio.Event()
        self._empty.set()
        self._manifests = 0
        self._ws: ClientConnection | None = None
        self._served = False
        self.connected = asyncio.Event()

    # --- what the rest of the agent calls -------------------------------------------------

    def send(self, frame: AgentFrame) -> None:
        """Queue a frame; it is sent as soon as a connection is up."""
        self._outbox.append(frame)
        self._empty.clear()
        self._wake.set()

    def report_lifecycle(self, state: LifecycleState) -> None:
        """Record the new lifecycle state and tell the server."""
        self._state.set_lifecycle(state)
        self.send(Lifecycle(state=state))

    async def flush(self, timeout_s: float) -> bool:
        """Wait until every queued frame was sent (or ``timeout_s``); True when drained."""
        try:
            await asyncio.wait_for(self._empty.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        """Close the current connection (bounded); the owner then cancels the run task."""
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 1.0)

    # --- the connection loop ----------------------------------------------------------------

    async def run(self) -> None:
        """Connect, serve, reconnect — forever, until cancelled."""
        delay = 0.1
        while True:
            self._served = False
            try:
                async with connect(
                    self._url,
                    additional_headers={"Authorization": f"Bearer {self._token}"},
                    open_timeout=self._open_timeout,
                    close_timeout=1.0,
                    unix_path=self._via,
                ) as ws:
                    self._ws = ws
                    await self._serve(ws)
            except InvalidStatus as exc:
                status = exc.status_code
                if status in (401, 403):
                    log.error(
                        "server rejected the agent token (HTTP %s); retrying in %gs",
                        status,
                        self._auth_retry,
                    )
                    await self._clock.sleep(self._auth_retry)
                    continue
                log.warning("session handshake failed: HTTP %s", status)
            except (OSError, TimeoutError, WebSocketError, FrameError) as exc:
                log.info("session connection lost: %s", exc)
            finally:
                self._ws = None
                self.connected.clear()
            if self._served:  # a connection that worked starts the backoff over
                delay = 0.1
            await self._clock.sleep(delay)
            delay = min(delay * 2, self._max_backoff)

    async def _serve(self, ws: ClientConnection) -> None:
        await ws.send(encode_frame(self._hello()))
        frame = parse_server_frame(await asyncio.wait_for(ws.recv(), self._open_timeout))
        if isinstance(frame, Shutdown):
            self._on_shutdown()
            return
        if not isinstance(frame, Manifest):
            raise WebSocketError("the server did not answer hello with a manifest")
        self._served = True
        reconnect = self._manifests > 0
        self._manifests += 1
        if reconnect:
            await ws.send(encode_frame(Lifecycle(state=self._state.lifecycle)))
        self._on_manifest(frame, not reconnect)
        self.connected.set()
        sender = asyncio.create_task(self._sender(ws, frame.ping_interval_s))
        receiver = asyncio.create_task(self._receiver(ws, frame.silence_timeout_s))
        try:
            done, _ = await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sender, receiver):
                task.cancel()
            await asyncio.gather(sender, receiver, return_exceptions=True)
        for task in done:
            task.result()  # re-raise the connection error, if any

    async def _sender(self, ws: ClientConnection, ping_interval_s: float) -> None:
        next_ping = self._clock.monotonic()
        while True:
            self._wake.clear()
            while self._outbox:
                await ws.send(encode_frame(self._outbox[0]))
                self._outbox.popleft()
            self._empty.set()
            now = self._clock.monotonic()
            if now >= next_ping:
                await ws.send(encode_frame(Ping()))
                next_ping = now + ping_interval_s
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), next_ping - now)

    async def _receiver(self, ws: ClientConnection, silence_timeout_s: float | None) -> None:
        """Read server frames; a server silent for ``silence_timeout_s`` (it pings every
        interval) is treated as a lost connection, so the loop reconnects."""
        while True:
            try:
                raw = await asyncio.wait_for(ws.recv(), silence_timeout_s)
            except TimeoutError:
                raise TimeoutError(f"no frame from the server for {silence_timeout_s:g}s") from None
            try:
                frame = parse_server_frame(raw)
            except FrameError:
                log.warning("ignoring an unknown frame from the server")
                continue
            if isinstance(frame, Shutdown):
                log.info("server asked the agent to shut down")
                self._on_shutdown()
            elif isinstance(frame, Manifest):
                log.info("ignoring a repeated manifest")
