"""Fixtures for the binding tests against real agents (see ``binding_env.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from binding_env import BindingEnv, binding_env


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[BindingEnv]:
    async with binding_env(tmp_path) as running:
        yield running
