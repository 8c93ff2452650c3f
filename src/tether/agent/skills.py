"""Skills in the working directory: ``.agents/skills/<name>/SKILL.md`` (docs/behaviour.md
§5.6). Only metadata is returned — the front matter's ``name`` and ``description``, the
directory and the file — the model reads a body with ``read_file`` when a skill applies.

A skill counts only when its front matter names it, the name is kebab-case and equals the
directory name (so a skill cannot pose as another); directories are taken in name order
and the first occurrence of a name wins. Each SKILL.md is read up to the cap (64 KiB), and
the description is sanitised like an instruction file and cut to ``DESCRIPTION_MAX``.
Synchronous: run it in a worker thread.
"""

from __future__ import annotations

import re
from pathlib import Path

from tether.agent.instructions import INSTRUCTION_CAP_BYTES, sanitize
from tether.agent.wire import Skill

SKILLS_DIR = Path(".agents") / "skills"
SKILL_FILE = "SKILL.md"
MAX_SKILLS = 100
DESCRIPTION_MAX = 1024

_NAME = re.compile(r"\A[a-z0-9]+(?:-[a-z0-9]+)*\Z")


def front_matter(text: str) -> dict[str, str]:
    """The ``key: value`` lines between the leading ``---`` fences (quotes stripped)."""
    lines = text.replace("\r\n", "\n").split("\n")
    if not lines or lines[0].strip() != "---":
        return {}
    out: dict[str, str] = {}
    for line in lines[1:]:
        if line.strip() == "---":
            return out
        key, sep, value = line.partition(":")
        if sep and key.strip() and not key.startswith((" ", "\t")):
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                value = value[1:-1]
            out[key.strip().lower()] = value
    return {}  # no closing fence: no front matter


def _load(folder: Path, cap: int) -> Skill | None:
    path = folder / SKILL_FILE
    try:
        if not path.is_file():
            return None
        with path.open("rb") as fh:
            text = fh.read(cap).decode("utf-8", errors="replace")
    except OSError:
        return None
    meta = front_matter(text)
    name = meta.get("name", "")
    if not _NAME.match(name) or name != folder.name:
        return None
    description = sanitize(meta.get("description", ""))[:DESCRIPTION_MAX]
    return Skill(name=name, description=description, directory=str(folder), path=str(path))


def find_skills(directory: Path, *, cap: int = INSTRUCTION_CAP_BYTES) -> list[Skill]:
    """The valid skills under ``directory/.agents/skills`` in name order."""
    root = directory / SKILLS_DIR
    try:
        folders = sorted(p for p in root.iterdir() if p.is_dir())
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return []
    skills: list[Skill] = []
    seen: set[str] = set()
    for folder in folders:
        skill = _load(folder, cap)
        if skill is None or skill.name in seen:
            continue
        seen.add(skill.name)
        skills.append(skill)
        if len(skills) >= MAX_SKILLS:
            break
    return skills
