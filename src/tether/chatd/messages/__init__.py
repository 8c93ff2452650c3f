"""Chat messages: tether's own part schema and its lossless mapping to pydantic-ai messages.

The modules: ``parts`` (the schema and its JSON), ``convert`` (to and from pydantic-ai),
``toolerrors`` (an error result's text), ``context`` (instruction files in the history).

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

from tether.chatd.messages.context import (
    format_workspace_context,
    has_persisted_instructions,
    instruction_agent_id,
    workspace_context_from_history,
)
from tether.chatd.messages.convert import (
    INVALID_JSON_KEY,
    from_model_messages,
    to_model_messages,
)
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
    Visibility,
    dump_parts,
    load_parts,
)
from tether.chatd.messages.toolerrors import parse_tool_error, render_tool_error

__all__ = [
    "INVALID_JSON_KEY",
    "ChatMessage",
    "ContextFilePart",
    "ImagePart",
    "Part",
    "ReasoningPart",
    "Role",
    "SkillPart",
    "TextPart",
    "ToolCallPart",
    "ToolResultPart",
    "Visibility",
    "dump_parts",
    "format_workspace_context",
    "from_model_messages",
    "has_persisted_instructions",
    "instruction_agent_id",
    "load_parts",
    "parse_tool_error",
    "render_tool_error",
    "to_model_messages",
    "workspace_context_from_history",
]
