"""The chat worker (docs/behaviour.md §3.1): claim pending chats, run their turns, keep heartbeats,
recover stale chats, honour interrupts, and keep each chat's agent connection across turns.

* **Claim**: up to ``max_claim`` pending chats per round (``ChatStore.claim``), woken by a
  ``chats`` bus hint or every ``poll_s`` (polling is the truth).
* **Heartbeat** every ``heartbeat_s`` for all running turns in one statement; a chat missing
  from the answer was taken over → its turn is cancelled with no final side effects (WK-2).
* **Workspace usage**: at claim time (unless this worker recorded it in the last half
  heartbeat) and with every heartbeat, the workspaces of the worker's running chats are
  touched in one statement (``last_used_at``, the TTL clock; WK-7).
* **Stale sweep** every ``stale_sweep_s``: running chats whose heartbeat is older than
  ``stale_after_s`` go back to pending (WK-3) — except this worker's own live turns: a
  late heartbeat of a loaded event loop is not a dead worker. A dead replica's chat is
  therefore running again elsewhere within ``stale_after_s + stale_sweep_s`` (+ one poll).
  Tool calls are at-least-once: the call in flight when a replica died has an
  ``interrupted`` result and the model decides whether to repeat it.
* **Interrupt**: per running turn, the ``chat:<id>`` channel (``{"type": "interrupt"}``) and
  a row poll at least every ``interrupt_poll_s`` (status ``interrupting``).
* **Builds**: a ``builds`` event for workspace W evicts the cached connection of every chat
  bound to W (docs/behaviour.md §4.7); an agent whose session went silent (``on_agent_down``)
  loses its cached connections the same way.
* **Shutdown** (the ``run`` task is cancelled): turns are cancelled, the worker's chats go
  back to pending (``release_worker``) — committed messages stay; another worker resumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta

from tether.cancellation import cancel_and_wait
from tether.channels import CHATS, chat_channel
from tether.chatd.binding import BindingStore, ChatConnections, binding_of
from tether.chatd.mcptools import McpToolCache
from tether.chatd.taskowner import TaskOwner
from tether.chatd.tools.base import ChatdDeps, ChatState
from tether.chatd.turn import TurnControl, TurnRunner
from tether.chatd.turn.agents import forget_turn_agent
from tether.clock import within
from tether.domain.chat import Chat, ChatStatus
from tether.ids import new_id
from tether.observability.hooks import observe_turn
from tether.workspaces import events

log = logging.getLogger(__name__)


@dataclass
class _Running:
    task: asyncio.Task[None]
    control: TurnControl


class ChatWorker:
    def __init__(
        self,
        deps: ChatdDeps,
        runner: TurnRunner,
        *,
        binding_store: BindingStore,
        worker_id: uuid.UUID | None = None,
        poll_s: float = 1.0,
        max_claim: int = 10,
        heartbeat_s: float = 2.0,
        stale_after_s: float = 10.0,
        stale_sweep_s: float | None = None,
        interrupt_poll_s: float = 0.5,
        validation_delay_s: float = 0.25,
        dial_timeout_s: float = 10.0,
        chat_idle_s: float = 300.0,
    ) -> None:
        self.worker_id = worker_id or new_id()
        self._deps = deps
        self._runner = runner
        self._binding_store = binding_store
        self._poll_s = poll_s
        self._max_claim = max_claim
        self._heartbeat_s = heartbeat_s
        self._stale_after_s = stale_after_s
        self._stale_sweep_s = stale_sweep_s if stale_sweep_s is not None else stale_after_s / 5
        self._interrupt_poll_s = min(interrupt_poll_s, 1.0)
        self._validation_delay_s = validation_delay_s
        self._dial_timeout_s = dial_timeout_s
        self._running: dict[uuid.UUID, _Running] = {}
        self._states: dict[uuid.UUID, ChatState] = {}
        # when each chat's last turn here ended (clock.monotonic); see forget_idle
        self._idle_since: dict[uuid.UUID, float] = {}
        self._chat_idle_s = chat_idle_s
        self._wake = asyncio.Event()
        self._drain = TaskOwner("chat-worker-drain")
        self._touched: dict[uuid.UUID, float] = {}  # workspace → when its usage was recorded

    # --- introspection (tests, benchmarks) -----------------------------------------------

    @property
    def running(self) -> set[uuid.UUID]:
        return set(self._running)

    def state(self, chat_id: uuid.UUID) -> ChatState | None:
        return self._states.get(chat_id)

    @property
    def mcp_cache(self) -> McpToolCache | None:
        return self._runner.mcp_cache

    def wake(self) -> None:
        self._wake.set()

    # --- main loop -----------------------------------------------------------------------

    async def run(self) -> None:
        """Run until cancelled; then release this worker's chats (see module docstring)."""
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._guard("heartbeat", self._heartbeat_loop))
                tg.create_task(self._guard("stale-sweep", self._stale_loop))
                tg.create_task(self._guard("builds", self._builds_loop))
                tg.create_task(self._guard("wake", self._wake_loop))
                if self._deps.config_cache is not None:  # admin settings behind the bus
                    tg.create_task(self._guard("chat-config", self._deps.config_cache.run))
                try:
                    hinted = True
                    while True:
                        await self._claim_round(tg, look_first=not hinted)
                        hinted = await self._wait_for_work()
                except asyncio.CancelledError:
                    for running in self._running.values():
                        running.control.reason = running.control.reason or "shutdown"
                    raise
        finally:
            await asyncio.shield(self._shutdown())

    async def _wait_for_work(self) -> bool:
        """Until a wake-up (bus event, sweep) or ``poll_s`` of the injected clock; True when
        woken (a hint that work is there: the next claim skips its read-only look)."""
        woken = False
        with contextlib.suppress(TimeoutError):
            await within(self._deps.clock, self._poll_s, self._wake.wait())
            woken = True
        self._wake.clear()
        return woken

    async def _shutdown(self) -> None:
        try:
            released = await self._deps.chats.release_worker(self.worker_id)
            if released:
                log.info("worker %s released %d chat(s)", self.worker_id, len(released))
                await self._deps.bus.publish(CHATS, {"released": len(released)})
        except Exception:
            log.exception("releasing chats failed; the stale sweep will recover them")
        for state in self._states.values():
            await state.conns.aclose()
        self._states.clear()
        if self._runner.titles is not None:  # background titles end with the worker
            await self._runner.titles.aclose()
        await self._drain.aclose()

    async def _guard(self, name: str, loop: Callable[[], object]) -> None:
        """Keep a background loop alive: a crash is logged and the loop restarted."""
        while True:
            try:
                await loop()  # type: ignore[misc]
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("chat worker %s loop crashed; restarting", name)
                await self._deps.clock.sleep(self._poll_s)

    async def _claim_round(self, tg: asyncio.TaskGroup, *, look_first: bool = False) -> None:
        """Claim what is pending; a timed poll (``look_first``) looks read-only first."""
        try:
            claimed = await self._deps.chats.claim_turns(
                self.worker_id, limit=self._max_claim, look_first=look_first
            )
        except Exception:
            log.exception("claiming chats failed")
            return
        chats = [c.chat for c in claimed]
        for c in claimed:
            # This process may never have seen the chat (restart, another replica ran it):
            # base the stream ids on its stored history, or resuming subscribers drop the
            # deltas. The claim read the last seq with the row.
            self._deps.hub.ensure_base(c.chat.id, c.last_seq)
            self._start(tg, c.chat, compaction_number=c.compaction_number, last_seq=c.last_seq)
        bound = self._not_touched_lately(c.workspace_id for c in chats)
        if bound:  # WK-7: a turn start is workspace use (off the turn's critical path)
            tg.create_task(self.bump_usage(bound), name="workspace-usage")

    def _start(
        self,
        tg: asyncio.TaskGroup,
        chat: Chat,
        *,
        compaction_number: int | None = None,
        last_seq: int | None = None,
    ) -> None:
        self._idle_since.pop(chat.id, None)
        state = self._state_for(chat)
        state.compaction_number = compaction_number  # as of the claim (turn/prepare.py reads it)
        state.last_seq = last_seq
        control = TurnControl()
        task = tg.create_task(
            observe_turn(
                self._deps.metrics,
                chat,
                control,
                self._runner.run(chat, state, self.worker_id, control),
            ),
            name=f"turn-{chat.id}",
        )
        self._running[chat.id] = _Running(task, control)
        tg.create_task(self._supervise(chat.id, task, control), name=f"watch-{chat.id}")

    def _state_for(self, chat: Chat) -> ChatState:
        binding = binding_of(chat)
        state = self._states.get(chat.id)
        if state is None:
            state = ChatState(
                ChatConnections(
                    binding,
                    store=self._binding_store,
                    dialer=self._deps.dialer,
                    clock=self._deps.clock,
                    drain=self._drain,
                    validation_delay=self._validation_delay_s,
                    dial_timeout=self._dial_timeout_s,
                    metrics=self._deps.metrics,
                )
            )
            self._states[chat.id] = state
        else:
            snap = state.conns.binding
            if (snap.workspace_id, snap.build_id, snap.agent_id) != (
                binding.workspace_id,
                binding.build_id,
                binding.agent_id,
            ):
                state.conns.select_workspace(binding)  # re-bound between turns
        return state

    async def _supervise(
        self, chat_id: uuid.UUID, task: asyncio.Task[None], control: TurnControl
    ) -> None:
        """Watch one turn for interrupts; forget it when it ends."""
        try:
            async with self._deps.bus.subscribe(chat_channel(chat_id)) as sub:
                while not task.done():
                    waiter = asyncio.ensure_future(sub.get(timeout=self._interrupt_poll_s))
                    done, _ = await asyncio.wait(
                        {waiter, task}, return_when=asyncio.FIRST_COMPLETED
                    )
                    if task in done:
                        await cancel_and_wait(waiter)
                        break
                    if not control.finishing and await self._interrupt_requested(chat_id):
                        control.reason = control.reason or "interrupt"
                        task.cancel()
                        break
            await asyncio.wait({task})  # its outcome is read below, in finally
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("chat %s: turn supervision failed", chat_id)
        finally:
            if task.done():
                exc = None if task.cancelled() else task.exception()
                if exc is not None:
                    log.error("chat %s: turn crashed: %r", chat_id, exc)
                at_capacity = len(self._running) >= self._max_claim
                self._running.pop(chat_id, None)
                self._idle_since[chat_id] = self._deps.clock.monotonic()
                if at_capacity:  # capacity freed: claim what waited for it
                    self._wake.set()
                # A message promoted by finish_turn wakes the claim through the bus.

    async def _interrupt_requested(self, chat_id: uuid.UUID) -> bool:
        try:
            chat = await self._deps.chats.get(chat_id)
        except Exception:
            return False
        return chat.status is ChatStatus.INTERRUPTING or chat.interrupt_requested

    # --- background loops ------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        while True:
            await self._deps.clock.sleep(self._heartbeat_s)
            await self.heartbeat_once()
            await self.forget_idle()

    async def forget_idle(self) -> list[uuid.UUID]:
        """Drop what this worker keeps for chats without a turn here for ``chat_idle_s``:
        the cached agent connection (closed) and the stream hub's state. A server holding
        thousands of idle chats then holds no socket or buffer per chat; the chat's next
        turn dials its agent again (docs/operations.md, "Memory")."""
        cutoff = self._deps.clock.monotonic() - self._chat_idle_s
        idle = [c for c, t in self._idle_since.items() if t <= cutoff and c not in self._running]
        for chat_id in idle:
            del self._idle_since[chat_id]
            state = self._states.pop(chat_id, None)
            self._deps.hub.forget(chat_id)
            if state is not None:
                forget_turn_agent(state)  # by reference counting, not a full collection
                await state.conns.aclose()
        return idle

    async def heartbeat_once(self) -> None:
        """One heartbeat round; turns of chats no longer ours are cancelled (WK-2)."""
        ids = list(self._running)
        if not ids:
            return
        owned = await self._deps.chats.heartbeat(self.worker_id, ids)
        for chat_id in ids:
            running = self._running.get(chat_id)
            if (
                chat_id not in owned
                and running is not None
                and not running.task.done()
                and not running.control.finishing  # finish_turn checks ownership itself
            ):
                log.warning("chat %s: lost ownership; cancelling its turn", chat_id)
                running.control.reason = "lost"
                running.task.cancel()
        states = [self._states.get(chat_id) for chat_id in ids if chat_id in owned]
        await self.bump_usage(s.conns.binding.workspace_id for s in states if s is not None)

    def _not_touched_lately(self, workspace_ids: Iterable[uuid.UUID | None]) -> list[uuid.UUID]:
        """The workspaces whose usage this worker has not recorded in the last half
        heartbeat: a chat's turns can start several times a second, and ``last_used_at``
        (the TTL clock) needs no finer grain; running chats are bumped by the heartbeat."""
        now = self._deps.clock.monotonic()
        window = self._heartbeat_s / 2
        self._touched = {w: t for w, t in self._touched.items() if now - t < window}
        return [w for w in {w for w in workspace_ids if w is not None} if w not in self._touched]

    async def bump_usage(self, workspace_ids: Iterable[uuid.UUID | None]) -> None:
        """Record workspace usage for chats running on this worker, in one statement
        (docs/behaviour.md §3.1, WK-7): a chat actively using its workspace keeps the workspace's
        TTL deadline moving. Failures are logged; the next heartbeat retries."""
        ids = {w for w in workspace_ids if w is not None}
        if not ids:
            return
        now = self._deps.clock.monotonic()
        self._touched.update(dict.fromkeys(ids, now))
        try:
            await self._deps.workspace_store.touch_many(ids)
        except Exception as err:
            log.warning("recording workspace usage failed: %s", err)

    async def _stale_loop(self) -> None:
        while True:
            await self._deps.clock.sleep(self._stale_sweep_s)
            await self.sweep_once()

    async def sweep_once(self) -> list[uuid.UUID]:
        """Return chats with stale heartbeats to pending (WK-3), except this worker's own
        live turns."""
        older_than = self._deps.clock.now() - timedelta(seconds=self._stale_after_s)
        live = [cid for cid, r in self._running.items() if not r.task.done()]
        recovered = await self._deps.chats.recover_stale(older_than, keep=live)
        if recovered:
            log.warning("recovered %d stale chat(s)", len(recovered))
            self._wake.set()
        return recovered

    async def _wake_loop(self) -> None:
        async with self._deps.bus.subscribe(CHATS) as sub:
            async for event in sub:
                if event.get("edited") or event.get("reconnected"):  # chatd/edits.py
                    chat_id = event.get("chat_id")
                    self._runner.forget_history(uuid.UUID(chat_id) if chat_id else None)
                self._wake.set()

    async def _builds_loop(self) -> None:
        async with self._deps.bus.subscribe(events.BUILDS) as sub:
            async for event in sub:
                self.on_build_event(event)

    def on_build_event(self, event: dict[str, object]) -> None:
        """Evict the cached connections of chats bound to the event's workspace (all of
        them when the bus says events may have been lost)."""
        workspace = event.get("workspace_id")
        for state in self._states.values():
            bound = state.conns.binding.workspace_id
            if event.get("reconnected") or (bound is not None and str(bound) == workspace):
                state.conns.evict(build_changed=True)
                if self._runner.mcp_cache is not None:  # docs/behaviour.md §4.7: MCP tools too
                    self._runner.mcp_cache.invalidate(state.conns.binding.chat_id)

    def on_agent_down(self, agent_id: uuid.UUID, reason: str) -> None:
        """An agent's session went silent (:mod:`tether.agentconn.liveness`): evict the
        cached connections to it; in-flight requests on them already failed."""
        for state in self._states.values():
            cached = state.conns.cached_agent
            if cached is not None and cached.id == agent_id:
                log.info(
                    "chat %s: evicting the connection to agent %s: %s",
                    state.conns.binding.chat_id,
                    agent_id,
                    reason,
                )
                state.conns.evict()
                if self._runner.mcp_cache is not None:
                    self._runner.mcp_cache.invalidate(state.conns.binding.chat_id)
