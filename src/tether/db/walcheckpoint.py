"""SQLite WAL checkpoints off the event loop (issue #12, the open-loop latency tail).

By default SQLite checkpoints a WAL database itself: the commit that takes the WAL past
1,000 pages (``wal_autocheckpoint``) copies the WAL back into the database file, with its
fsyncs, before it returns. tether's SQLite statements run on the event loop's own thread
(:mod:`tether.db.sqliteloop`), so that commit held every chat stream and turn of the
process for the checkpoint's duration — 6–7 ms on a quiet disk, 15–33 ms on a shared one
(``bench/openloop.py --stalls`` shows such stalls), once every ~1,000 pages written.

So the engine's connections leave the checkpoints to a :class:`WalCheckpointer`: a thread
with a ``sqlite3`` connection of its own that runs ``PRAGMA wal_checkpoint(PASSIVE)``
every ``interval_s`` (``sqlite3`` releases the GIL while SQLite works, so the loop runs
on meanwhile). A passive checkpoint takes no lock a writer needs: writers and readers go
on during it, and it copies what no open read transaction still needs. The serving
connections keep SQLite's automatic checkpoint only as a backstop (:data:`BACKSTOP_PAGES`,
should the thread fall behind or stop), far above what the thread lets the WAL reach.

Durability is unchanged (``synchronous=NORMAL``, as before): a commit survives a crash of
the process at once (the WAL is written before the commit returns), and a power loss once
the WAL was synced — which a checkpoint does first. SQLite synced it every 1,000 pages; the
thread does whenever a round finds new frames, so a power loss now loses at most the
commits of the last ``interval_s`` (plus a round's duration) rather than up to 1,000 pages'
worth.

WAL size: once a checkpoint has copied every frame, the next writer starts the WAL from its
beginning again (SQLite). So the WAL holds about one interval's writes, as long as no read
transaction stays open across rounds (the limit SQLite's own checkpoint has too); past
:data:`BACKSTOP_PAGES` a commit checkpoints as SQLite always did.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import weakref
from pathlib import Path

log = logging.getLogger(__name__)

INTERVAL_S = 0.5
# SQLite's automatic checkpoint on the serving connections, as a backstop only: 10,000
# pages (≈ 40 MB at 4 KiB pages) is ten times SQLite's default; the thread checkpoints
# long before, unless it falls behind.
BACKSTOP_PAGES = 10_000


class WalCheckpointer:
    """Passive checkpoints of the WAL database at ``path``, every ``interval_s``, in a
    daemon thread (see the module docstring). :meth:`start` once; :meth:`stop` ends the
    thread (also when ``owner``, if given, is garbage collected)."""

    def __init__(self, path: str | Path, *, interval_s: float = INTERVAL_S) -> None:
        self.path = Path(path)
        self.interval_s = interval_s
        self.rounds = 0  # checkpoint rounds that ran (tests and benchmarks read it)
        self.frames_copied = 0  # frames the rounds copied into the database file
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None

    def start(self, owner: object | None = None) -> None:
        if self._thread is not None:
            return
        if owner is not None:  # an engine never disposed must not keep a thread alive
            weakref.finalize(owner, self._stop.set)
        self._thread = threading.Thread(
            target=self._run, name=f"sqlite-checkpoint-{self.path.name}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """End the thread (after the round in progress, if any); waits up to ``timeout_s``."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval_s):
                try:
                    self.checkpoint_once()
                except sqlite3.Error as exc:  # busy, or the file went away: the next round
                    log.debug("WAL checkpoint of %s skipped: %s", self.path, exc)
                    self._close()
        finally:
            self._close()

    def checkpoint_once(self) -> tuple[int, int, int]:
        """One passive checkpoint; SQLite's answer: (busy, frames in the WAL, frames
        checkpointed). (0, 0, 0) while the database file does not exist yet."""
        conn = self._connect()
        if conn is None:
            return (0, 0, 0)
        busy, log_frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        self.rounds += 1
        self.frames_copied += max(0, copied)
        return busy, log_frames, copied

    def _connect(self) -> sqlite3.Connection | None:
        if self._conn is None:
            if not self.path.exists():  # never create it: the engine's first connection does
                return None
            uri = f"{self.path.resolve().as_uri()}?mode=rw"
            self._conn = sqlite3.connect(
                uri, uri=True, timeout=0, isolation_level=None, check_same_thread=False
            )
        return self._conn

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
