"""File tools: read a line window, write, search/replace edit, list a directory.

The functions are synchronous and pure filesystem work; the HTTP layer runs them in a worker
thread (``asyncio.to_thread``) so the event loop never blocks on disk.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Literal

from tether.agent.wire import (
    DirEntry,
    EditError,
    FileEditResult,
    FileEdits,
    ListDirResult,
    ReadFileResult,
    WriteFileResult,
)
from tether.errors import InvalidInput, NotFound

BINARY_SNIFF_BYTES = 8192
EntryType = Literal["file", "dir", "symlink", "other"]


class IsADirectory(InvalidInput):
    """The path is a directory."""

    code = "is_a_directory"


class NotADirectory(InvalidInput):
    """The path is not a directory."""

    code = "not_a_directory"


def _is_binary(data: bytes) -> bool:
    return b"\x00" in data[:BINARY_SNIFF_BYTES]


def read_file(path: Path, *, offset: int, limit: int) -> ReadFileResult:
    """Lines ``offset .. offset+limit-1`` (1-based) of a text file; binary files are not dumped."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise NotFound(f"file not found: {path}") from None
    if stat.S_ISDIR(info.st_mode):
        raise IsADirectory(f"{path} is a directory; use list_dir")
    data = path.read_bytes()
    text: str | None = None
    if not _is_binary(data):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = None
    if text is None:
        return ReadFileResult(
            path=str(path),
            content="",
            total_lines=0,
            lines_read=0,
            file_size=len(data),
            binary=True,
        )
    lines = text.splitlines(keepends=True)
    window = lines[offset - 1 : offset - 1 + limit]
    return ReadFileResult(
        path=str(path),
        content="".join(window),
        total_lines=len(lines),
        lines_read=len(window),
        file_size=len(data),
        binary=False,
    )


def write_file(path: Path, content: str) -> WriteFileResult:
    """Write ``content`` as UTF-8, creating parent directories."""
    if path.is_dir():
        raise IsADirectory(f"{path} is a directory")
    data = content.encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return WriteFileResult(path=str(path), bytes_written=len(data))


def edit_file(path: Path, spec: FileEdits) -> FileEditResult:
    """Apply every edit in order; any failure leaves the file untouched."""

    def failed(errors: list[EditError]) -> FileEditResult:
        return FileEditResult(path=str(path), ok=False, applied=0, errors=errors)

    if path.is_dir():
        return failed([EditError(index=None, message="path is a directory")])
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return failed([EditError(index=None, message="file not found")])
    if _is_binary(data):
        return failed([EditError(index=None, message="file is binary")])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return failed([EditError(index=None, message="file is not valid UTF-8")])
    errors: list[EditError] = []
    for index, edit in enumerate(spec.edits):
        if not edit.search:
            errors.append(EditError(index=index, message="search text is empty"))
            continue
        count = text.count(edit.search)
        if count == 0:
            errors.append(EditError(index=index, message="search text not found"))
        elif count > 1:
            errors.append(EditError(index=index, message=f"matches {count} times; add context"))
        else:
            text = text.replace(edit.search, edit.replace, 1)
    if errors:
        return failed(errors)
    if spec.edits:
        path.write_bytes(text.encode("utf-8"))
    return FileEditResult(path=str(path), ok=True, applied=len(spec.edits), errors=[])


def _entry_type(mode: int) -> EntryType:
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISREG(mode):
        return "file"
    return "other"


def list_dir(path: Path) -> ListDirResult:
    """The directory's entries sorted by name; symlinks are reported, not followed."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise NotFound(f"directory not found: {path}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise NotADirectory(f"{path} is not a directory")
    entries: list[DirEntry] = []
    with os.scandir(path) as it:
        for entry in it:
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:  # removed while listing
                continue
            kind = _entry_type(st.st_mode)
            size = st.st_size if kind == "file" else 0
            entries.append(DirEntry(name=entry.name, type=kind, size=size))
    entries.sort(key=lambda e: e.name)
    return ListDirResult(path=str(path), entries=entries)
