"""Another connection holding SQLite's write lock, for the tests of how tether's SQLite
statements wait for it (``db/sqliteloop.py``, ``db/fastexec.py``)."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def foreign_write_lock(path: Path, hold_s: float) -> Iterator[threading.Event]:
    """A thread with its own ``sqlite3`` connection takes the write lock (``BEGIN
    IMMEDIATE``) of the database at ``path`` — which has a table ``t`` with one integer
    column —, holds it ``hold_s`` seconds and commits. Yields once the lock is held."""
    taken = threading.Event()

    def hold() -> None:
        raw = sqlite3.connect(path, isolation_level=None)
        try:
            raw.execute("BEGIN IMMEDIATE")
            raw.execute("INSERT INTO t VALUES (100)")
            taken.set()
            time.sleep(hold_s)
            raw.execute("COMMIT")
        finally:
            raw.close()

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    assert taken.wait(5), "the foreign connection never took the lock"
    try:
        yield taken
    finally:
        thread.join(10)
