"""Instruction files (``AGENTS.md``) the model should see, sanitised and capped.

Looked up in ``$HOME/.tether/`` and in the working directory, the file name matched
case-insensitively. Sanitising normalises line ends, drops HTML comments and zero-width
characters, and trims; a file that is empty afterwards is left out. Synchronous: run it in a
worker thread.
"""

from __future__ import annotations

import re
from pathlib import Path

from tether.agent.text import cap_text
from tether.agent.wire import InstructionFile

INSTRUCTION_FILE_NAME = "AGENTS.md"
INSTRUCTION_CAP_BYTES = 64 * 1024
# Read at most this much of a file: enough to fill the cap after comments are stripped.
_READ_LIMIT_BYTES = 4 * 1024 * 1024

_HTML_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")


def sanitize(text: str) -> str:
    """CRLF/CR → LF, strip ``<!-- … -->`` comments and zero-width characters, trim."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _HTML_COMMENT.sub("", text)
    text = _INVISIBLE.sub("", text)
    return text.strip()


def _find(directory: Path, name: str) -> Path | None:
    """The regular file in ``directory`` whose name equals ``name`` ignoring case."""
    try:
        candidates = sorted(p for p in directory.iterdir() if p.name.lower() == name.lower())
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return None
    for path in candidates:
        if path.is_file():
            return path
    return None


def _load(path: Path, cap: int) -> InstructionFile | None:
    try:
        with path.open("rb") as fh:
            data = fh.read(_READ_LIMIT_BYTES)
    except OSError:
        return None
    text = sanitize(data.decode("utf-8", errors="replace"))
    if not text:
        return None
    content, truncated = cap_text(text, cap)
    return InstructionFile(path=str(path), content=content, truncated=truncated)


def find_instruction_files(
    home: Path, directory: Path, *, cap: int = INSTRUCTION_CAP_BYTES
) -> list[InstructionFile]:
    """The home file (``~/.tether/AGENTS.md``) then the working-directory file, when present."""
    files: list[InstructionFile] = []
    seen: set[Path] = set()
    for folder in (home / ".tether", directory):
        path = _find(folder, INSTRUCTION_FILE_NAME)
        if path is None:
            continue
        resolved = path.resolve()
        if resolved in seen:
            continue
        seen.add(resolved)
        loaded = _load(path, cap)
        if loaded is not None:
            files.append(loaded)
    return files
