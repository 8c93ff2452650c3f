"""Statements built once, with bound values (issue #12): a statement constructed per
execution costs SQLAlchemy's coercions and a fresh cache key every time, more CPU than
SQLite takes to run it. A prebuilt statement keeps its cache key (memoised on the
object), so an execution only binds its parameters.

Parameters are named ``p_<column>`` so that a name never equals a column's: SQLAlchemy
would take such a parameter of an UPDATE or INSERT as one more column to set."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa


def bound(column: sa.ColumnElement[Any], name: str | None = None) -> sa.BindParameter[Any]:
    """A bound parameter typed as ``column`` (named ``p_<column name>`` unless ``name``)."""
    key = name if name is not None else str(getattr(column, "name", ""))
    if not key:
        raise ValueError("a bound parameter needs a name")
    return sa.bindparam(f"p_{key}", type_=column.type)


def bound_list(column: sa.ColumnElement[Any], name: str) -> sa.BindParameter[Any]:
    """An expanding (``IN``) parameter of ``column``'s values: one statement for every
    length of the list."""
    return sa.bindparam(f"p_{name}", type_=column.type, expanding=True)
