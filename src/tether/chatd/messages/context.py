"""Instruction files persisted in the history (docs/behaviour.md §5.6): which agent they
came from, and the ``<workspace-context>`` block of the system prompt built from them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from uuid import UUID

from tether.chatd.messages.parts import ChatMessage, ContextFilePart

_TRUNCATED_NOTE = " (truncated to 64KiB)"


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
