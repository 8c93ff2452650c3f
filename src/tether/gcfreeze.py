"""Freezing what survived a full garbage collection (issue #12, the open-loop latency tail).

A full (generation-2) collection walks every object the collector tracks and is not frozen,
on the one event loop: with 1,000 cached chats ≈ 136 k objects, 70–80 ms of CPU, and more
as the chats' cached history grows (``chatd/historycache.py`` keeps up to
``history_cache_max_messages`` parsed messages, ≈ 25 tracked objects each). Almost all of
it is long-lived state that the collection cannot free: it survived the last one too.

:class:`SurvivorFreezer` is a ``gc.callbacks`` hook: when a full collection ends it
:func:`gc.freeze` s the survivors (O(1): the generation's list is spliced into the permanent
one), so the next full collection walks only what was promoted since, and a young
collection is unchanged. Frozen objects are still freed by reference counting when dropped;
only a reference cycle among them is not found. That is the price, bounded in time: every
``unfreeze_interval_s`` the hook calls :func:`gc.unfreeze` instead, so the next full
collection walks everything once (start-up objects included: ≈ 393 k after the server's
imports, ≈ 116 ms of CPU, plus the chats' state; one such pause per interval) and frees the
cycles that died meanwhile, and the one after
freezes again. What can die in a cycle after being frozen is what was alive during a full
collection and is short-lived: the turns in flight at that moment (a few hundred objects
each); long-lived state that a chat drops must go by reference counting anyway
(``tests/integration/chatd/test_chat_state_cycles.py``).

The hook runs inside the collector, on whichever thread triggered the collection: it does
nothing but read the clock and splice the lists. :func:`~tether.gctune.tune_collector`
installs it (``Settings.gc_freeze_survivors``, ``gc_unfreeze_interval_s``;
docs/operations.md §2.3).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

FULL = 2  # the oldest generation's number


class SurvivorFreezer:
    """Freezes the survivors of each full collection; unfreezes instead when
    ``unfreeze_interval_s`` has passed since the last unfreeze (or since it was made).
    ``clock`` (seconds, monotonic), ``freeze`` and ``unfreeze`` are the interpreter's unless
    a test replaces them."""

    def __init__(
        self,
        unfreeze_interval_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        freeze: Callable[[], None] = gc.freeze,
        unfreeze: Callable[[], None] = gc.unfreeze,
    ) -> None:
        self.unfreeze_interval_s = unfreeze_interval_s
        self._clock = clock
        self._freeze = freeze
        self._unfreeze = unfreeze
        self._unfrozen_at = clock()
        self.freezes = 0
        self.unfreezes = 0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase != "stop" or info.get("generation") != FULL:
            return
        now = self._clock()
        if now - self._unfrozen_at >= self.unfreeze_interval_s:
            self._unfrozen_at = now
            self.unfreezes += 1
            self._unfreeze()
        else:
            self.freezes += 1
            self._freeze()

    def install(self) -> None:
        if self not in gc.callbacks:
            gc.callbacks.append(self)

    def uninstall(self) -> None:
        if self in gc.callbacks:
            gc.callbacks.remove(self)
