"""Idle worker polls: what ``ChatStore.claim`` costs when nothing is pending (SQLite).

The chat worker calls ``claim`` every ``worker_poll_s`` and on every wake-up; on a quiet
server nothing is pending. Measures, over ``--polls`` idle claims on a migrated SQLite
database holding ``--chats`` idle chats: microseconds per poll, statements per poll (and
how many are UPDATEs), and how often the process's SQLite write lock was taken (each take
is a write transaction a running turn may queue behind).

    .venv/bin/python -m bench.claimpoll --polls 2000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from tether.clock import SystemClock
from tether.db.chats import ChatStore
from tether.db.engine import StatementCounter, create_engine
from tether.db.migrate import upgrade
from tether.db.users import UserStore
from tether.ids import new_id


async def main(polls: int, n_chats: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tether-bench-claim-") as tmp:
        engine = create_engine(f"sqlite+aiosqlite:///{Path(tmp) / 'tether.db'}")
        try:
            await upgrade(engine)
            clock = SystemClock()
            owner = await UserStore(engine, clock).create_user("bob", "member")
            store = ChatStore(engine, clock)
            text = [{"type": "text", "text": "hi"}]
            for i in range(n_chats):
                await store.create(owner_id=owner.id, title=f"c{i}", first_message=text)
            worker = new_id()
            while claimed := await store.claim(worker, limit=100):
                for chat in claimed:  # idle chats with history, as on a quiet server
                    await store.finish_turn(chat.id, worker)
            lock: Any = getattr(engine, "_write_lock", None)
            takes = 0
            if lock is not None:
                acquire = lock.acquire

                async def counted() -> bool:
                    nonlocal takes
                    takes += 1
                    return await acquire()

                lock.acquire = counted
            with StatementCounter(engine) as counter, counter.measure() as m:
                t0 = time.perf_counter()
                for _ in range(polls):
                    assert await store.claim(worker, limit=10) == []
                elapsed = time.perf_counter() - t0
        finally:
            await engine.dispose()
    result = {
        "idle_claim_us": round(elapsed / polls * 1e6, 1),
        "idle_claim_statements": round(m.count / polls, 2),
        "idle_claim_updates": round(len(m.matching(r"^\s*UPDATE")) / polls, 2),
        "idle_claim_write_locks": round(takes / polls, 2),
    }
    print(
        f"{polls} idle claims over {n_chats} idle chats: {result['idle_claim_us']} µs each, "
        f"{result['idle_claim_statements']} statements ({result['idle_claim_updates']} UPDATE), "
        f"{result['idle_claim_write_locks']} write-lock takes per poll"
    )
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--polls", type=int, default=2000)
    parser.add_argument("--chats", type=int, default=200)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.polls, args.chats))))
