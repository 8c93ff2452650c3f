"""Agent session pings, written in batches.

Every connected agent pings every ``agent_ping_interval_s``; writing each ping is one write
transaction per agent per interval (50 a second for 100 agents at 2 s, all contending for
SQLite's single writer). The session handler only notes the ping here; :meth:`run` writes
the noted agents in one statement per flush interval. A disconnect forgets a pending ping
so a late flush cannot make a dropped session look connected (``AgentStore.ping_many``
also guards against that in SQL)."""

from __future__ import annotations

import asyncio
import logging
import uuid

from tether.clock import Clock
from tether.db.agents import AgentStore

log = logging.getLogger("tether.pings")


class PingBatcher:
    def __init__(self, agents: AgentStore, clock: Clock, *, flush_s: float) -> None:
        self._agents = agents
        self._clock = clock
        self._flush_s = flush_s
        self._pending: set[uuid.UUID] = set()

    def ping(self, agent_id: uuid.UUID) -> None:
        self._pending.add(agent_id)

    def forget(self, agent_id: uuid.UUID) -> None:
        self._pending.discard(agent_id)

    async def flush(self) -> int:
        ids, self._pending = self._pending, set()
        if ids:
            await self._agents.ping_many(ids)
        return len(ids)

    async def run(self) -> None:
        """Flush every ``flush_s`` until cancelled (then once more, shielded)."""
        try:
            while True:
                await self._clock.sleep(self._flush_s)
                try:
                    await self.flush()
                except Exception:  # a failed flush is retried by the next pings
                    log.exception("recording agent pings failed")
        finally:
            await asyncio.shield(self.flush())
