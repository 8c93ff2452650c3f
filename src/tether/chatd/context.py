"""The context budget of a turn: what the next model request will cost, and making it fit.

Each configured model may state its ``context_window`` (tokens) and a
``compaction_threshold`` (fraction of the window, default 0.7). No tokenizer is available,
so a request is estimated from its text (``chars / 4`` for messages, instructions and tool
definitions) and the estimate is *calibrated* per chat against the input tokens the
provider reports for each request (:class:`Calibration`; the ratio is kept in the history
cache and re-measured on every response). Usage is recorded per request.

Before every model request (:class:`ContextBudget`, a pydantic-ai capability):

1. under the threshold → sent as is;
2. above it → old tool output is **elided in the request only** (never in the database):
   every tool result older than the last ``keep_steps // 2`` model responses (the
   compaction cut keeps ``keep_steps``; setting ``context_keep_steps``) is replaced by a
   stub that names the tool call and says to call it again for the output. A tool call and
   its result stay together (only the result's content changes);
3. still above the threshold → :class:`NeedsCompaction` is raised; the turn compacts
   (``compaction.py``) and runs again from the persisted history (nothing is repeated).

A provider's context-length error (:func:`is_context_overflow`: OpenAI, Anthropic and
llama.cpp wordings) is handled like 3; when a compacted request still does not fit the turn
ends with :class:`~tether.errors.ContextOverflow`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic_ai import messages as pai
from pydantic_ai.capabilities import AbstractCapability
from pydantic_ai.exceptions import ModelHTTPError
from pydantic_ai.models import Model, ModelRequestContext
from pydantic_ai.tools import RunContext

from tether.errors import ContextOverflow

CHARS_PER_TOKEN = 4.0
MESSAGE_OVERHEAD = 4  # tokens of role/framing per message
ELIDED_PREFIX = "[output elided to save context:"
# the share of the window a single user message may take (the rest: prompt, tools, reply)
SINGLE_MESSAGE_SHARE = 0.8
MIN_RATIO, MAX_RATIO = 0.5, 2.0  # bounds of the calibration (reported / estimated tokens)


@dataclass(frozen=True)
class Budget:
    """A model's context window and the fraction of it that triggers elision/compaction."""

    window: int
    threshold: float = 0.7

    @property
    def limit(self) -> int:
        return int(self.window * self.threshold)


_ATTR = "_tether_budget"


def attach_budget(model: Model, budget: Budget | None) -> Model:
    """Remember the budget of a built model (``llm/models.py``; tests attach their own)."""
    if budget is not None:
        setattr(model, _ATTR, budget)  # models are unhashable dataclasses: no weak map
    return model


def budget_of(model: Model) -> Budget | None:
    found = getattr(model, _ATTR, None)
    if isinstance(found, Budget):
        return found
    cfg = getattr(model, "cfg", None)  # ProviderModel
    window = getattr(cfg, "context_window", None)
    if window:
        return Budget(window, float(getattr(cfg, "compaction_threshold", 0.7)))
    return None


class NeedsCompaction(Exception):
    """The next request is above the budget even with old tool output elided."""

    def __init__(self, estimate: int, budget: Budget, tail_budget: int | None = None) -> None:
        super().__init__(f"request of ~{estimate} tokens is above {budget.limit}")
        self.estimate = estimate
        self.budget = budget
        self.tail_budget = tail_budget  # uncalibrated tokens the kept messages may take


# --- estimating ----------------------------------------------------------------------------


IMAGE_CHARS = 1600 * 4  # the estimate of one image part (chatd/images.py), in characters


