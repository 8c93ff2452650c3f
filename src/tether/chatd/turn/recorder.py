"""The turn's recorder: persists one turn's messages step by step and publishes them
(docs/behaviour.md §3.3: a crash loses at most the step in progress)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic_ai import messages as pai

from tether.chatd import history as history_mod
from tether.chatd import messages as cm
from tether.chatd.tools.base import ChatdDeps
from tether.db.compactions import UsageRow

INTERRUPTED_NOTE = "\n\n[interrupted by the user]"


@dataclass
class TurnRecorder:
    """Persists one turn's messages step by step and publishes them."""

    deps: ChatdDeps
    chat_id: Any
    model_name: str | None
    call_ids: dict[str, str] = field(default_factory=dict)  # unanswered id → tool name
    persisted: set[int] = field(default_factory=set)
    partial: list[str] = field(default_factory=list)
    steps_done: int = 0
    usage: list[UsageRow] = field(default_factory=list)  # not stored yet (finish.flush_usage)
    last_seq: int = 0  # of the last message this turn stored

    async def save(self, msg: cm.ChatMessage) -> None:
        stored = await self.deps.chats.append_message(
            self.chat_id,
            role=msg.role,
            parts=cm.dump_parts(msg.parts),
            visibility=msg.visibility,
            model=msg.model if msg.role == "assistant" else None,
        )
        self.last_seq = max(self.last_seq, stored.seq)
        self.deps.hub.publish_message(stored)

    async def response(self, response: pai.ModelResponse) -> None:
        if id(response) in self.persisted:
            return
        self.persisted.add(id(response))
        for msg in cm.from_model_messages([response]):
            msg.model = msg.model or self.model_name
            await self.save(msg)
            for part in msg.parts:
                if isinstance(part, cm.ToolCallPart):
                    self.call_ids[part.tool_call_id] = part.tool_name
        self.partial.clear()
        self.steps_done += 1

    async def tool_results(self, request: pai.ModelRequest) -> None:
        """Persist the tool results of a step (the request that carries them back)."""
        if id(request) in self.persisted:
            return
        parts = [
            p
            for p in request.parts
            if isinstance(p, pai.ToolReturnPart | pai.RetryPromptPart)
            and p.tool_call_id in self.call_ids
        ]
        if not parts:
            return
        self.persisted.add(id(request))
        for msg in cm.from_model_messages([pai.ModelRequest(parts=parts)]):
            await self.save(msg)
        for p in parts:
            self.call_ids.pop(p.tool_call_id, None)

    async def interrupted(self) -> None:
        """Persist what the user saw streaming, and close unanswered tool calls."""
        text = "".join(self.partial)
        if text:
            await self.save(
                cm.ChatMessage(
                    role="assistant",
                    parts=[cm.TextPart(text=text + INTERRUPTED_NOTE)],
                    model=self.model_name,
                )
            )
            self.partial.clear()
        await self.close_calls(history_mod.BY_USER)

    async def close_calls(self, why: str) -> None:
        """Store ``interrupted: {why}`` results for this turn's unanswered tool calls."""
        if self.call_ids:
            calls = [cm.ToolCallPart(tool_call_id=c, tool_name=n) for c, n in self.call_ids.items()]
            stored = await history_mod.close_dangling_calls(
                self.deps.chats, self.chat_id, calls, why
            )
            if stored is not None:
                self.deps.hub.publish_message(stored)
            self.call_ids.clear()
