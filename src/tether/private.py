"""Files only the server's user can read: the data dir is 0700, every secret-bearing file
(SQLite database and its WAL/SHM, server key, CLI config, agent logs) 0600.

Modes are set explicitly rather than through a process umask: the server's children (agents
and what they run in a workspace) keep the operator's umask for their own files. Existing
files from older versions are tightened on start.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import BinaryIO

DIR_MODE = 0o700
FILE_MODE = 0o600
SQLITE_SUFFIXES = ("", "-wal", "-shm", "-journal")


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) if needed and make it 0700."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    os.chmod(path, DIR_MODE)
    return path


def private_file(path: Path) -> Path:
    """Create ``path`` empty with mode 0600 if missing (never briefly wider), else chmod it."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    os.chmod(path, FILE_MODE)
    return path


def open_private_append(path: Path) -> BinaryIO:
    """Open ``path`` for appending (created 0600; an existing file is tightened to 0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
    os.fchmod(fd, FILE_MODE)
    return os.fdopen(fd, "ab")


def private_sqlite(db_file: Path) -> None:
    """Make the SQLite file 0600 before SQLite opens it: SQLite creates the WAL and SHM files
    with the database file's mode, so they are 0600 too. Existing companions are tightened."""
    private_dir(db_file.parent)
    private_file(db_file)
    for suffix in SQLITE_SUFFIXES[1:]:
        companion = db_file.with_name(db_file.name + suffix)
        with contextlib.suppress(FileNotFoundError):
            os.chmod(companion, FILE_MODE)
