"""The server key's fingerprint in the database: replicas must share one key."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from tether.clock import Clock
from tether.db.tables import server_key_fingerprints
from tether.errors import Conflict


async def check_fingerprint(engine: AsyncEngine, fingerprint: str, clock: Clock) -> None:
    """Record ``fingerprint`` on first use; raise :class:`Conflict` if the database was
    used with a different key (every dial of this server would fail with 401)."""
    async with engine.begin() as conn:
        stored = await conn.scalar(
            sa.select(server_key_fingerprints.c.fingerprint).where(
                server_key_fingerprints.c.id == 1
            )
        )
        if stored is None:
            try:
                async with conn.begin_nested():
                    await conn.execute(
                        server_key_fingerprints.insert().values(
                            id=1, fingerprint=fingerprint, created_at=clock.now()
                        )
                    )
                return
            except sa.exc.IntegrityError:
                stored = await conn.scalar(
                    sa.select(server_key_fingerprints.c.fingerprint).where(
                        server_key_fingerprints.c.id == 1
                    )
                )
    if stored != fingerprint:
        raise Conflict(
            "this database is used with a different server key: replicas must share one "
            "(set TETHER_SERVER_KEY or TETHER_SERVER_KEY_FILE to the same key everywhere)"
        )