def _text_of(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    try:
        return len(json.dumps(value, default=str))
    except (TypeError, ValueError):
        return len(str(value))


def message_chars(message: pai.ModelMessage) -> int:
    total = 0
    for part in message.parts:
        if isinstance(part, pai.ToolCallPart):
            total += len(part.tool_name) + _text_of(part.args)
        elif isinstance(part, pai.ToolReturnPart | pai.RetryPromptPart):
            total += len(part.tool_name or "") + _text_of(part.content)
        elif isinstance(part, pai.UserPromptPart) and not isinstance(part.content, str):
            total += sum(  # an image costs about what providers charge for ~1 megapixel
                IMAGE_CHARS if isinstance(c, pai.BinaryContent) else _text_of(c)
                for c in part.content
            )
        else:
            total += _text_of(getattr(part, "content", ""))
    return total


def raw_tokens(messages: Sequence[pai.ModelMessage], fixed_chars: int = 0) -> int:
    """The uncalibrated estimate of a request: text / 4 plus a little per message."""
    chars = fixed_chars + sum(message_chars(m) for m in messages)
    return int(chars / CHARS_PER_TOKEN) + MESSAGE_OVERHEAD * len(messages)


def fixed_chars(params: Any, instructions: str = "") -> int:
    """Characters of what every request carries: instructions and tool definitions."""
    total = len(instructions)
    for part in getattr(params, "instruction_parts", None) or []:
        total += len(getattr(part, "content", "") or "")
    for tool in getattr(params, "function_tools", None) or []:
        total += len(tool.name) + len(tool.description or "")
        total += _text_of(tool.parameters_json_schema)
    return total


def text_tokens(text: str) -> int:
    return int(len(text) / CHARS_PER_TOKEN) + MESSAGE_OVERHEAD


@dataclass
class Calibration:
    """reported input tokens / raw estimate, smoothed; starts at 1. Also keeps the sizes of
    the messages of the chat's last request (by identity: the history cache shares them
    across steps and turns), so a request measures only what is new."""

    ratio: float = 1.0
    samples: int = 0
    sizes: dict[int, tuple[object, int]] = field(default_factory=dict)
    fixed: tuple[int, int] = (-1, 0)  # (number of tools, characters) of the fixed part

    def raw(self, messages: Sequence[pai.ModelMessage], params: Any) -> int:
        """:func:`raw_tokens` of a request, with the sizes of known messages reused."""
        tools = len(getattr(params, "function_tools", None) or [])
        if self.fixed[0] != tools:
            self.fixed = (tools, fixed_chars(params))
        sizes: dict[int, tuple[object, int]] = {}
        chars = self.fixed[1]
        for message in messages:
            known = self.sizes.get(id(message))
            size = known[1] if known is not None and known[0] is message else message_chars(message)
            sizes[id(message)] = (message, size)
            chars += size
        self.sizes = sizes  # only the last request's messages: bounded by the window
        return int(chars / CHARS_PER_TOKEN) + MESSAGE_OVERHEAD * len(messages)

    def estimate(self, raw: int) -> int:
        return int(raw * self.ratio)

    def observe(self, raw: int, reported: int) -> None:
        if raw <= 0 or reported <= 0:
            return
        # real tokenizers take 2.5-5 characters per token: a report outside 0.5-2x of the
        # chars/4 estimate is not a tokenizer's (e.g. a test model's guess) and is clamped
        measured = min(MAX_RATIO, max(MIN_RATIO, reported / raw))
        # the first sample replaces the guess; later ones move it by half
        self.ratio = measured if self.samples == 0 else (self.ratio + measured) / 2
        self.samples += 1


# --- eliding -------------------------------------------------------------------------------


def elision_stub(tool_name: str, tool_call_id: str, chars: int) -> str:
    return (
        f"{ELIDED_PREFIX} {tool_name} call {tool_call_id} returned {chars} characters. "
        "Call the tool again if you need its output.]"
    )


def elide(messages: Sequence[pai.ModelMessage], keep_steps: int) -> list[pai.ModelMessage]:
    """A copy of ``messages`` whose tool results older than the last ``keep_steps`` model
    responses are stubs. The messages themselves are never changed (the cache shares them)."""
    responses = [i for i, m in enumerate(messages) if isinstance(m, pai.ModelResponse)]
    if len(responses) <= keep_steps:
        return list(messages)
    cutoff = responses[-keep_steps]
    out: list[pai.ModelMessage] = []
    for i, msg in enumerate(messages):
        if i >= cutoff or not isinstance(msg, pai.ModelRequest):
            out.append(msg)
            continue
        parts: list[pai.ModelRequestPart] = []
        changed = False
        for part in msg.parts:
            if type(part) is pai.ToolReturnPart and not _is_stub(part.content):
                size = _text_of(part.content)
                stub = elision_stub(part.tool_name, part.tool_call_id, size)
                if size > len(stub):
                    parts.append(
                        pai.ToolReturnPart(
                            tool_name=part.tool_name,
                            content=stub,
                            tool_call_id=part.tool_call_id,
                            outcome=part.outcome,
                            metadata=part.metadata,
                            timestamp=part.timestamp,
                        )
                    )
                    changed = True
                    continue
            parts.append(part)
        out.append(replace(msg, parts=parts) if changed else msg)
    return out


def _is_stub(content: Any) -> bool:
    return isinstance(content, str) and content.startswith(ELIDED_PREFIX)


# --- provider errors -----------------------------------------------------------------------

_OVERFLOW_WORDS = (
    "context_length_exceeded",  # OpenAI code
    "maximum context length",  # OpenAI message
    "prompt is too long",  # Anthropic
    "exceed context limit",  # Anthropic (input + max_tokens)
    "exceeds the context window",
    "exceed_context_size",  # llama.cpp error type
    "exceeds the available context size",  # llama.cpp message
    "context size has been exceeded",  # llama.cpp (older)
    "too many tokens",
)


def is_context_overflow(exc: BaseException) -> bool:
    """True for a provider's "the request does not fit the context window" answer."""
    if not isinstance(exc, ModelHTTPError) or exc.status_code not in (400, 413, 422, 500):
        return False
    text = f"{exc.message} {exc.body!r}".lower()
    return any(w in text for w in _OVERFLOW_WORDS)


def overflow_error(detail: str) -> ContextOverflow:
    return ContextOverflow(f"the chat does not fit the model's context window: {detail}")


def check_single_message(budget: Budget | None, text: str) -> None:
    """Refuse, at send, a message that cannot fit the window even on its own."""
    if budget is None:
        return
    tokens = text_tokens(text)
    if tokens > budget.window * SINGLE_MESSAGE_SHARE:
        raise ContextOverflow(
            f"the message is about {tokens} tokens; the chat's model takes at most "
            f"{budget.window} tokens per request, so it cannot be sent"
        )


# --- the capability ------------------------------------------------------------------------


@dataclass
class TurnBudget:
    """What one turn measured: the estimate of its last request and its elisions."""

    calibration: Calibration
    last_raw: int = 0
    last_estimate: int = 0
    elided_requests: int = 0


@dataclass
class ContextBudget(AbstractCapability[Any]):
    """Measures every request of a turn against the budget; elides, or asks to compact."""

    budget: Budget
    turn: TurnBudget
    keep_steps: int = 4

    async def before_model_request(
        self, ctx: RunContext[Any], request_context: ModelRequestContext
    ) -> ModelRequestContext:
        params = request_context.model_request_parameters
        cal = self.turn.calibration
        messages = list(request_context.messages)
        raw = cal.raw(messages, params)
        estimate = cal.estimate(raw)
        if estimate > self.budget.limit:
            messages = elide(messages, max(1, self.keep_steps // 2))
            raw = cal.raw(messages, params)
            estimate = self.turn.calibration.estimate(raw)
            self.turn.elided_requests += 1
            if estimate > self.budget.limit:
                # the kept messages get half of what the fixed part leaves under the limit
                free = self.budget.limit / cal.ratio - raw_tokens([], cal.fixed[1])
                raise NeedsCompaction(estimate, self.budget, max(0, int(free / 2)))
            request_context.messages = messages  # this request only: history is unchanged
        self.turn.last_raw = raw
        self.turn.last_estimate = estimate
        return request_context

    @classmethod
    def get_serialization_name(cls) -> str | None:
        return None
