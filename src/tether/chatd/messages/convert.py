"""The lossless mapping between stored chat messages and pydantic-ai messages (the
decisions are listed in ``chatd/messages/__init__.py``): :func:`to_model_messages` before
the model is called, :func:`from_model_messages` before what a run produced is persisted."""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic_ai import messages as pai
from pydantic_core import to_jsonable_python

from tether.chatd.messages.parts import (
    ChatMessage,
    ContextFilePart,
    ImagePart,
    Part,
    ReasoningPart,
    Role,
    SkillPart,
    TextPart,
    ToolCallPart,
    ToolResultPart,
)
from tether.chatd.messages.toolerrors import parse_tool_error, render_tool_error
from tether.errors import InvalidInput

INVALID_JSON_KEY = pai.INVALID_JSON_KEY
"""Key under which tool-call arguments that are not a JSON object are kept as raw text."""

_META_KEY = "tether"


# --- ours -> pydantic-ai -------------------------------------------------------------------


def to_model_messages(
    history: Iterable[ChatMessage], *, instructions: str | None = None
) -> list[pai.ModelMessage]:
    """Convert stored history to the messages pydantic-ai sends to a model.

    ``instructions`` is recorded on the last request (where pydantic-ai reads the instructions
    in force for a direct ``model.request``). An ``Agent`` run ignores instructions found in
    history and sends its own: pass the system prompt (incl. the workspace-context block) as
    ``agent.run(..., instructions=...)``.
    Raises :class:`InvalidInput` for a part that cannot appear in its role (e.g. a tool call
    in a user message).
    """
    out: list[pai.ModelMessage] = []
    for message in history:
        if message.visibility == "user":
            continue
        metadata = {_META_KEY: _message_meta(message)}
        if message.role == "assistant":
            response_parts = [_response_part(p) for p in message.parts]
            if response_parts:
                out.append(pai.ModelResponse(parts=response_parts, metadata=metadata))
            continue
        request_parts = [
            rp for p in message.parts if (rp := _request_part(p, message.role)) is not None
        ]
        if request_parts:
            out.append(
                pai.ModelRequest(
                    parts=request_parts, timestamp=message.created_at, metadata=metadata
                )
            )
    if instructions is not None:
        for msg in reversed(out):
            if isinstance(msg, pai.ModelRequest):
                msg.instructions = instructions
                break
    return out


def _message_meta(message: ChatMessage) -> dict[str, Any]:
    return message.model_dump(mode="json", exclude={"parts"})


def _response_part(part: Part) -> pai.ModelResponsePart:
    if isinstance(part, TextPart):
        return pai.TextPart(content=part.text)
    if isinstance(part, ReasoningPart):
        return pai.ThinkingPart(
            content=part.text, signature=part.signature, provider_name=part.provider_name
        )
    if isinstance(part, ToolCallPart):
        return pai.ToolCallPart(
            tool_name=part.tool_name, args=dict(part.args), tool_call_id=part.tool_call_id
        )
    raise InvalidInput(f"a {part.type} part cannot appear in an assistant message", field="parts")


def _request_part(part: Part, role: Role) -> pai.ModelRequestPart | None:
    if isinstance(part, ContextFilePart | SkillPart):
        return None  # injected into the system prompt by the turn runner instead
    if isinstance(part, TextPart):
        if role == "system":
            return pai.SystemPromptPart(content=part.text)
        return pai.UserPromptPart(content=part.text)
    if isinstance(part, ToolResultPart):
        return _tool_return(part)
    if isinstance(part, ImagePart) and role == "user":
        image = pai.BinaryContent(data=base64.b64decode(part.data), media_type=part.media_type)
        return pai.UserPromptPart(content=[image])
    raise InvalidInput(f"a {part.type} part cannot appear in a {role} message", field="parts")


def _tool_return(part: ToolResultPart) -> pai.ToolReturnPart:
    if not part.is_error:
        return pai.ToolReturnPart(
            tool_name=part.tool_name, content=part.result, tool_call_id=part.tool_call_id
        )
    # The exact fields ride along in metadata (never sent) so the round trip does not depend
    # on parsing the rendered text back.
    return pai.ToolReturnPart(
        tool_name=part.tool_name,
        content=render_tool_error(part.result, part.error_code, part.remediation),
        tool_call_id=part.tool_call_id,
        outcome="failed",
        metadata={
            _META_KEY: {
                "result": part.result,
                "error_code": part.error_code,
                "remediation": part.remediation,
            }
        },
    )


