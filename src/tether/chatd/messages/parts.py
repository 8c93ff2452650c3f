"""tether's own message schema: a message is a role, a visibility and a list of parts, a
discriminated union on ``type``. What is persisted (``chat_messages.parts``) is the JSON of
:func:`dump_parts` (``None`` fields left out to keep rows small); :func:`load_parts` reads
it back."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


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
