"""What a compaction takes out of the model's view of a chat, and what it keeps.

The cut keeps the last ``keep_steps`` model responses verbatim and never separates a tool
call from its result (it falls before an assistant or user message, never before a tool
message). The messages before it are replaced by :func:`summary_text`. Every compaction
carries the instruction files (their ``context-file`` messages, so the turn rebuilds the same
``<workspace-context>`` block) and the user's original goal from record to record; the
workspace binding lives on the chat row and is never cut.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tether.chatd import messages as cm
from tether.chatd.context import Calibration
from tether.chatd.historycache import Entry
from tether.db.compactions import Compaction

CARRIED_CONTEXT_MESSAGES = 4  # the latest context-file messages a compaction carries
SUMMARY_HEADER = "[Earlier messages of this chat were compacted to fit the model's context.]"


@dataclass
class View:
    """The history of one turn: carried + since-the-cut messages, and the record in force."""

    entry: Entry
    carried: list[cm.ChatMessage]

    @property
    def compaction(self) -> Compaction | None:
        return self.entry.compaction

    @property
    def history(self) -> list[cm.ChatMessage]:
        return [*self.carried, *self.entry.messages]

    @property
    def calibration(self) -> Calibration:
        return self.entry.calibration


def summary_text(compaction: Compaction | None) -> str | None:
    """The text the model gets in place of the compacted messages (None: nothing)."""
    if compaction is None or compaction.kind == "clear":
        return None
    goal = compaction.carried.get("goal") if isinstance(compaction.carried, dict) else None
    parts = [SUMMARY_HEADER]
    if goal:
        parts.append(f"The user's original request:\n{goal}")
    parts.append(f"Summary of the conversation so far:\n{compaction.summary}")
    return "\n\n".join(parts)


def cut_index(
    messages: list[cm.ChatMessage],
    keep_steps: int,
    *,
    tokens: list[int] | None = None,
    tail_budget: int | None = None,
) -> int:
    """Where the kept tail starts: at most ``keep_steps`` assistant messages after it, and
    never at a tool message (its call would be cut off). With ``tail_budget`` (tokens,
    ``tokens[i]`` per message) the tail is shortened further, down to one assistant
    message, until it fits. 0 = nothing to compact."""
    assistants = [i for i, m in enumerate(messages) if m.role == "assistant"]
    if len(assistants) <= keep_steps:
        return 0
    candidates = [a for a in assistants[-keep_steps:]]
    i = _cut_at(messages, candidates[0])
    if tokens is not None and tail_budget is not None:
        for a in candidates[1:]:
            if sum(tokens[i:]) <= tail_budget:
                break
            i = _cut_at(messages, a)
    return i


def _cut_at(messages: list[cm.ChatMessage], i: int) -> int:
    while i > 0 and messages[i].role == "tool":
        i -= 1
    return i


def carried_messages(compaction: Compaction | None) -> list[cm.ChatMessage]:
    """The messages a compaction record carries (its instruction-file messages)."""
    if compaction is None or not isinstance(compaction.carried, dict):
        return []
    return [cm.ChatMessage.model_validate(m) for m in compaction.carried.get("messages", [])]


def carry(carried: list[cm.ChatMessage], older: list[cm.ChatMessage]) -> list[dict[str, Any]]:
    """What the next record carries of the messages it cuts: their context-file parts."""
    keep = [m for m in [*carried, *older] if _has_context_files(m)][-CARRIED_CONTEXT_MESSAGES:]
    return [
        {
            "role": m.role,
            "visibility": m.visibility,
            "parts": cm.dump_parts([p for p in m.parts if isinstance(p, cm.ContextFilePart)]),
        }
        for m in keep
    ]


def _has_context_files(msg: cm.ChatMessage) -> bool:
    return any(isinstance(p, cm.ContextFilePart) for p in msg.parts)