# --- pydantic-ai -> ours -------------------------------------------------------------------


def from_model_messages(messages: Iterable[pai.ModelMessage]) -> list[ChatMessage]:
    """Convert pydantic-ai messages (e.g. ``result.new_messages()``) to chat messages.

    Messages produced by :func:`to_model_messages` come back exactly. Persist a run's
    ``result.new_messages()``: an ``Agent`` merges consecutive requests of the history it was
    given (e.g. tool results followed by the next user prompt) and drops their metadata, so
    ``all_messages()`` keeps the content but not ids/seq of those messages. Foreign requests are
    split by role (system prompts, user prompts, tool returns) keeping their order; parts
    tether does not model (native tools, files, compaction, deltas) are skipped.
    """
    out: list[ChatMessage] = []
    for message in messages:
        meta = (message.metadata or {}).get(_META_KEY)
        if isinstance(message, pai.ModelResponse):
            parts = [p for rp in message.parts if (p := _from_response_part(rp)) is not None]
            if meta is not None:
                out.append(ChatMessage.model_validate({**meta, "parts": parts}))
            elif parts:
                out.append(ChatMessage(role="assistant", parts=parts, model=message.model_name))
            continue
        converted = [c for rp in message.parts if (c := _from_request_part(rp)) is not None]
        fresh: list[ChatMessage] = []
        if meta is not None:
            out.append(ChatMessage.model_validate({**meta, "parts": [p for _, p in converted]}))
            continue
        # A foreign request (e.g. tool returns followed by a queued user prompt) is split into
        # one message per run of parts with the same role, keeping their order.
        for role, part in converted:
            if fresh and fresh[-1].role == role:
                fresh[-1].parts.append(part)
            else:
                fresh.append(ChatMessage(role=role, parts=[part]))
        out.extend(fresh)
    return out


def _from_response_part(part: pai.ModelResponsePart) -> Part | None:
    if isinstance(part, pai.TextPart):
        return TextPart(text=part.content)
    if isinstance(part, pai.ThinkingPart):
        return ReasoningPart(
            text=part.content, signature=part.signature, provider_name=part.provider_name
        )
    if isinstance(part, pai.ToolCallPart):
        return ToolCallPart(
            tool_call_id=part.tool_call_id, tool_name=part.tool_name, args=part.args_as_dict()
        )
    return None


def _from_request_part(part: pai.ModelRequestPart) -> tuple[Role, Part] | None:
    if isinstance(part, pai.SystemPromptPart):
        return "system", TextPart(text=part.content)
    if isinstance(part, pai.UserPromptPart):
        return "user", TextPart(text=_user_text(part.content))
    if isinstance(part, pai.ToolReturnPart):
        return "tool", _from_tool_return(part)
    if isinstance(part, pai.RetryPromptPart):  # deprecated, still found in old histories
        return "tool", ToolResultPart(
            tool_call_id=part.tool_call_id,
            tool_name=part.tool_name or "",
            result=to_jsonable_python(part.content),
            is_error=True,
            error_code="retried",
        )
    if isinstance(part, pai.RetryFeedbackPart):
        return "system", TextPart(text=part.content if isinstance(part.content, str) else "")
    return None


def _user_text(content: str | Sequence[pai.UserContent]) -> str:
    if isinstance(content, str):
        return content
    texts = [
        c if isinstance(c, str) else c.content
        for c in content
        if isinstance(c, str | pai.TextContent)
    ]
    return "\n".join(texts)


def _from_tool_return(part: pai.ToolReturnPart) -> ToolResultPart:
    def result(value: Any, *, is_error: bool = True, **error: str | None) -> ToolResultPart:
        return ToolResultPart(
            tool_call_id=part.tool_call_id,
            tool_name=part.tool_name,
            result=value,
            is_error=is_error,
            error_code=error.get("error_code"),
            remediation=error.get("remediation"),
        )

    content = to_jsonable_python(part.content, fallback=str)
    if part.outcome == "success":
        return result(content, is_error=False)
    meta = part.metadata.get(_META_KEY) if isinstance(part.metadata, dict) else None
    if isinstance(meta, dict):
        return result(
            meta.get("result"),
            error_code=meta.get("error_code"),
            remediation=meta.get("remediation"),
        )
    if part.outcome == "failed" and isinstance(content, str):
        message, code, remediation = parse_tool_error(content)
        return result(message, error_code=code, remediation=remediation)
    return result(content, error_code=None if part.outcome == "failed" else part.outcome)
