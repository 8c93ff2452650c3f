"""A short-lived cache of API-token lookups, so a request does not cost a query to
authenticate (issue #12).

What it keeps: the token's SHA-256 (never the token) → the user and the token as the last
database read saw them, for at most ``auth_cache_ttl_s``, at most ``auth_cache_max_entries``
tokens (least recently used go first). Refusals are never cached: an unknown, revoked or
expired token queries the database every time, as before.

How an entry stops being trusted:

- **Revocation, disabling, deletion** publish an identity event (``api/revocation.py``)
  after the change is committed. Every replica's cache listens on that channel and drops
  the user's entries when the event arrives; on the replica that made the change the event
  is delivered before its response is written, so the next request there is refused.
  Another replica drops them when PostgreSQL's ``NOTIFY`` reaches it, which can be just
  after the client's next request there (seen in tests): so :mod:`tether.wiring` builds the
  cache only for the in-process bus (one SQLite process) unless
  ``auth_cache_across_replicas`` accepts that window.
- **A lookup racing an event** (read from the database before the change, finished after
  the event was applied) is not kept: every event bumps a generation counter and a read
  is only stored if the counter did not move meanwhile.
- **Lost events**: a bus reconnect (``{"reconnected": true}``), a truncated payload, or an
  event dropped from a full subscriber queue forget the whole cache. An event lost without
  trace is covered by the TTL: no entry is trusted longer than ``auth_cache_ttl_s``.
- **Expiry** is checked against the clock on every hit, so a token is refused at its
  ``expires_at`` whether it is cached or not.
- **No listener, no cache**: entries are served only while :meth:`TokenCache.run` (a
  background job of the app) holds its subscription; before it starts, after it ends, or
  with a TTL of 0 every request queries the database.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from tether.channels import IDENTITY
from tether.clock import Clock
from tether.db.pubsub import EventBus, Subscription
from tether.db.users import ApiToken, UserStore
from tether.domain.user import User
from tether.errors import Unauthorized
from tether.ids import hash_token


@dataclass
class _Entry:
    user: User
    token: ApiToken
    read_at: float  # clock.monotonic() of the database read


class TokenCache:
    """Authenticates API tokens like :meth:`UserStore.authenticate_token`, from memory
    while that is safe (see the module docstring)."""

    def __init__(
        self, users: UserStore, bus: EventBus, clock: Clock, *, ttl_s: float, max_entries: int
    ) -> None:
        self._users = users
        self._bus = bus
        self._clock = clock
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._generation = 0  # bumped by every identity event
        self._sub: Subscription | None = None  # set while listening: entries may be served
        self._dropped_seen = 0
        self.hits = 0
        self.misses = 0
        self.events = 0  # identity events applied
        self.changed = asyncio.Event()  # set when listening starts or an event is applied

    @property
    def enabled(self) -> bool:
        return self._ttl_s > 0 and self._max_entries > 0

    @property
    def listening(self) -> bool:
        return self._sub is not None

    def __len__(self) -> int:
        return len(self._entries)

    async def run(self) -> None:
        """Listen for identity events for the app's lifetime (a background job). Entries are
        kept and served only while this runs."""
        if not self.enabled:
            return
        try:
            async with self._bus.subscribe(IDENTITY) as sub:
                self._dropped_seen = getattr(sub, "dropped", 0)
                self._sub = sub
                self.changed.set()
                async for event in sub:
                    self.apply(event)
        finally:
            self._sub = None
            self.forget()

    def apply(self, event: dict[str, Any]) -> None:
        """One identity event: the user's entries go; anything else (a reconnect, a
        truncated payload, a lost event) forgets every entry."""
        self._generation += 1
        self.events += 1
        self.changed.set()
        dropped = getattr(self._sub, "dropped", 0)
        user_id = event.get("user_id")
        if dropped != self._dropped_seen or not isinstance(user_id, str):
            self._dropped_seen = dropped
            self.forget()
            return
        for key in [k for k, e in self._entries.items() if str(e.user.id) == user_id]:
            del self._entries[key]

    def forget(self, user_id: uuid.UUID | None = None) -> None:
        """Drop the entries of ``user_id``, or every entry with None."""
        self._generation += 1
        if user_id is None:
            self._entries.clear()
            return
        for key in [k for k, e in self._entries.items() if e.user.id == user_id]:
            del self._entries[key]

    async def authenticate(self, token: str) -> tuple[User, ApiToken]:
        """The user and token of ``token``; :class:`Unauthorized` as the store raises it."""
        if self._sub is None:
            return await self._users.authenticate_token(token)
        key = hash_token(token)
        entry = self._entries.get(key)
        if entry is not None and self._clock.monotonic() - entry.read_at < self._ttl_s:
            self._entries.move_to_end(key)
            self.hits += 1
            return await self._served(key, entry)
        self.misses += 1
        generation = self._generation
        user, api_token = await self._users.authenticate_token(token)
        if self._sub is not None and generation == self._generation:
            self._entries[key] = _Entry(user, api_token, self._clock.monotonic())
            self._entries.move_to_end(key)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
        return user, api_token

    async def _served(self, key: str, entry: _Entry) -> tuple[User, ApiToken]:
        now = self._clock.now()
        expires_at = entry.token.expires_at
        if expires_at is not None and expires_at <= now:
            self._entries.pop(key, None)
            raise Unauthorized("API token expired")
        used = await self._users.record_use(entry.token, now)
        if used is not entry.token:
            entry.token = used
        return entry.user, entry.token
