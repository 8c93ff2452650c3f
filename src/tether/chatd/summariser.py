"""The compaction summary: the chat's model (or its configured summary model), asked without
tools and bounded by the model's request timeout, summarises the cut messages; if it fails
or says nothing, an extractive summary (the user's messages and the tool calls made) is used,
so compaction never depends on the provider."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic_ai import Agent
from pydantic_ai.models import Model

from tether.chatd import messages as cm

log = logging.getLogger(__name__)

SUMMARY_MAX_CHARS = 8000
TRANSCRIPT_ITEM_CHARS = 600
TRANSCRIPT_MAX_CHARS = 24_000
SUMMARISE_TIMEOUT_S = 120.0
SUMMARY_PROMPT = (
    "Summarise the conversation below between a user and a coding agent so that the agent "
    "can continue the work from the summary alone. Keep: the user's goals and constraints, "
    "decisions made, files and commands touched and what they showed, what is done and what "
    "is left to do. Write at most 300 words, plain text.\n\n"
)

SummariserFor = Callable[[Model], Awaitable[Model]]


def text_of(msg: cm.ChatMessage) -> str:
    """The message's text parts, one per line."""
    return "\n".join(p.text for p in msg.parts if isinstance(p, cm.TextPart))


def _short(value: Any, limit: int = TRANSCRIPT_ITEM_CHARS) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit // 2] + " … " + text[-limit // 2 :]


def transcript(messages: list[cm.ChatMessage]) -> str:
    """A bounded plain-text rendering of ``messages`` for the summariser."""
    lines: list[str] = []
    for msg in messages:
        if msg.visibility == "user":
            continue
        for part in msg.parts:
            if isinstance(part, cm.TextPart):
                lines.append(f"{msg.role}: {_short(part.text)}")
            elif isinstance(part, cm.ToolCallPart):
                lines.append(f"tool call {part.tool_name}({_short(part.args, 300)})")
            elif isinstance(part, cm.ToolResultPart):
                kind = "error" if part.is_error else "result"
                lines.append(f"tool {kind} {part.tool_name}: {_short(part.result)}")
    text = "\n".join(lines)
    if len(text) > TRANSCRIPT_MAX_CHARS:  # the oldest lines go first
        text = "…\n" + text[-TRANSCRIPT_MAX_CHARS:]
    return text


def extractive_summary(messages: list[cm.ChatMessage]) -> str:
    """The summary when the model gives none: what the user asked and which tools ran."""
    lines: list[str] = []
    for msg in messages:
        if msg.role == "user" and msg.visibility != "model" and (text := text_of(msg)):
            lines.append(f"- the user wrote: {_short(text, 300)}")
        for part in msg.parts:
            if isinstance(part, cm.ToolCallPart):
                lines.append(f"- called {part.tool_name}({_short(part.args, 120)})")
    text = "\n".join(lines)
    return text[-SUMMARY_MAX_CHARS:]


async def summarise(
    model: Model | None,
    messages: list[cm.ChatMessage],
    timeout_s: float,
    summariser_for: SummariserFor | None = None,
) -> str:
    """The summary of ``messages``: the model's, else the extractive one."""
    if model is not None and summariser_for is not None:
        try:
            model = await summariser_for(model)
        except Exception as exc:  # a removed summary model: the chat's own model writes
            log.warning("summary model unavailable (%s); using the chat's model", exc)
    if model is not None:
        cfg = getattr(model, "cfg", None)
        timeout_s = float(getattr(cfg, "request_timeout_s", timeout_s))
        try:
            async with asyncio.timeout(timeout_s):
                agent: Agent[None, str] = Agent(model, retries=0)
                result = await agent.run(SUMMARY_PROMPT + transcript(messages))
            text = (result.output or "").strip()
            if text:
                return text[:SUMMARY_MAX_CHARS]
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the provider's trouble must not block compaction
            log.warning("summariser failed (%s); using an extractive summary", exc)
    return extractive_summary(messages)
