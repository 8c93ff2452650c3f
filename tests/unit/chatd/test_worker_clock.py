"""The chat worker's background loops sleep through the injected clock (issue #13): with a
:class:`FakeClock`, heartbeats, stale sweeps and claim polls happen when the test advances
time, never on wall time. With ``asyncio.sleep`` (the old loops) nothing happens here."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from types import SimpleNamespace
from typing import Any, cast

from tether.chatd.worker import ChatWorker
from tether.testing.clock import FakeClock, settle


class _Chats:
    """Counts the store calls the loops make; nothing to claim, nothing stale."""

    def __init__(self) -> None:
        self.claims = 0
        self.sweeps = 0

    async def claim_turns(
        self, worker_id: uuid.UUID, *, limit: int, look_first: bool = False
    ) -> list[Any]:
        self.claims += 1
        return []

    async def recover_stale(self, older_than: datetime, *, keep: list[uuid.UUID]) -> list[Any]:
        self.sweeps += 1
        return []


def _worker(clock: FakeClock, chats: _Chats) -> ChatWorker:
    deps = SimpleNamespace(clock=clock, chats=chats)
    return ChatWorker(
        cast(Any, deps),
        cast(Any, None),
        binding_store=cast(Any, None),
        poll_s=60.0,  # a minute of wall time per poll: only the fake clock can drive it
        heartbeat_s=60.0,
        stale_after_s=300.0,
        stale_sweep_s=60.0,
    )


async def test_stale_sweep_runs_on_the_injected_clock() -> None:
    clock, chats = FakeClock(), _Chats()
    loop = asyncio.create_task(_worker(clock, chats)._stale_loop())
    try:
        for sweeps in (1, 2, 3):
            await clock.wait_for_sleepers(1)
            assert chats.sweeps == sweeps - 1
            clock.advance(60.0)
            await settle()
            assert chats.sweeps == sweeps
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)


async def test_claim_poll_waits_on_the_injected_clock() -> None:
    clock, chats = FakeClock(), _Chats()
    worker = _worker(clock, chats)

    async def claim_loop() -> None:  # the claim-and-wait part of ChatWorker.run
        async with asyncio.TaskGroup() as tg:
            while True:
                await worker._claim_round(tg)
                await worker._wait_for_work()

    loop = asyncio.create_task(claim_loop())
    try:
        await settle()
        assert chats.claims == 1
        await clock.wait_for_sleepers(1)
        clock.advance(59.0)
        await settle()
        assert chats.claims == 1  # not yet: the poll interval is 60 s of clock time
        clock.advance(1.0)
        await settle()
        assert chats.claims == 2
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
