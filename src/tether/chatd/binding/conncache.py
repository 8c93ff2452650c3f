"""One chat's connection to its workspace agent, kept by the worker across turns.

This is docs/behaviour.md §4.4 (Coder's ``getWorkspaceConn``, with tether's change): the cache
is per chat in the worker and survives turns, and a cache hit costs **nothing** — no store
read, no dial. Upstream re-read the agent row on every hit to check liveness; tether lets the
request prove liveness instead: a tool whose request fails with
:class:`~tether.errors.AgentTransportError` reports it (or uses :meth:`ChatConnections.run`),
the entry is evicted, and the next call goes once through the lazy-validation dial, which
repairs a stale binding or yields a typed error. Build-transition events call
:meth:`ChatConnections.evict` so stops and rebuilds are noticed without waiting.

Miss path: resolve the agent (:class:`~tether.chatd.binding.resolver.AgentResolver`), dial it with
lazy validation under ``dial_timeout``, persist a switched agent, cache the conn. Misses are
single-flight: concurrent callers wait for the one dial in progress and share its conn. The
agent dialled first is the bound one, unless the binding is known to be suspect: after a
build event the miss reads the latest build first, and after this turn's pre-dial gate read
it the miss dials the agent the gate found (docs/behaviour.md §4.3, §4.7).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Generic, Protocol, TypeVar

from tether.agentconn.execstream import copy_partial
from tether.chatd.binding.lazydial import close_quietly, dial_with_lazy_validation
from tether.chatd.binding.resolver import AgentResolver, BindingStore, gate_agent
from tether.chatd.binding.types import AgentRow, ChatBinding, Conn
from tether.chatd.taskowner import TaskOwner
from tether.clock import Clock
from tether.errors import (
    AgentTransportError,
    AgentUnreachable,
    ConnectorNotConfigured,
    NoRunningAgent,
    TetherError,
    WorkspaceChanged,
)
from tether.observability.metrics import Metrics

T = TypeVar("T")
C = TypeVar("C", bound=Conn)
C_co = TypeVar("C_co", bound=Conn, covariant=True)

log = logging.getLogger(__name__)

CHAT_ID_HEADER = "X-Tether-Chat-Id"
ANCESTOR_CHAT_IDS_HEADER = "X-Tether-Ancestor-Chat-Ids"
MAX_CONNECT_ATTEMPTS = 2


class Dialer(Protocol[C_co]):
    """Opens a connection to an agent (the real one builds a ``tether.agentconn`` client
    for ``agent.dial_address`` with ``agent.dial_secret``). Raises
    :class:`~tether.errors.AgentTransportError` when the agent cannot be reached."""

    async def dial(self, agent: AgentRow, *, headers: dict[str, str]) -> C_co: ...


class ChatConnections(Generic[C]):
    """The agent connection of one chat (docs/behaviour.md §4.4, cached across turns).

    Generic over the conn type the dialer returns (``tether.agentconn``'s client in
    production, ``FakeConn`` in tests), so tools get the concrete client back.

    ``validation_delay`` and ``dial_timeout`` are clock seconds (production: settings
    ``dial_validation_delay_s`` and ``dial_timeout_s``). Closes happen in ``drain``, which
    the worker owns and drains on shutdown.
    """

    def __init__(
        self,
        binding: ChatBinding,
        *,
        store: BindingStore,
        dialer: Dialer[C] | None,
        clock: Clock,
        drain: TaskOwner,
        validation_delay: float = 0.25,
        dial_timeout: float = 10.0,
        metrics: Metrics | None = None,
    ) -> None:
        self.resolver = AgentResolver(binding, store)
        self._metrics = metrics
        self._dialer = dialer
        self._clock = clock
        self._drain = drain
        self._validation_delay = validation_delay
        self._dial_timeout = dial_timeout
        self._conn: C | None = None
        self._conn_workspace_id: uuid.UUID | None = None
        self._miss_lock = asyncio.Lock()
        # The pre-dial gate's one memo: the check (in flight or done) and the resolver
        # generation it ended in (docs/behaviour.md §4.3).
        self._gate: asyncio.Task[AgentRow] | None = None
        self._gate_generation = -1
        # Set by a build event: the next miss checks the latest build before it dials.
        self._check_build_first = False

    # --- state ---------------------------------------------------------------------------

    @property
    def binding(self) -> ChatBinding:
        """The live binding snapshot."""
        return self.resolver.snapshot

    @property
    def cached_conn(self) -> C | None:
        return self._conn

    @property
    def cached_agent(self) -> AgentRow | None:
        return self.resolver.cached_agent

    def evict(self, *, build_changed: bool = False) -> None:
        """Forget the cached conn and agent; the conn is closed in the background.

        Called on a build-transition event for the chat's workspace (``build_changed``),
        after a transport failure, and by :meth:`select_workspace`. Never blocks. After a
        build event the binding is suspect, so the next miss checks the latest build
        before it dials (docs/behaviour.md §4.7): a stopped workspace is
        ``workspace_stopped`` at once and a rebuilt one dials its new agent, instead of
        dialling the old agent and validating only after ``validation_delay``.
        """
        if build_changed:
            self._check_build_first = True
        conn, self._conn, self._conn_workspace_id = self._conn, None, None
        self.resolver.clear()
        if conn is not None:
            self._drain.spawn(close_quietly(conn), name="close-evicted-conn", cancel_on_close=False)

    def select_workspace(self, binding: ChatBinding) -> None:
        """A tool bound the chat to a (new) workspace or build: adopt ``binding`` and drop
        everything cached for the old one."""
        self.resolver.reset(binding)
        self.evict()

    def report_failure(self, conn: C) -> None:
        """A request on ``conn`` failed at the transport level: evict it if it is still the
        cached one (a concurrent caller may already have replaced it)."""
        if conn is self._conn:
            self.evict()

    async def aclose(self) -> None:
        """End of the chat's life in this worker: drop (and close) the cached conn."""
        self.evict()
        # the gate's task keeps the context it was spawned in (a turn's: the agent's run
        # context, which leads back here); dropped, a forgotten chat is no reference cycle
        self._gate = None

    # --- acquiring -----------------------------------------------------------------------

    async def get_conn(self) -> C:
        """The chat's agent connection: cached (zero store calls, zero dials) or dialled.

        Raises :class:`ConnectorNotConfigured`, :class:`NoWorkspace`,
        :class:`WorkspaceStopped`, :class:`AgentSelectionError`, :class:`AgentUnreachable`,
        :class:`DialTimeout`, :class:`WorkspaceChanged`, or :class:`TetherError` for store
        failures; a cancelled caller gets :class:`asyncio.CancelledError`.
        """
        hit = self._hit()
        if hit is not None:
            return hit
        if self._dialer is None:
            raise ConnectorNotConfigured()
        async with self._miss_lock:
            hit = self._hit()  # a concurrent caller may have connected while we waited
            if hit is not None:
                return hit
            return await self._connect(self._dialer)

    async def run(self, fn: Callable[[Conn], Awaitable[T]], *, retry_request: bool = True) -> T:
        """Run ``fn(conn)``; on a transport failure evict, reconnect once, and (if
        ``retry_request``) run ``fn`` once more on the fresh conn.

        Pass ``retry_request=False`` for requests that must not run twice (a command that
        may already have started): the reconnect still happens, so the model learns the
        workspace's state, but the original transport error is raised — unless the failure
        happened before the request was sent (connect refused: e.g. a rebuilt workspace
        whose build event was lost), which is retried on the fresh connection.
        """
        conn = await self.get_conn()
        try:
            return await fn(conn)
        except (AgentTransportError, AgentUnreachable) as err:
            # AgentUnreachable here: the agent's session went silent mid-request (liveness).
            self.report_failure(conn)
            try:
                conn = await self.get_conn()  # typed errors (stopped, unreachable…) surface
            except TetherError as typed:
                copy_partial(err, typed)  # a command's output so far survives the error
                raise
            if isinstance(err, AgentUnreachable) or (not retry_request and err.sent):
                raise  # the request may have run: never run it twice
        try:
            return await fn(conn)
        except AgentTransportError as err:
            self.report_failure(conn)
            raise AgentUnreachable(
                f"workspace agent request failed after reconnecting: {err}"
            ) from err

    async def gate_agent_id(self) -> uuid.UUID:
        """The pre-dial gate for pre-LLM steps (docs/behaviour.md §4.3), memoised here and
        nowhere else. With a cached conn it answers from the cache (a warm turn makes no
        query). Otherwise one check — the latest build, or a resolution when the binding is
        incomplete; no agent evicts — is shared by every caller, and its answer (an agent id
        or a typed error) holds until :meth:`forget_gate` (a new turn, a workspace made
        ready), an eviction or a re-bind."""
        if self._hit() is not None and self.resolver.cached_agent is not None:
            return self.resolver.cached_agent.id
        gate = self._gate
        if gate is None or not self._holds(gate):
            gate = self._gate = self._drain.spawn(self._check_gate(), name="gate-agent-id")
        return (await asyncio.shield(gate)).id

    def forget_gate(self) -> None:
        """The next :meth:`gate_agent_id` checks again (a caller waiting on a check in
        flight still gets its answer)."""
        self._gate = None

    def _holds(self, gate: asyncio.Task[AgentRow]) -> bool:
        if not gate.done():
            return True  # in flight: share it
        if gate.cancelled() or not isinstance(gate.exception(), TetherError | None):
            return False  # an untyped failure is no answer
        return self._gate_generation == self.resolver.generation

    async def _check_gate(self) -> AgentRow:
        try:
            return await gate_agent(self.resolver, on_no_agent=self._gate_found_no_agent)
        finally:
            if self._gate is asyncio.current_task():  # not forgotten meanwhile
                self._gate_generation = self.resolver.generation

    def _gate_found_no_agent(self) -> None:
        # The binding is suspect as after a build event: the next miss checks the latest
        # build before it dials instead of dialling the stopped workspace's agent.
        self.evict(build_changed=True)

    def _gate_answer(self) -> AgentRow | None:
        """The agent the gate found in this turn, while its answer holds (no eviction or
        re-bind since): the latest build's chat agent as of the gate's check."""
        gate = self._gate
        if gate is None or not gate.done() or not self._holds(gate) or gate.exception():
            return None
        return gate.result()

    def _hit(self) -> C | None:
        if self._conn is None:
            return None
        if self._conn_workspace_id != self.resolver.snapshot.workspace_id:
            self.evict()  # snapshot moved to another workspace: the conn is not ours
            return None
        return self._conn

    async def _connect(self, dialer: Dialer[C]) -> C:
        for _ in range(MAX_CONNECT_ATTEMPTS):
            conn = await self._connect_once(dialer)
            if conn is not None:
                return conn
        raise WorkspaceChanged("chat workspace changed while connecting")

    async def _connect_once(self, dialer: Dialer[C]) -> C | None:
        """One miss-path attempt; None means "re-bound meanwhile, try again"."""
        resolver = self.resolver
        agent = await resolver.ensure_workspace_agent()
        workspace_id = agent.workspace_id
        generation = resolver.generation
        rows: dict[uuid.UUID, AgentRow] = {agent.id: agent}
        headers = self._headers()
        target = agent  # the agent dialled first: the bound one, or the latest build's
        if self._check_build_first:
            try:
                target = await resolver.latest_agent(workspace_id)
            except NoRunningAgent:
                self.evict()
                raise
        else:
            checked = self._gate_answer()  # this turn's gate read the latest build already
            if checked is not None and checked.workspace_id == workspace_id:
                target = checked
        rows[target.id] = target

        async def validate(ws_id: uuid.UUID) -> uuid.UUID:
            latest = await resolver.latest_agent(ws_id)
            rows[latest.id] = latest  # the switch dial needs the row, not only the id
            return latest.id

        async def dial(agent_id: uuid.UUID) -> C:
            return await dialer.dial(rows[agent_id], headers=headers)

        try:
            lazy = dial_with_lazy_validation(
                bound_agent_id=target.id,
                workspace_id=workspace_id,
                dial=dial,
                validate=validate,
                delay=self._validation_delay,
                clock=self._clock,
                drain=self._drain,
                timeout=self._dial_timeout,
            )
            result = await (lazy if self._metrics is None else self._metrics.dial(lazy))
        except NoRunningAgent:
            self.evict()
            raise
        conn = result.conn
        try:
            if resolver.generation != generation:
                self._close(conn)  # evicted or re-bound during the dial (GC-19)
                return None
            switched = result.agent_id != agent.id
            if switched and not await resolver.adopt_switched_agent(rows[result.agent_id]):
                self._close(conn)
                return None
        except BaseException as err:
            self._close(conn)  # failed or cancelled before the conn was cached (GC-21)
            if isinstance(err, Exception) and not isinstance(err, TetherError):
                raise TetherError(f"persist workspace agent binding: {err}") from err
            raise
        self._conn, self._conn_workspace_id = conn, workspace_id
        self._check_build_first = False
        return conn

    def _close(self, conn: Conn) -> None:
        self._drain.spawn(close_quietly(conn), name="close-unused-conn", cancel_on_close=False)

    def _headers(self) -> dict[str, str]:
        snapshot = self.resolver.snapshot
        ancestors = [str(snapshot.parent_chat_id)] if snapshot.parent_chat_id else []
        return {
            CHAT_ID_HEADER: str(snapshot.chat_id),
            ANCESTOR_CHAT_IDS_HEADER: json.dumps(ancestors),
        }
