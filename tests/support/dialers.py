"""The real agent dialer, recording every dial (for the chatd and binding test environments)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

from tether.chatd.binding import AgentDialer, AgentRow


class CountingDialer:
    """The real dialer, recording every dial (probe dials carry no chat headers);
    ``delay`` slows each dial down (to drive the lazy-validation timer with a dial that does
    succeed) and ``on_dial`` runs as a dial starts."""

    def __init__(self, inner: AgentDialer) -> None:
        self.inner = inner
        self.calls: list[tuple[uuid.UUID, dict[str, str]]] = []
        self.delay = 0.0
        self.on_dial: Callable[[uuid.UUID], None] | None = None

    async def dial(self, agent: AgentRow, *, headers: dict[str, str]) -> Any:
        self.calls.append((agent.id, dict(headers)))
        if self.on_dial is not None:
            self.on_dial(agent.id)
        if self.delay:
            await asyncio.sleep(self.delay)
        return await self.inner.dial(agent, headers=headers)

    @property
    def probes(self) -> int:
        return sum(1 for _, h in self.calls if not h)
