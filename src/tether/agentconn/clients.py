"""The one cache of HTTP clients to workspace agents, shared by every server-side caller.

Both the API's exec proxy (``api/routers/workspaces.py``) and each chat's binding
(``chatd/binding/adapters.py``, docs/behaviour.md §4.4) borrow from one :class:`AgentClients`.
A client is keyed by the agent id, the dial address and the secret's generation (a digest
of the secret): a rebuilt agent, a moved address or a new secret is a new client.

A caller gets a **handle** (:meth:`AgentClient.share`): the cached client's connections and
liveness signal with the caller's own extra headers (a chat's ids), so chats never see each
other's headers. Closing a handle gives it back; the cached client stays open while anyone
holds a handle, so evicting one chat's binding never closes a client another user holds.

A client is closed when nobody holds it and it is

* **retired**: its agent went down (:mod:`tether.agentconn.liveness`, at once), a newer
  client of the same agent replaced it (new address or secret, or it was down), or the
  cache closed;
* **idle** longer than ``idle_s`` (checked at every lease and give-back, injected clock), or
  the oldest of more than ``max_idle`` idle clients (``max_idle=0``: closed when given back).

So the open clients are at most ``max_idle`` plus the ones held at that moment. Closes run
as tasks this cache owns and awaits in :meth:`AgentClients.aclose`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

from tether.agentconn.client import AgentClient
from tether.agentconn.dial import proven
from tether.agentconn.liveness import AgentLiveness
from tether.clock import Clock, SystemClock
from tether.errors import AgentTransportError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClientKey:
    agent_id: uuid.UUID
    address: str
    secret_generation: str  # a digest: the key never holds the secret itself


def client_key(agent_id: uuid.UUID, address: str, secret: str) -> ClientKey:
    digest = hashlib.sha256(secret.encode()).hexdigest()[:16]
    return ClientKey(agent_id, address, digest)


class _Entry:
    __slots__ = ("client", "holders", "idle_since", "key", "retired")

    def __init__(self, key: ClientKey, client: AgentClient, now: float) -> None:
        self.key = key
        self.client = client
        self.holders = 0
        self.idle_since = now
        self.retired = False


class AgentClients:
    """See the module docstring. ``connect_timeout``, ``request_timeout`` and
    ``exec_margin`` are every client's bounds (settings ``agent_connect_timeout_s``,
    ``agent_request_timeout_s``, ``exec_deadline_margin_s``)."""

    def __init__(
        self,
        *,
        connect_timeout: float,
        request_timeout: float,
        exec_margin: float = 5.0,
        liveness: AgentLiveness | None = None,
        max_idle: int = 64,
        idle_s: float = 60.0,
        clock: Clock | None = None,
    ) -> None:
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        self.exec_margin = exec_margin
        self.liveness = liveness
        self._max_idle = max_idle
        self._idle_s = idle_s
        self._clock = clock or SystemClock()
        self._entries: OrderedDict[ClientKey, _Entry] = OrderedDict()  # oldest use first
        self._closing: set[asyncio.Task[None]] = set()
        self._closed = False
        self._held_retired = 0  # retired clients somebody still holds
        if liveness is not None:
            liveness.add_listener(self._agent_down)

    # --- state (tests and metrics) -------------------------------------------------------

    @property
    def open_clients(self) -> int:
        """Cached clients plus retired ones still held."""
        return len(self._entries) + self._held_retired

    @property
    def idle_clients(self) -> int:
        return sum(1 for e in self._entries.values() if e.holders == 0)

    def holders(self, agent_id: uuid.UUID) -> int:
        """Handles out on the agent's cached client(s)."""
        return sum(e.holders for e in self._entries.values() if e.key.agent_id == agent_id)

    # --- borrowing -----------------------------------------------------------------------

    async def lease(
        self,
        agent_id: uuid.UUID,
        address: str,
        secret: str,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> AgentClient:
        """A handle on the agent's client (made on first use); close it to give it back."""
        if self._closed:
            raise AgentTransportError("the agent client cache is closed", sent=False)
        self._expire_idle()
        key = client_key(agent_id, address, secret)
        entry = self._entries.get(key)
        if entry is not None and entry.client.is_down:
            self._retire(entry)  # down since it was made: its requests would fail at once
            entry = None
        if entry is None:
            for other in [e for e in self._entries.values() if e.key.agent_id == agent_id]:
                self._retire(other)  # the agent moved or has a new secret
            entry = _Entry(key, self._new_client(agent_id, address, secret), self._now())
            self._entries[key] = entry
        self._entries.move_to_end(key)
        entry.holders += 1
        return entry.client.share(headers=headers, release=lambda: self._give_back(entry))

    @contextlib.asynccontextmanager
    async def borrow(
        self,
        agent_id: uuid.UUID,
        address: str,
        secret: str,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> AsyncIterator[AgentClient]:
        """:meth:`lease` for the duration of a block."""
        client = await self.lease(agent_id, address, secret, headers=headers)
        try:
            yield client
        finally:
            await client.aclose()

    async def dial(
        self,
        agent_id: uuid.UUID,
        address: str,
        secret: str,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> AgentClient:
        """A handle whose agent just answered ``GET /health`` (the errors of
        :func:`tether.agentconn.dial.dial`; the handle is given back on failure)."""
        client = await self.lease(agent_id, address, secret, headers=headers)
        return await proven(
            client, connect_timeout=self.connect_timeout, request_timeout=self.request_timeout
        )

    async def aclose(self) -> None:
        """Close every client, held or not (shutdown), and wait for the closes."""
        self._closed = True
        if self.liveness is not None:
            self.liveness.remove_listener(self._agent_down)
        entries, self._entries = list(self._entries.values()), OrderedDict()
        for entry in entries:
            entry.retired = True
            self._close_soon(entry.client)
        await self.closes_done()

    async def closes_done(self) -> None:
        """Wait until every close started so far has finished."""
        while self._closing:
            await asyncio.gather(*list(self._closing), return_exceptions=True)

    # --- internals -----------------------------------------------------------------------

    def _new_client(self, agent_id: uuid.UUID, address: str, secret: str) -> AgentClient:
        return AgentClient(
            address,
            secret,
            connect_timeout=self.connect_timeout,
            request_timeout=self.request_timeout,
            exec_margin=self.exec_margin,
            down=self.liveness.signal(agent_id) if self.liveness is not None else None,
        )

    async def _give_back(self, entry: _Entry) -> None:
        entry.holders -= 1
        if entry.holders > 0 or self._closed:
            return  # still held; or the cache closed every client already
        if entry.retired:
            self._held_retired -= 1
            self._close_soon(entry.client)
            return
        entry.idle_since = self._now()
        self._expire_idle()

    def _expire_idle(self) -> None:
        now = self._now()
        idle = [e for e in self._entries.values() if e.holders == 0]  # least recent use first
        excess = len(idle) - self._max_idle
        for entry in idle:
            if excess > 0 or now - entry.idle_since >= self._idle_s:
                self._retire(entry)
                excess -= 1

    def _agent_down(self, agent_id: uuid.UUID, reason: str) -> None:
        for entry in [e for e in self._entries.values() if e.key.agent_id == agent_id]:
            log.info("closing the client of agent %s: %s", agent_id, reason)
            self._retire(entry)

    def _retire(self, entry: _Entry) -> None:
        """Take ``entry`` out of the cache; close it now if nobody holds it, else when the
        last holder gives it back."""
        if self._entries.get(entry.key) is entry:
            del self._entries[entry.key]
        if entry.retired:
            return
        entry.retired = True
        if entry.holders == 0:
            self._close_soon(entry.client)
        else:
            self._held_retired += 1

    def _close_soon(self, client: AgentClient) -> None:
        try:
            task = asyncio.get_running_loop().create_task(
                _close_quietly(client), name=f"close-agent-client-{client.address}"
            )
        except RuntimeError:  # no loop (a listener called outside one): nothing to await on
            log.warning("agent client of %s not closed: no event loop", client.address)
            return
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _now(self) -> float:
        return self._clock.monotonic()


async def _close_quietly(client: AgentClient) -> None:
    try:
        await client.aclose()
    except Exception as err:
        log.warning("closing the agent client of %s failed: %s", client.address, err)
