"""LLM unit tests never reach a real provider (pydantic-ai's ALLOW_MODEL_REQUESTS guard)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tether.testing.models import block_real_model_requests


@pytest.fixture(autouse=True)
def _no_real_model_requests() -> Iterator[None]:
    with block_real_model_requests():
        yield
