"""Chat messages: tether's own part schema and its lossless mapping to pydantic-ai messages.

What is persisted (``chat_messages.parts``) is a list of our parts, a discriminated union on
``type``; :func:`dump_parts` / :func:`load_parts` give the stable JSON (``None`` fields are
left out to keep rows small). The turn runner converts history with
:func:`to_model_messages` before calling the model, and converts what the run produced back
with :func:`from_model_messages` before persisting it.

Decisions a caller needs to know:

* **Round trip.** ``from_model_messages(to_model_messages(h)) == h`` for every message the
  model can see. Messages with ``visibility="user"`` and ``context-file`` parts never reach
  the model (the turn runner injects context files into the system prompt with
  :func:`format_workspace_context`), so they are dropped by ``to_model_messages``; a message
  left with no parts is dropped entirely. Each converted message carries its role,
  visibility and store metadata in ``metadata["tether"]`` (never sent to the provider).
* **Invalid tool-call arguments.** ``args`` is always a dict. Arguments a model produced as
  text that is not a JSON object are kept as ``{"INVALID_JSON": "<raw text>"}`` — the same
  key pydantic-ai itself uses — so they survive storage and are replayed to the model as is.
* **Error tool results.** A result with ``is_error`` is sent as a pydantic-ai
  ``ToolReturnPart`` with ``outcome="failed"`` (providers with a native error channel use
  it; the others get ``{"error": ...}``). Its content is text the model can read and act on:
  ``"[<error_code>] <message>\\nRemediation: <remediation>"`` (see :func:`render_tool_error`).
  Tools that raise ``pydantic_ai.exceptions.ToolFailed(render_tool_error(...))`` get the same
  text; :func:`from_model_messages` parses code and remediation back out of it. Other
  non-success outcomes of pydantic-ai (``retried``, ``denied``, ``interrupted``) become error
  results with that outcome as ``error_code``.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from pydantic_ai import messages as pai
from pydantic_core import to_jsonable_python

from tether.errors import InvalidInput

INVALID_JSON_KEY = pai.INVALID_JSON_KEY
"""Key under which tool-call arguments that are not a JSON object are kept as raw text."""

_META_KEY = "tether"
_TRUNCATED_NOTE = " (truncated to 64KiB)"


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TextPart(_Part):
    type: Literal["text"] = "text"
    text: str


class ReasoningPart(_Part):
    """Model thinking. ``signature``/``provider_name`` let a provider verify replayed thinking."""

    type: Literal["reasoning"] = "reasoning"
    text: str
    signature: str | None = None
    provider_name: str | None = None


class ToolCallPart(_Part):
    type: Literal["tool-call"] = "tool-call"
    tool_call_id: str
    tool_name: str
    args: dict[str, Any] = Field(default_factory=dict)


class ToolResultPart(_Part):
    """The result of one tool call; ``result`` is JSON. Errors carry a model-facing code."""

    type: Literal["tool-result"] = "tool-result"
    tool_call_id: str
    tool_name: str
    result: Any = None
    is_error: bool = False
    error_code: str | None = None
    remediation: str | None = None


class ContextFilePart(_Part):
    """An instruction file read from a workspace (docs/behaviour.md §5.6).

    A part with ``agent_id`` and no ``path`` is the *blank marker*: the agent was examined
    (the connection worked) and nothing was found.
    """

    type: Literal["context-file"] = "context-file"
    path: str | None = None
    content: str = ""
    truncated: bool = False
    os: str | None = None
    directory: str | None = None
    agent_id: UUID | None = None


class SkillPart(_Part):
    """A skill found in a workspace (docs/behaviour.md §5.6): metadata only; persisted in
    the instruction message next to the context-file parts (PL-12)."""

    type: Literal["skill"] = "skill"
    name: str
    description: str = ""
    directory: str = ""
    meta_file: str = "SKILL.md"
    agent_id: UUID | None = None


class ImagePart(_Part):
    """An image a user attached (chatd/images.py checked it): base64 as sent."""

    type: Literal["image"] = "image"
    media_type: str
    data: str


Part = Annotated[
    TextPart
    | ReasoningPart
    | ToolCallPart
    | ToolResultPart
    | ContextFilePart
    | SkillPart
    | ImagePart,
    Field(discriminator="type"),
]
Role = Literal["user", "assistant", "tool", "system"]
Visibility = Literal["model", "user", "both"]

_PARTS = TypeAdapter(list[Part])


class ChatMessage(BaseModel):
    """One chat message. ``id``, ``seq`` and ``created_at`` are filled by the store."""

    model_config = ConfigDict(extra="forbid")

    role: Role
    parts: list[Part]
    visibility: Visibility = "both"
    id: int | None = None
    seq: int | None = None
    created_at: datetime | None = None
    model: str | None = None


def dump_parts(parts: Sequence[Part]) -> list[dict[str, Any]]:
    """The persisted JSON form of ``parts`` (``None`` fields omitted)."""
    return _PARTS.dump_python(list(parts), mode="json", exclude_none=True)


def load_parts(data: Any) -> list[Part]:
    """Parse persisted parts; raises ``pydantic.ValidationError`` on malformed data."""
    return _PARTS.validate_python(data)


# --- tool errors as the model sees them ----------------------------------------------------

_ERROR_RE = re.compile(r"\A\[(?P<code>[A-Za-z0-9_.:-]+)\] (?P<message>.*)\Z", re.DOTALL)
_REMEDIATION_SEP = "\nRemediation: "


def render_tool_error(message: Any, code: str | None = None, remediation: str | None = None) -> str:
    """Model-facing text of an error result: ``[code] message`` plus a ``Remediation:`` line."""
    text = message if isinstance(message, str) else _json_text(message)
    if code:
        text = f"[{code}] {text}"
    if remediation:
        text = f"{text}{_REMEDIATION_SEP}{remediation}"
    return text


def parse_tool_error(text: str) -> tuple[str, str | None, str | None]:
    """Inverse of :func:`render_tool_error`: ``(message, code, remediation)``."""
    remediation: str | None = None
    head, sep, tail = text.rpartition(_REMEDIATION_SEP)
    if sep and "\n" not in tail:
        text, remediation = head, tail
    code: str | None = None
    if match := _ERROR_RE.match(text):
        code, text = match["code"], match["message"]
    return text, code, remediation


def _json_text(value: Any) -> str:
    return pai.tool_return_ta.dump_json(value).decode()


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


# --- instruction files (docs/behaviour.md §5.6) ---------------------------------------------


def _context_parts(history: Iterable[ChatMessage]) -> Iterable[ContextFilePart]:
    for message in history:
        for part in message.parts:
            if isinstance(part, ContextFilePart):
                yield part


def has_persisted_instructions(history: Iterable[ChatMessage]) -> bool:
    """True when some context-file part carries an agent id (a file or the blank marker).

    tether has no skill-only sentinel path, so unlike upstream no path is excluded.
    """
    return any(p.agent_id is not None for p in _context_parts(history))


def instruction_agent_id(history: Sequence[ChatMessage]) -> UUID | None:
    """The agent that produced the latest persisted context-file parts, or ``None``.

    Looks at the latest message holding a context-file part with an agent id and returns the
    first such id in it; parts without an agent id are ignored ("unknown").
    """
    for message in reversed(history):
        for part in message.parts:
            if isinstance(part, ContextFilePart) and part.agent_id is not None:
                return part.agent_id
    return None


def format_workspace_context(parts: Iterable[ContextFilePart]) -> str:
    """The ``<workspace-context>`` block for the system prompt, or ``""`` if there is nothing.

    OS and working directory come from the last parts that carry them; files with no content
    (e.g. the blank marker) are skipped.
    """
    os_name = directory = ""
    files: list[ContextFilePart] = []
    for part in parts:
        os_name = part.os or os_name
        directory = part.directory or directory
        if part.content:
            files.append(part)
    if not files and not os_name and not directory:
        return ""
    lines = ["<workspace-context>\n"]
    if os_name:
        lines.append(f"Operating System: {os_name}\n")
    if directory:
        lines.append(f"Working Directory: {directory}\n")
    for part in files:
        note = _TRUNCATED_NOTE if part.truncated else ""
        lines.append(f"\nSource: {part.path or ''}{note}\n{part.content}\n")
    lines.append("</workspace-context>")
    return "".join(lines)


def workspace_context_from_history(history: Iterable[ChatMessage]) -> str:
    """Rebuild the block from every persisted context-file part (later turns, after compaction)."""
    return format_workspace_context(_context_parts(history))
