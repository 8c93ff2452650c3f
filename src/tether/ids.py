"""Identifiers: UUIDs everywhere, secrets from the OS random source."""

from __future__ import annotations

import hashlib
import secrets
import uuid


def new_id() -> uuid.UUID:
    return uuid.uuid4()


def parse_id(value: str, *, field: str = "id") -> uuid.UUID:
    """Parse a UUID from user input, raising a typed error naming the field."""
    from tether.errors import InvalidInput

    try:
        return uuid.UUID(str(value))
    except (ValueError, AttributeError, TypeError) as exc:
        raise InvalidInput(f"{field} is not a valid UUID: {value!r}", field=field) from exc


def new_token(prefix: str = "tt") -> str:
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
