"""Reading log tables (provisioner job logs, agent logs) into :class:`LogLine`s."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from tether.clock import as_utc
from tether.db.engine import reading
from tether.domain.workspace import LogLine


async def read_log(
    engine: AsyncEngine,
    table: sa.Table,
    owner: sa.ColumnElement[bool],
    *,
    after_id: int,
    source: str,
) -> list[LogLine]:
    """Lines of ``table`` matching ``owner`` with ``id > after_id``, oldest first;
    ``source`` names the column that says where a line came from."""
    async with reading(engine) as conn:
        rows = (
            await conn.execute(
                sa.select(table).where(owner, table.c.id > after_id).order_by(table.c.id)
            )
        ).all()
    return [_line(r, source) for r in rows]


def _line(row: Any, source: str) -> LogLine:
    return LogLine(
        id=row.id,
        created_at=as_utc(row.created_at),  # type: ignore[arg-type]
        level=row.level,
        output=row.output,
        source=getattr(row, source),
    )
