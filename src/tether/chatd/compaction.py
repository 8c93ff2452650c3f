"""Compaction: a summary replaces the older part of a chat's history for the model.

:class:`LongChat` is what the turn runner and the API use:

* :meth:`LongChat.view` — the history a turn works with: the instruction-file messages
  carried over by the latest compaction, then the messages after its cut (incrementally,
  through :class:`~tether.chatd.historycache.HistoryCache`);
* :meth:`LongChat.model_messages` — the same as pydantic-ai messages, led by the summary
  (with the user's original goal) when the chat was compacted;
* :meth:`LongChat.compact` / :meth:`LongChat.clear` — write a compaction record.

Where the cut falls and what every compaction keeps: ``elision.py``; how the summary is
written: ``summariser.py``. The record is written in one INSERT once the summary exists: a
crash, an interrupt or a takeover during summarisation leaves the previous history in force;
two concurrent compactions of the same state (two replicas, or ``/compact`` during a turn)
insert the same ``number`` and one of them fails (``db/compactions.py``). ``/clear`` keeps
the binding and the instruction files only: a fresh context.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from pydantic_ai import messages as pai
from pydantic_ai.models import Model

from tether.chatd import messages as cm
from tether.chatd.context import raw_tokens
from tether.chatd.elision import View, carried_messages, carry, cut_index, summary_text
from tether.chatd.graphparts import chats_and_hub
from tether.chatd.historycache import HistoryCache
from tether.chatd.stream import ChatStreamHub
from tether.chatd.summariser import SUMMARISE_TIMEOUT_S, SummariserFor, summarise, text_of
from tether.db.chats import ChatStore
from tether.db.compactions import Compaction, CompactionStore, UsageRow
from tether.errors import Conflict, InvalidInput
from tether.llm.budget import Budget, budget_of

log = logging.getLogger(__name__)

GOAL_MAX_CHARS = 4000


def turn_seq_of(messages: list[cm.ChatMessage]) -> int | None:
    """The ``seq`` of the user message that started the current turn (the last one)."""
    for msg in reversed(messages):
        if msg.role == "user" and msg.visibility == "both" and msg.seq is not None:
            return msg.seq
    return None


class LongChat:
    """Views, model messages and compaction of chats (one per process)."""

    def __init__(
        self,
        chats: ChatStore,
        store: CompactionStore,
        hub: ChatStreamHub,
        *,
        max_cached_messages: int,
        max_cached_bytes: int | None = None,
        keep_steps: int = 4,
        summariser_for: SummariserFor | None = None,
    ) -> None:
        self.summariser_for = summariser_for
        self.chats = chats
        self.store = store
        self.hub = hub
        self.keep_steps = keep_steps
        self.cache = HistoryCache(
            lambda chat_id, after: chats.messages(
                chat_id, after_seq=after, include_superseded=True
            ),
            store.latest,
            max_messages=max_cached_messages,
            max_bytes=max_cached_bytes,
        )
        hub.message_listeners.append(self.cache.adopt)  # a warm turn reads no history
        self._locks: dict[uuid.UUID, asyncio.Lock] = {}

    async def budget(self, model: Model, chat: Any) -> Budget | None:
        """The model's budget, at the chat owner's lower threshold if they set one."""
        budget = budget_of(model)
        if budget is None:
            return None
        mine = await self.store.user_threshold(chat.owner_id)
        if mine is not None and mine < budget.threshold:
            return Budget(budget.window, mine)
        return budget

    async def view(
        self,
        chat_id: uuid.UUID,
        *,
        known_number: int | None = None,
        known_last_seq: int | None = None,
    ) -> View:
        entry = await self.cache.view(
            chat_id, known_number=known_number, known_last_seq=known_last_seq
        )
        return View(entry, carried_messages(entry.compaction))

    def model_messages(self, view: View, history: list[cm.ChatMessage]) -> list[pai.ModelMessage]:
        """``history`` (the view's, possibly repaired) as pydantic-ai messages, led by the
        summary; each stored message is converted once (the cache keeps it)."""
        out: list[pai.ModelMessage] = []
        summary = summary_text(view.compaction)
        if summary is not None:
            out.append(pai.ModelRequest(parts=[pai.UserPromptPart(content=summary)]))
        for msg in history:
            out.extend(self.cache.converted(view.entry, msg))
        return out

    def usage_of(
        self,
        chat_id: uuid.UUID,
        view: View,
        response: pai.ModelResponse,
        raw: int,
        model: str,
        owner_id: uuid.UUID | None = None,
    ) -> UsageRow | None:
        """What the provider reported for a request (None: nothing); calibrates the
        estimate by it at once. The turn stores a turn's rows together at its end
        (:meth:`record_usages`)."""
        usage = response.usage
        if not usage.input_tokens:
            return None
        view.calibration.observe(raw, usage.input_tokens)
        return UsageRow(
            chat_id,
            model,
            usage.input_tokens,
            usage.output_tokens,
            raw or None,
            self.store.now(),
            turn_seq=turn_seq_of(view.entry.messages),
            owner_id=owner_id,
        )

    async def record_usages(self, rows: list[UsageRow]) -> None:
        await self.store.record_usages(rows)

    async def record_usage(
        self, chat_id: uuid.UUID, view: View, response: pai.ModelResponse, raw: int, model: str
    ) -> None:
        """Store what the provider reported for a request; calibrate the estimate by it."""
        row = self.usage_of(chat_id, view, response, raw, model)
        if row is not None:
            await self.store.record_usages([row])

    # --- compaction ---------------------------------------------------------------------

    async def compact(
        self,
        chat_id: uuid.UUID,
        model: Model | None,
        *,
        reason: str,
        keep_steps: int | None = None,
        tail_budget: int | None = None,
        timeout_s: float = SUMMARISE_TIMEOUT_S,
    ) -> Compaction:
        """Summarise the history before the cut and record it. InvalidInput when there is
        nothing to compact; Conflict when another compaction of this chat won."""
        async with self._lock(chat_id):
            view = await self.view(chat_id)
            messages = view.entry.messages
            keep = self.keep_steps if keep_steps is None else keep_steps
            sizes = [raw_tokens(self.cache.converted(view.entry, m)) for m in messages]
            cut = cut_index(messages, keep, tokens=sizes, tail_budget=tail_budget)
            while cut == 0 and keep > 1:  # one long turn: keep fewer steps
                keep -= 1
                cut = cut_index(messages, keep, tokens=sizes, tail_budget=tail_budget)
            if cut == 0:
                raise InvalidInput("the chat has nothing to compact yet")
            older = messages[:cut]
            previous = view.compaction
            goal = previous.carried.get("goal") if previous is not None else None
            if goal is None:
                first = next((m for m in older if m.role == "user" and text_of(m)), None)
                goal = text_of(first)[:GOAL_MAX_CHARS] if first is not None else ""
            source = older
            if previous is not None and previous.kind != "clear":
                head = cm.ChatMessage(role="user", parts=[cm.TextPart(text=previous.summary)])
                source = [head, *older]
            summary = await summarise(model, source, timeout_s, self.summariser_for)
            before = raw_tokens(self.model_messages(view, view.history))
            carried = {
                "goal": goal,
                "messages": carry(view.carried, older),
            }
            return await self._record(
                chat_id, previous, older[-1].seq or 0, "compact", summary, carried, before, reason
            )

    async def clear(self, chat_id: uuid.UUID) -> Compaction:
        """A fresh context: nothing before now is sent again (instruction files excepted)."""
        async with self._lock(chat_id):
            view = await self.view(chat_id)
            last = await self.chats.last_message_seq(chat_id)
            carried = {"goal": None, "messages": carry(view.carried, view.entry.messages)}
            before = raw_tokens(self.model_messages(view, view.history))
            return await self._record(
                chat_id, view.compaction, last, "clear", "", carried, before, "clear"
            )

    def _lock(self, chat_id: uuid.UUID) -> asyncio.Lock:
        lock = self._locks.get(chat_id)
        if lock is None:
            if len(self._locks) > 1024:  # only idle locks are dropped
                self._locks = {k: v for k, v in self._locks.items() if v.locked()}
            lock = self._locks[chat_id] = asyncio.Lock()
        return lock

    async def _record(
        self,
        chat_id: uuid.UUID,
        previous: Compaction | None,
        through_seq: int,
        kind: str,
        summary: str,
        carried: dict[str, Any],
        before: int,
        reason: str,
    ) -> Compaction:
        try:
            record = await self.store.record(
                chat_id,
                previous=previous,
                through_seq=through_seq,
                kind=kind,
                summary=summary,
                carried=carried,
                tokens_before=before,
            )
        except Conflict:
            self.cache.invalidate(chat_id)
            raise
        self.cache.invalidate(chat_id)
        self.hub.publish(
            chat_id,
            "compaction",
            {
                "kind": kind,
                "reason": reason,
                "number": record.number,
                "through_seq": record.through_seq,
                "tokens_before": before,
                "summary_chars": len(summary),
            },
        )
        log.info(
            "chat %s: %s #%d through seq %d (%s, ~%d tokens before)",
            chat_id,
            kind,
            record.number,
            through_seq,
            reason,
            before,
        )
        return record


def longchat_of(graph: Any) -> LongChat:
    """The process's :class:`LongChat` (``graph.extras["longchat"]``), made on first use by
    the API or the chat worker, whichever comes first."""
    found = graph.extras.get("longchat")
    if found is None:
        chats, hub = chats_and_hub(graph)
        settings = graph.settings
        registry = getattr(graph, "models", None)

        async def summariser_for(model: Model) -> Model:
            name = getattr(getattr(model, "cfg", None), "summary_model", None)
            if name is None or registry is None:
                return model
            return await registry.model(name)

        found = graph.extras["longchat"] = LongChat(
            chats,
            CompactionStore(graph.engine, graph.clock),
            hub,
            max_cached_messages=settings.history_cache_max_messages,
            max_cached_bytes=settings.history_cache_max_bytes,
            keep_steps=settings.context_keep_steps,
            summariser_for=summariser_for,
        )
    return found
