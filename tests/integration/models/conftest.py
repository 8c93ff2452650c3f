"""Fixtures of the model tests (helpers live in ``models_env``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from models_env import SECRET_KEY
from pydantic_ai.models import override_allow_model_requests


@pytest.fixture(autouse=True)
def _provider_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_PROVIDER_API_KEY", SECRET_KEY)


@pytest.fixture
def allow_loopback_provider() -> Iterator[None]:
    """The suite refuses real model requests; these tests' provider is the loopback fake."""
    with override_allow_model_requests(True):
        yield
