"""Freezing the survivors of full collections (``src/tether/gcfreeze.py``, issue #12): the
policy by direct calls with an injected clock, then with the interpreter's collector — a
frozen cycle is not freed until the interval's unfreeze, and is freed after it."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import pytest

from tether.gcfreeze import SurvivorFreezer
from tether.gctune import tune_collector
from tether.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _policy(interval_s: float, clock: Clock, calls: list[str]) -> SurvivorFreezer:
    return SurvivorFreezer(
        interval_s,
        clock=clock,
        freeze=lambda: calls.append("freeze"),
        unfreeze=lambda: calls.append("unfreeze"),
    )


def test_only_the_end_of_a_full_collection_freezes() -> None:
    clock, calls = Clock(), []
    freezer = _policy(60.0, clock, calls)
    for gen in (0, 1, 2):
        freezer("start", {"generation": gen})
    freezer("stop", {"generation": 0, "collected": 5, "uncollectable": 0})
    freezer("stop", {"generation": 1, "collected": 5, "uncollectable": 0})
    assert calls == []
    freezer("stop", {"generation": 2, "collected": 5, "uncollectable": 0})
    assert calls == ["freeze"]


def test_an_unfreeze_every_interval_instead_of_a_freeze() -> None:
    clock, calls = Clock(), []
    freezer = _policy(60.0, clock, calls)
    full = {"generation": 2, "collected": 0, "uncollectable": 0}
    clock.now += 59.9
    freezer("stop", full)
    assert calls == ["freeze"]
    clock.now += 0.1  # the interval since the freezer was made
    freezer("stop", full)
    assert calls == ["freeze", "unfreeze"]
    freezer("stop", full)  # the next full collection walked everything: freeze again
    clock.now += 59.0
    freezer("stop", full)
    assert calls == ["freeze", "unfreeze", "freeze", "freeze"]
    clock.now += 1.0  # the interval since the last unfreeze, not since the last freeze
    freezer("stop", full)
    assert calls[-1] == "unfreeze"
    assert (freezer.freezes, freezer.unfreezes) == (3, 2)


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def _cycle() -> tuple[weakref.ref[Node], Node]:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a), a


@pytest.mark.usefixtures("restored_gc")
def test_a_cycle_frozen_by_a_full_collection_is_freed_after_the_unfreeze() -> None:
    clock = Clock()
    freezer = SurvivorFreezer(60.0, clock=clock)
    freezer.install()
    try:
        alive, keep = _cycle()
        gc.collect()  # a full collection: the cycle survives it, alive, and is frozen
        assert gc.get_freeze_count() > 0 and freezer.freezes == 1
        assert gc.is_tracked(keep)
        assert not any(o is keep for o in gc.get_objects(generation=2))
        del keep
        gc.collect()  # frozen: a full collection does not walk it, so it stays
        assert alive() is not None
        clock.now += 60.0
        gc.collect()  # ends with the unfreeze …
        assert freezer.unfreezes == 1 and gc.get_freeze_count() == 0
        gc.collect()  # … so the next full collection frees the cycle
        assert alive() is None
    finally:
        freezer.uninstall()
    assert freezer not in gc.callbacks


@pytest.mark.usefixtures("restored_gc")
def test_tune_collector_installs_the_freezer_unless_switched_off(tmp_path: Path) -> None:
    freezer = tune_collector(Settings(data_dir=tmp_path, gc_unfreeze_interval_s=120.0))
    assert freezer is not None
    try:
        assert freezer in gc.callbacks and freezer.unfreeze_interval_s == 120.0
    finally:
        freezer.uninstall()
    gc.unfreeze()
    assert tune_collector(Settings(data_dir=tmp_path, gc_freeze_survivors=False)) is None
    assert tune_collector(Settings(data_dir=tmp_path, gc_tune=False)) is None
    assert not any(isinstance(cb, SurvivorFreezer) for cb in gc.callbacks)


def test_the_unfreeze_interval_is_positive(tmp_path: Path) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        Settings(data_dir=tmp_path, gc_unfreeze_interval_s=0)
