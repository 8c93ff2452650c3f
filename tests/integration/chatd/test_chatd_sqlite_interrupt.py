"""Issue #9 §9 follow-up: interrupting a turn while ``create_workspace`` runs leaves SQLite's
write lock free.

Each round interrupts a real chat worker at a random point of a real ``create_workspace``
(a real local-backend build and agent), waits until the turn has ended, and writes at once
from another SQLite connection with a 1 s busy wait. The write runs in a thread, so the
server's event loop keeps running meanwhile, as it does when a second process (another
replica, ``sqlite3`` on the command line) writes.

If the write fails, the test records who held the engine's write lock at that moment and
retries the write once the loop has run: a leaked lock fails both, a legitimate transaction
in flight only the first. It also fails on any write statement run outside
``engine.begin()`` (it would bypass the engine's queue of writers).

``TETHER_STRESS_ROUNDS`` raises the number of rounds (default 4). ``TETHER_STRESS_BLOCKING=1``
makes the foreign write block the event loop's thread instead, which is what the original,
uncommitted harness did: then it fails about 3 rounds in 40 on a loaded machine, each time
because a legitimate transaction of the server (the chat worker's claim poll, the stale-chat
sweep) had just taken the lock and could not reach its commit while the loop stood still —
the transaction ends the moment the busy wait gives up, and the retry succeeds.
``tests/unit/db/test_sqlite_foreign_writer.py`` shows that mechanism deterministically.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import sqlite3
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from chatd_env import Chatd

from tether.domain.chat import ChatStatus
from tether.llm.scripted import Call, Say, script_model

_WRITE = re.compile(r"^\s*(INSERT|UPDATE|DELETE|REPLACE|CREATE|DROP|ALTER)", re.IGNORECASE)
ROUNDS = int(os.environ.get("TETHER_STRESS_ROUNDS", "4"))
BUSY_WAIT_S = 1.0
BLOCKING = os.environ.get("TETHER_STRESS_BLOCKING") == "1"  # reproduces the harness artefact


@pytest.fixture(params=["sqlite"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """SQLite only: the bug is SQLite's single write lock."""
    return f"sqlite+aiosqlite:///{tmp_path / 'tether.db'}"


@dataclass
class LockWatch:
    """Who holds the engine's write lock (``SQLiteEngine.begin``), and since when."""

    holders: dict[int, tuple[str, float]] = field(default_factory=dict)
    longest: list[tuple[float, str]] = field(default_factory=list)
    stray_writes: list[str] = field(default_factory=list)  # writes outside ``begin()``

    def install(self, engine: Any) -> None:
        original = engine.begin
        watch = self

        def on_execute(conn: Any, _cur: Any, statement: str, *_args: Any) -> None:
            # every ``begin()`` holds the engine's write lock; a write without it bypassed
            # the queue (checked this way, not per connection: a task already inside
            # ``begin()`` when the watch is installed is not a stray writer)
            if _WRITE.match(statement) and not engine._write_lock.locked():
                watch.stray_writes.append(statement[:80])

        sa.event.listen(engine.sync_engine, "before_cursor_execute", on_execute)

        def begin() -> Any:
            inner = original()
            caller = sys._getframe(1)
            site = f"{caller.f_code.co_qualname}:{caller.f_lineno}"

            class Watched:
                async def __aenter__(self) -> Any:
                    conn = await inner.__aenter__()
                    task = asyncio.current_task()
                    name = task.get_name() if task else "?"
                    watch.holders[id(self)] = (f"{name} {site}", time.monotonic())
                    return conn

                async def __aexit__(self, *exc: Any) -> Any:
                    try:
                        return await inner.__aexit__(*exc)
                    finally:
                        what, since = watch.holders.pop(id(self), ("?", time.monotonic()))
                        watch.longest.append((time.monotonic() - since, what))

            return Watched()

        engine.begin = begin

    def now(self) -> list[str]:
        t = time.monotonic()
        return [f"{what} for {t - since:.3f}s" for what, since in self.holders.values()]


def _write(path: Path, busy_wait_s: float) -> float:
    """One write from another connection; returns how long it waited for the lock."""
    start = time.monotonic()
    raw = sqlite3.connect(path, timeout=busy_wait_s, isolation_level=None)
    try:
        raw.execute("BEGIN IMMEDIATE")
        raw.execute("CREATE TABLE IF NOT EXISTS stress_probe (x INTEGER)")
        raw.execute("INSERT INTO stress_probe VALUES (1)")
        raw.execute("COMMIT")
    finally:
        raw.close()
    return time.monotonic() - start


async def _tool_call_started(chatd: Chatd, chat_id: uuid.UUID) -> None:
    for _ in range(1500):
        msgs = await chatd.messages(chat_id)
        if any(p.get("type") == "tool-call" for m in msgs for p in m.parts):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("create_workspace was never called")


async def test_interrupting_create_workspace_leaves_the_write_lock_free(
    chatd: Chatd, tmp_path: Path
) -> None:
    path = tmp_path / "tether.db"
    watch = LockWatch()
    watch.install(chatd.graph.engine)
    chatd.start_worker()
    rng = random.Random(9)
    waits: list[float] = []
    failures: list[str] = []
    outcomes: list[str] = []
    for round_ in range(ROUNDS):
        model = script_model(
            [Call("create_workspace", {"template_id": str(chatd.template_id)}), Say("done")]
        )
        chat = await chatd.new_chat(f"round {round_}", model)
        await _tool_call_started(chatd, chat.id)
        # a random point of create_workspace; every other round early in it (the build runs)
        await asyncio.sleep(rng.uniform(0, 0.2 if round_ % 2 == 0 else 1.5))
        await chatd.graph.chat_service.interrupt(chatd.owner, chat.id)
        ended = await chatd.wait_status(chat.id, timeout=30)
        if ended.status is not ChatStatus.WAITING:
            failures.append(f"round {round_}: chat ended {ended.status}")
            continue
        [result] = await chatd.results(chat.id, "create_workspace")
        outcomes.append(result.get("error_code") or "completed")
        holders = watch.now()
        try:
            if BLOCKING:  # the write on the event loop's thread: the loop stands still
                waits.append(_write(path, BUSY_WAIT_S))
            else:
                waits.append(await asyncio.to_thread(_write, path, BUSY_WAIT_S))
        except sqlite3.OperationalError as err:
            # a leak fails again once the loop has run; a transaction in flight does not
            await asyncio.sleep(2 * BUSY_WAIT_S)
            try:
                await asyncio.to_thread(_write, path, BUSY_WAIT_S)
                retry = "retry after 2 s succeeded"
            except sqlite3.OperationalError as again:
                retry = f"retry failed too: {again}"
            failures.append(f"round {round_}: {err}; lock held by {holders}; {retry}")
    slowest = sorted(watch.longest, reverse=True)[:5]
    print(f"outcomes {outcomes}; waits {[round(w, 3) for w in waits]}; slowest {slowest}")
    assert not failures, f"{failures}; slowest write transactions {slowest}"
    # a write outside ``begin()`` would bypass the engine's queue of writers
    assert watch.stray_writes == [], watch.stray_writes
    assert "interrupted" in outcomes, "no round interrupted create_workspace"
