"""Fixtures shared by the unit tests."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest


@pytest.fixture
def restored_gc() -> Iterator[None]:
    """The collector's thresholds as they were, and nothing left frozen, after a test that
    tunes the collector (``tether.gctune``, ``tether.gcfreeze``)."""
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)
