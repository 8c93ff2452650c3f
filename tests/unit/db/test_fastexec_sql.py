"""Which prebuilt statements take the fast path (db/fastexec.py, issue #12): every
``FastStatement`` of the stores compiles for SQLite (a change that made one fall back to
SQLAlchemy's path would cost the warm turn its CPU again silently), none for PostgreSQL
(asyncpg's transaction starts inside its adapter), and a caller-bound ``IN`` list or a
repeated column name falls back."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect

from tether.db import chatclaims, chatrows, chats, compactions, jobs, users
from tether.db.fastexec import FastStatement
from tether.db.prebuilt import bound, bound_list
from tether.db.sqliteloop import SQLiteLoopDialect
from tether.db.tables import chats as chats_t
from tether.db.tables import users as users_t

SQLITE, POSTGRES = SQLiteLoopDialect(), asyncpg_dialect()


def _store_statements() -> dict[str, FastStatement]:
    found = {}
    for module in (chatclaims, chatrows, chats, compactions, jobs, users):
        for name, value in vars(module).items():
            items = value.items() if isinstance(value, dict) else [(None, value)]
            for key, stmt in items:
                if isinstance(stmt, FastStatement):
                    found[f"{module.__name__}.{name}[{key}]"] = stmt
    sends = [("waiting", "error"), ("waiting", "error", "pending")]
    for direct in sends:
        for owned in (False, True):
            found[f"send {direct} owned={owned}"] = chats._settle_fast(direct, owned)
    found["subagent send"] = chats._settle_fast(("waiting", "error"), False, False)
    return found


STATEMENTS = _store_statements()


def test_the_warm_turns_statements_are_all_there() -> None:
    names = " ".join(STATEMENTS)
    for expected in ("_CLAIM_FAST", "_SETTLE_IF_UNQUEUED_FAST", "_INSERT_MESSAGE_FAST"):
        assert expected in names
    assert "_INSERT_USAGE_FAST" in names and "send" in names


@pytest.mark.parametrize("name", sorted(STATEMENTS))
def test_a_store_statement_takes_the_fast_path_on_sqlite_only(name: str) -> None:
    stmt = STATEMENTS[name]
    assert stmt._for(SQLITE) is not None
    assert stmt._for(POSTGRES) is None


def test_a_callers_list_or_a_repeated_column_name_falls_back() -> None:
    ids = bound_list(chats_t.c.id, "ids")
    assert FastStatement(sa.select(chats_t.c.id).where(chats_t.c.id.in_(ids)))._for(SQLITE) is None
    twice = sa.select(chats_t.c.id, users_t.c.id).where(chats_t.c.id == bound(chats_t.c.id))
    assert FastStatement(twice)._for(SQLITE) is None
    own_list = sa.select(chats_t.c.id).where(chats_t.c.status.in_(["a", "b"]))
    fixed = FastStatement(own_list)._for(SQLITE)
    assert fixed is not None and "IN (?, ?)" in fixed.sql
