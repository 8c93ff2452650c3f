"""Prebuilt statements run on SQLite's connection directly (issue #12).

A warm chat turn runs eight statements, most of them prebuilt (``db/prebuilt.py``), and
each still went through SQLAlchemy's whole execution path: the async connection's
greenlet, ``Connection.execute``, an execution context, the cursor wrapper, the result
object and its row processing. That cost several times the statement's own run in SQLite.
:class:`FastStatement` compiles a prebuilt statement once per dialect (the same SQL text
SQLAlchemy renders: there is no second copy of any SQL) with the parameter order, the
parameters' bind processors and the result columns' processors, and runs it on the
``sqlite3`` connection the caller's :class:`AsyncConnection` already holds.

What stays the same:

- The transaction. The statement runs inside the caller's ``engine.begin()`` /
  ``connect()`` block on that block's connection, so the ``sqlite3`` module opens the
  write transaction before the first write exactly as it does for SQLAlchemy's statements,
  and the block commits or rolls back as before.
- Busy waits. A statement that meets ``SQLITE_BUSY`` backs off asynchronously and runs
  again until the connection's bound (``db/sqliteloop.py``), then raises.
- Errors. A ``sqlite3`` error is raised as SQLAlchemy would raise it
  (``sa.exc.OperationalError`` for "database is locked", ``sa.exc.IntegrityError``, …;
  :meth:`sqlalchemy.exc.DBAPIError.instance`). A cancellation (only possible while backing
  off, before the statement ran) invalidates the connection, as SQLAlchemy does.
- Counting. The engine's ``before_cursor_execute`` and ``after_cursor_execute`` listeners
  see every statement with its SQL text (``StatementCounter``, the benches, the tests).
- Rows. Processed as SQLAlchemy processes them (UUIDs, JSON, datetimes, booleans) and
  returned as named tuples whose fields are the result columns' keys.

Not the same: SQLAlchemy's ``before_execute``/``after_execute``/``handle_error`` events do
not fire for a fast statement (tether listens to none of them), and a "closed database"
error does not invalidate the connection as SQLAlchemy's disconnect check would.

Everything else runs SQLAlchemy's own path with the same statement object: PostgreSQL
(asyncpg starts its transaction lazily inside its adapter; a statement run on the driver
connection directly could run outside it), an engine with ``echo`` on (statements are
logged there), and a statement this module cannot run (an ``IN`` list the caller binds,
a post-compile parameter).
"""

from __future__ import annotations

import asyncio
import keyword
import sqlite3
from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from tether.db import sqliteloop

Processor = Callable[[Any], Any] | None


_FIXED, _OPTIONAL, _REQUIRED = 0, 1, 2  # a parameter's value: the statement's own or the caller's


@dataclass(frozen=True)
class _Compiled:
    """A statement compiled for SQLite, with what running it needs."""

    sql: str
    # per positional parameter: (its name, _FIXED | _OPTIONAL | _REQUIRED, its default,
    # its bind processor); a _FIXED default is already processed
    params: tuple[tuple[str, int, Any, Processor], ...]
    processors: tuple[Processor, ...]  # per result column
    row: type[tuple[Any, ...]] | None  # None: the statement returns no rows


def _compile(statement: sa.Executable, dialect: sa.Dialect) -> _Compiled | None:
    compiled: Any = statement.compile(dialect=dialect)  # type: ignore[attr-defined]
    if (
        compiled.positiontup is None
        or compiled.literal_execute_params
        or compiled.escaped_bind_names
        or any(compiled.binds[n].callable is not None for n in compiled.positiontup)
    ):
        return None
    sql, positions, expanded = compiled.string, compiled.positiontup, {}
    lists = [n for n in compiled.positiontup if compiled.binds[n].expanding]
    if lists:
        # Only the statement's own lists (``status IN ('running', 'interrupting')``): their
        # length is fixed, so is the SQL SQLAlchemy expands them to. A caller's list
        # (``bound_list``) takes SQLAlchemy's path.
        if any(compiled.binds[n].required or compiled.binds[n].value is None for n in lists):
            return None
        callers = {n: None for n in compiled.positiontup if compiled.binds[n].required}
        state = compiled.construct_expanded_state(callers)
        sql, positions = state.statement, state.positiontup
        for name, names in state.parameter_expansion.items():
            expanded.update({e: (name, state.parameters[e]) for e in names})
    params: list[tuple[str, int, Any, Processor]] = []
    for name in positions:
        if name in expanded:
            origin, value = expanded[name]
            proc = _bind_processor(compiled.binds[origin], dialect)
            params.append((name, _FIXED, value if proc is None else proc(value), None))
            continue
        bind = compiled.binds[name]
        kind = _REQUIRED if bind.required else _OPTIONAL
        params.append((name, kind, bind.effective_value, _bind_processor(bind, dialect)))
    columns = _result_columns(statement)
    if columns is None:
        return _Compiled(sql, tuple(params), (), None)
    keys = [str(key) for key, _ in columns]
    renamed = any(key != getattr(col, "name", key) for key, col in columns)  # a repeated name
    if renamed or len(set(keys)) < len(keys) or not all(_plain_name(k) for k in keys):
        return None  # rows named as SQLAlchemy names them need its path
    row = namedtuple("Row", keys)  # type: ignore[misc]
    processors = tuple(
        col.type.dialect_impl(dialect).result_processor(dialect, None) for _, col in columns
    )
    return _Compiled(sql, tuple(params), processors, row)


