"""A real server (uvicorn, SQLite, the real chat worker and model registry) whose models
point at a fake OpenAI-compatible server on a loopback socket (``tether.testing``)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic_ai.models import override_allow_model_requests

from support.server import RunningServer, fast_settings, running_server
from tether.testing.fake_openai import FakeOpenAI

SECRET_KEY = "sk-secret-do-not-leak-4711"


@pytest.fixture(autouse=True)
def _provider_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_PROVIDER_API_KEY", SECRET_KEY)


@pytest.fixture
def allow_loopback_provider() -> Iterator[None]:
    """The suite refuses real model requests; these tests' provider is the loopback fake."""
    with override_allow_model_requests(True):
        yield


def model_entry(name: str, url: str, **options: Any) -> dict[str, Any]:
    return {
        "name": name,
        "provider": "openai-compatible",
        "model": "fake-model",
        "base_url": url,
        "api_key_env": "FAKE_PROVIDER_API_KEY",
        "request_timeout_s": 1.0,
        "connect_timeout_s": 1.0,
        "max_retries": 0,
        **options,
    }


@contextlib.asynccontextmanager
async def start_server(
    tmp_path: Path, models: list[dict[str, Any]], **overrides: Any
) -> AsyncIterator[RunningServer]:
    settings = fast_settings(
        tmp_path,
        run_provisioner=False,
        models_json=json.dumps({"default": models[0]["name"], "models": models}),
        **overrides,
    )
    async with running_server(settings) as server:
        yield server


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI().running() as f:
        yield f
