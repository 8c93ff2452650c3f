"""The admin chat settings (``db/chatconfig.py``) cached behind the event bus.

Every turn reads the admin prompts and every ``create_workspace`` the template allowlist;
reading the ``chat_config`` table each time was one statement per turn for a value that
changes when an admin edits it. Admin writes (``ChatConfigStore`` with the bus, as the
API's ``api/routers/chat_config.py`` builds it) publish on :data:`CHAT_CONFIG_CHANNEL`;
:meth:`ConfigCache.run` holds the subscription and drops the cached value on any event (a
change here or on another replica, or the bus saying it may have missed events). The bus
is a hint, so the value is also re-read once it is older than ``max_age_s``, and every
read goes to the database while no subscription is open (before ``run`` started, after it
ended).

In one process an admin's change applies to the next turn: the bus delivers the event into
the subscription's queue while the admin's request is still being answered, and asyncio
runs the waiting subscriber before any later request is handled.
"""

from __future__ import annotations

from tether.clock import Clock
from tether.db.chatconfig import CHAT_CONFIG_CHANNEL, ChatConfig, ChatConfigStore
from tether.db.pubsub import EventBus

__all__ = ["CHAT_CONFIG_CHANNEL", "ConfigCache"]


class ConfigCache:
    def __init__(
        self, store: ChatConfigStore, bus: EventBus, clock: Clock, *, max_age_s: float
    ) -> None:
        self._store = store
        self._bus = bus
        self._clock = clock
        self._max_age_s = max_age_s
        self._value: ChatConfig | None = None
        self._read_at = 0.0
        self._live = False  # a subscription is open: events invalidate the value
        self._generation = 0  # bumped by every invalidation
        self.reads = 0  # database reads (tests read it)

    @property
    def live(self) -> bool:
        """The subscription is open (values are cached)."""
        return self._live

    def invalidate(self) -> None:
        self._value = None
        self._generation += 1

    async def get(self) -> ChatConfig:
        """The settings: cached while the subscription is open and the value is fresh."""
        now = self._clock.monotonic()
        if self._live and self._value is not None and now - self._read_at < self._max_age_s:
            return self._value
        generation = self._generation
        value = await self._store.get()
        self.reads += 1
        if self._live and generation == self._generation:  # no change arrived meanwhile
            self._value, self._read_at = value, now
        return value

    async def run(self) -> None:
        """Hold the subscription until cancelled; any event drops the cached value."""
        async with self._bus.subscribe(CHAT_CONFIG_CHANNEL) as sub:
            self._live = True
            try:
                async for _ in sub:
                    self.invalidate()
            finally:
                self._live = False
                self.invalidate()
