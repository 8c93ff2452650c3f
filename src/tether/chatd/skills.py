"""Skills in the system prompt (docs/behaviour.md §5.6, PL-12, PL-13).

The instruction step persists a workspace's skills as ``skill`` parts in the same message as
its context-file parts — with no instruction file, next to the blank marker — so later turns
rebuild the index from history without asking the workspace. The model gets an index (name,
description, SKILL.md path) and reads a skill's body with ``read_file`` when it applies.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from tether.agent.schemas import Instructions
from tether.chatd import messages as cm


def skill_parts(info: Instructions, agent_id: uuid.UUID) -> list[cm.SkillPart]:
    return [
        cm.SkillPart(
            name=s.name, description=s.description, directory=s.directory, agent_id=agent_id
        )
        for s in info.skills
    ]


def skills_of_agent(history: Iterable[cm.ChatMessage], agent_id: uuid.UUID) -> list[cm.SkillPart]:
    """The persisted skills of ``agent_id``, de-duplicated by name, directory and meta file
    (the first occurrence wins)."""
    seen: set[tuple[str, str, str]] = set()
    out: list[cm.SkillPart] = []
    for message in history:
        for part in message.parts:
            if isinstance(part, cm.SkillPart) and part.agent_id == agent_id:
                key = (part.name, part.directory, part.meta_file)
                if key not in seen:
                    seen.add(key)
                    out.append(part)
    return out


def skill_index(skills: Sequence[cm.SkillPart]) -> str:
    """The ``<available-skills>`` block, or ``""`` without skills."""
    if not skills:
        return ""
    lines = [
        "<available-skills>",
        "Skills are instructions for specific tasks. When one applies, read its file with "
        "read_file first and follow it.",
    ]
    for s in skills:
        path = f"{s.directory.rstrip('/')}/{s.meta_file}" if s.directory else s.meta_file
        lines.append(f"- {s.name}: {s.description} (file: {path})")
    lines.append("</available-skills>")
    return "\n".join(lines)


def last_injected(
    files: Sequence[cm.ContextFilePart], skills: Sequence[cm.SkillPart]
) -> list[dict[str, Any]] | None:
    """The chat's ``last_injected_context``: the persisted parts without file contents;
    ``None`` when neither an instruction file nor a skill was found (PL-13)."""
    found = [p.model_copy(update={"content": ""}) for p in files if p.path]
    if not found and not skills:
        return None
    return cm.dump_parts([*found, *skills])