def _plain_name(key: str) -> bool:
    return key.isidentifier() and not keyword.iskeyword(key) and not key.startswith("_")


def _bind_processor(bind: Any, dialect: sa.Dialect) -> Processor:
    return bind.type.dialect_impl(dialect).bind_processor(dialect)


def _result_columns(statement: sa.Executable) -> list[tuple[Any, Any]] | None:
    if isinstance(statement, sa.Select):
        return list(statement.selected_columns.items())
    if isinstance(statement, sa.Insert | sa.Update | sa.Delete):
        if not statement._returning:
            return None
        return list(statement.exported_columns.items())
    raise TypeError(f"not a SELECT, INSERT, UPDATE or DELETE: {type(statement).__name__}")


class FastStatement:
    """A prebuilt statement that runs on SQLite's connection directly (see the module
    docstring); on PostgreSQL it runs through SQLAlchemy. ``statement`` is the prebuilt
    statement (``db/prebuilt.py``); ``values`` name its parameters (``p_…``)."""

    def __init__(self, statement: sa.Executable) -> None:
        self.statement = statement
        self._compiled: dict[int, _Compiled | None] = {}  # by id(dialect)
        self._dialects: list[sa.Dialect] = []  # keeps the ids above unambiguous

    def _for(self, dialect: sa.Dialect) -> _Compiled | None:
        key = id(dialect)
        try:
            return self._compiled[key]
        except KeyError:
            pass
        compiled = _compile(self.statement, dialect) if dialect.name == "sqlite" else None
        self._dialects.append(dialect)
        self._compiled[key] = compiled
        return compiled

    async def all(self, conn: AsyncConnection, values: Mapping[str, Any]) -> list[Any]:
        """The statement's rows (fields by column key)."""
        compiled = self._for(conn.dialect)
        if compiled is None or conn.sync_engine.echo:
            return list((await conn.execute(self.statement, values)).all())
        return await _run(conn, compiled, _bind(compiled, values), many=False)

    async def first(self, conn: AsyncConnection, values: Mapping[str, Any]) -> Any:
        """The first row, or None."""
        rows = await self.all(conn, values)
        return rows[0] if rows else None

    async def one(self, conn: AsyncConnection, values: Mapping[str, Any]) -> Any:
        """Exactly one row (``sa.exc.NoResultFound`` / ``MultipleResultsFound`` else)."""
        rows = await self.all(conn, values)
        if len(rows) != 1:
            if not rows:
                raise sa.exc.NoResultFound("No row was found when one was required")
            raise sa.exc.MultipleResultsFound("Multiple rows were found when exactly one was")
        return rows[0]

    async def many(self, conn: AsyncConnection, values: Sequence[Mapping[str, Any]]) -> None:
        """Run the statement once per entry of ``values`` (one ``executemany``)."""
        compiled = self._for(conn.dialect)
        if compiled is None or conn.sync_engine.echo or compiled.row is not None:
            await conn.execute(self.statement, list(values))
        elif len(values) == 1:  # as SQLAlchemy runs a list of one
            await _run(conn, compiled, _bind(compiled, values[0]), many=False)
        else:
            await _run(conn, compiled, [_bind(compiled, v) for v in values], many=True)


def _bind(compiled: _Compiled, values: Mapping[str, Any]) -> tuple[Any, ...]:
    out = []
    for name, kind, default, proc in compiled.params:
        if kind == _FIXED:
            out.append(default)
            continue
        if name in values:
            value = values[name]
        elif kind == _REQUIRED:
            raise sa.exc.InvalidRequestError(
                f"A value is required for bind parameter {name!r}", code="cd3x"
            )
        else:
            value = default
        out.append(value if proc is None else proc(value))
    return tuple(out)


async def _run(conn: AsyncConnection, compiled: _Compiled, params: Any, *, many: bool) -> Any:
    sync = conn.sync_connection
    assert sync is not None  # an AsyncConnection inside its block
    if sync.invalidated:
        raw: Any = (await conn.get_raw_connection()).driver_connection
    else:
        raw = sync.connection.driver_connection
    dispatch = sync.dispatch
    cursor = sqlite3.Cursor(raw)
    sql = compiled.sql
    if dispatch.before_cursor_execute:
        for listener in dispatch.before_cursor_execute:
            listener(sync, cursor, sql, params, None, many)
    step = sqlite3.Cursor.executemany if many else sqlite3.Cursor.execute
    try:
        await sqliteloop.run(raw.busy_wait_s, step, cursor, sql, params)
        rows = cursor.fetchall() if compiled.row is not None else []
    except sqlite3.Error as exc:
        cursor.close()
        raise sa.exc.DBAPIError.instance(
            sql, params, exc, sqlite3.Error, dialect=conn.dialect, ismulti=many
        ) from exc
    except asyncio.CancelledError:
        # As SQLAlchemy does for a statement cut by a non-Exception: the connection is
        # closed (its transaction rolled back on the spot) rather than reused.
        cursor.close()
        await conn.invalidate()  # never suspends on SQLite: the close is synchronous
        raise
    if dispatch.after_cursor_execute:
        for listener in dispatch.after_cursor_execute:
            listener(sync, cursor, sql, params, None, many)
    cursor.close()
    if compiled.row is None:
        return rows
    procs = compiled.processors
    make = compiled.row._make  # type: ignore[attr-defined]
    return [make([v if p is None else p(v) for p, v in zip(procs, r, strict=True)]) for r in rows]
