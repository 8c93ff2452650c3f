"""Fixtures for the binding tests against real agents (see ``binding_env.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from binding_env import BindingEnv, binding_env


@pytest.fixture
async def env(tmp_path: Path, db_url: str) -> AsyncIterator[BindingEnv]:
    """Once per dialect: SQLite and PostgreSQL (``db_url``)."""
    async with binding_env(tmp_path, db_url=db_url) as running:
        yield running
