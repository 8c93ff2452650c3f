"""Users and their roles."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import datetime


class Role(enum.StrEnum):
    ADMIN = "admin"
    MEMBER = "member"


@dataclass(frozen=True)
class User:
    id: uuid.UUID
    name: str
    role: Role
    created_at: datetime
    disabled_at: datetime | None = None  # a disabled user's tokens get 401

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    @property
    def disabled(self) -> bool:
        return self.disabled_at is not None
