"""Per-user token limits (an admin setting) and the check at create / send / edit.

The setting (``chat_config`` key ``usage_limits``): ``default_tokens`` applies to every
user, ``users`` overrides it per user (a number, or ``null`` = no limit for that user).
Tokens are input + output tokens as the provider reported them (``chat_usage``), summed
over the **calendar month in UTC**: the allowance resets at 00:00 UTC on the first day of
the next month.

A user at or over their limit gets 409 ``usage_limit_exceeded`` (with a remediation) when
creating a chat, sending a message or editing one, and nothing is stored or queued. A turn
that crosses the limit is not stopped: it finishes, and the next message is refused.

Cost: the setting is cached per process and re-read after ``usage_limits_refresh_s`` (an
admin change on this replica applies at once, on others within that time); a user
without a limit costs no query; a user with one costs one indexed aggregate per send.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tether.clock import Clock
from tether.db.chatconfig import ChatConfigStore
from tether.db.usage import Tokens, UsageStore
from tether.errors import UsageLimitExceeded
from tether.workspaces.models import User

KEY = "usage_limits"
PERIOD = "month"


@dataclass(frozen=True)
class UsageLimits:
    default_tokens: int | None = None
    users: dict[uuid.UUID, int | None] = field(default_factory=dict)

    def limit_for(self, user_id: uuid.UUID) -> int | None:
        if user_id in self.users:
            return self.users[user_id]
        return self.default_tokens

    def to_json(self) -> dict[str, Any]:
        return {
            "default_tokens": self.default_tokens,
            "users": {str(k): v for k, v in sorted(self.users.items(), key=lambda kv: str(kv[0]))},
        }

    @classmethod
    def from_json(cls, value: Any) -> UsageLimits:
        if not isinstance(value, dict):
            return cls()
        users = value.get("users") or {}
        return cls(
            default_tokens=value.get("default_tokens"),
            users={uuid.UUID(str(k)): v for k, v in users.items()},
        )


def period_start(now: datetime) -> datetime:
    now = now.astimezone(UTC)
    return datetime(now.year, now.month, 1, tzinfo=UTC)


def period_end(now: datetime) -> datetime:
    start = period_start(now)
    if start.month == 12:
        return datetime(start.year + 1, 1, 1, tzinfo=UTC)
    return datetime(start.year, start.month + 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class UserUsage:
    tokens: Tokens
    limit_tokens: int | None
    period_start: datetime
    resets_at: datetime

    @property
    def remaining_tokens(self) -> int | None:
        if self.limit_tokens is None:
            return None
        return max(0, self.limit_tokens - self.tokens.total)


class UsageGuard:
    def __init__(
        self, config: ChatConfigStore, usage: UsageStore, clock: Clock, *, refresh_s: float
    ) -> None:
        self._config = config
        self.usage = usage
        self._clock = clock
        self._refresh_s = refresh_s
        self._cached: UsageLimits | None = None
        self._read_at = 0.0
        self.reads = 0  # setting reads from the database (tests read it)

    async def limits(self) -> UsageLimits:
        now = self._clock.monotonic()
        if self._cached is None or now - self._read_at >= self._refresh_s:
            self._cached = UsageLimits.from_json(await self._config.value(KEY))
            self._read_at = now
            self.reads += 1
        return self._cached

    async def set_limits(self, limits: UsageLimits) -> UsageLimits:
        await self._config.set_value(KEY, limits.to_json())
        self._cached, self._read_at = limits, self._clock.monotonic()
        return limits

    async def of(self, user_id: uuid.UUID) -> UserUsage:
        now = self._clock.now()
        start = period_start(now)
        limit = (await self.limits()).limit_for(user_id)
        tokens = await self.usage.user_total(user_id, since=start)
        return UserUsage(tokens, limit, start, period_end(now))

    async def check(self, user: User) -> None:
        """UsageLimitExceeded when the user has used their allowance for this month."""
        if (await self.limits()).limit_for(user.id) is None:
            return  # no query for users without a limit
        mine = await self.of(user.id)
        if mine.limit_tokens is not None and mine.tokens.total >= mine.limit_tokens:
            raise UsageLimitExceeded(
                f"you have used {mine.tokens.total} of your {mine.limit_tokens} tokens this month",
                remediation=(
                    "ask an administrator to raise your limit, or wait until it resets at "
                    f"{mine.resets_at.isoformat()} (the first day of the next month, UTC)"
                ),
                used_tokens=mine.tokens.total,
                limit_tokens=mine.limit_tokens,
                resets_at=mine.resets_at.isoformat(),
            )


def usage_guard_of(graph: Any) -> UsageGuard:
    """The process's :class:`UsageGuard` (``graph.extras["usage_guard"]``)."""
    found = graph.extras.get("usage_guard")
    if found is None:
        found = graph.extras["usage_guard"] = UsageGuard(
            ChatConfigStore(graph.engine, graph.clock),
            UsageStore(graph.engine),
            graph.clock,
            refresh_s=graph.settings.usage_limits_refresh_s,
        )
    return found
