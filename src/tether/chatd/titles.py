"""Chat title regeneration: the chat's model names the conversation (``POST
/api/v1/chats/{id}/title/regenerate``, docs/behaviour.md §2.4).

The model gets the first user and assistant texts (at most ``TRANSCRIPT_MAX_CHARS``) and an
instruction to answer with a title only; the answer's first line, without quotes and cut to
``TITLE_MAX_CHARS``, becomes the title. One plain (non-streamed) request without tools,
bounded by ``timeout_s`` of the injected clock; provider failures are typed
(``provider_error`` 502, ``provider_timeout`` 504) and leave the title unchanged. A model
that answers without a usable title (a tool call, an empty line) gets the first-message
title, as a new chat does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from pydantic_ai import Agent
from pydantic_ai.exceptions import AgentRunError, ModelAPIError
from pydantic_ai.models import Model

from tether.chatd.service import title_from
from tether.clock import Clock, within
from tether.domain.chat import StoredMessage
from tether.errors import InvalidInput, ProviderError, ProviderTimeout
from tether.llm.provider import typed_provider_error

log = logging.getLogger(__name__)

TITLE_PROMPT = (
    "Write a short title (at most 8 words) for the conversation below. Answer with the "
    "title only: no quotes, no punctuation at the end, no explanation."
)
TRANSCRIPT_MAX_CHARS = 4000
TITLE_MAX_CHARS = 80


def transcript(history: Sequence[StoredMessage]) -> str:
    """The conversation as ``User:`` / ``Assistant:`` lines, capped."""
    lines: list[str] = []
    size = 0
    for msg in history:
        if msg.role not in ("user", "assistant") or msg.visibility == "user":
            continue  # instruction-file messages are not the conversation
        text = " ".join(
            " ".join(str(p.get("text", "")).split()) for p in msg.parts if p.get("type") == "text"
        ).strip()
        if not text:
            continue
        line = f"{'User' if msg.role == 'user' else 'Assistant'}: {text}"
        lines.append(line[: TRANSCRIPT_MAX_CHARS - size])
        size += len(lines[-1]) + 1
        if size >= TRANSCRIPT_MAX_CHARS:
            break
    return "\n".join(lines)


def clean_title(answer: str) -> str:
    """The first non-empty line without surrounding quotes or a trailing period, capped."""
    first = next((line.strip() for line in answer.splitlines() if line.strip()), "")
    first = first.removeprefix("Title:").strip().strip("\"'`*").strip().rstrip(".").strip()
    if len(first) > TITLE_MAX_CHARS:
        first = first[: TITLE_MAX_CHARS - 1].rstrip() + "…"
    return first


async def generate_title(
    model: Model, history: Sequence[StoredMessage], *, clock: Clock, timeout_s: float
) -> str:
    text = transcript(history)
    if not text:
        raise InvalidInput("the chat has no text to name it by", field="chat")
    agent: Agent[None, str] = Agent(model, instructions=TITLE_PROMPT, retries=0)
    try:
        result = await within(clock, timeout_s, agent.run(text))
    except TimeoutError:
        raise ProviderTimeout(f"the model gave no title within {timeout_s:g} s") from None
    except asyncio.CancelledError:
        raise
    except ModelAPIError as exc:
        typed = typed_provider_error(exc, model)
        if isinstance(typed, ProviderError):
            raise typed from exc
        raise ProviderError(f"the model provider failed: {exc}") from exc
    except AgentRunError as exc:  # e.g. the model called a tool: there are none here
        log.info("the model gave no usable title (%s); titling from the first message", exc)
        return fallback_title(history)
    return clean_title(result.output) or fallback_title(history)


def fallback_title(history: Sequence[StoredMessage]) -> str:
    """The title a new chat gets: from its first user message."""
    first = next((m for m in history if m.role == "user" and m.visibility != "user"), None)
    return title_from(first.parts if first is not None else [])
