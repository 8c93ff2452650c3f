"""The server process's garbage-collector tuning, applied once after start-up
(:func:`tune_collector`; ``tether server`` in ``src/tether/server.py`` and the benchmarks'
in-process server in ``bench/benchlib.py`` call this one function).

Why (issue #12; ``python -m bench.turns --gc`` measures it): a started server holds
≈ 200 k long-lived objects (modules, pydantic-ai and pydantic schemas, SQLAlchemy, the
graph). CPython's full (generation-2) collection walks all of them, ≈ 140 ms on one event
loop — every chat stream and turn stalls that long — every ≈ 100 turns; and the default
generation-0 threshold (700 allocations) runs a young collection more than once per turn.

* :func:`gc.freeze` after a full collection moves everything alive at start-up to the
  permanent generation: the collector never scans it again, so a full collection walks
  only what the server allocated since (chats, caches). Start-up garbage is collected
  first, so nothing collectable is pinned; frozen objects are still freed by reference
  counting when dropped, only cycles among them would stay.
* The generation-0 threshold (``Settings.gc_gen0_threshold``) is raised so the young
  collections run several times less often; the objects of one turn mostly die by
  reference counting before a collection sees them. Generations 1 and 2 keep CPython's
  multipliers (10, 10).

The price: an object that outlives a few young collections reaches the oldest generation,
and if it dies in a reference cycle it waits for the next full collection (CPython runs
one only when that generation has grown by a quarter). Long-lived state that is dropped —
a chat the worker forgets — must therefore go by reference counting
(``tests/integration/chatd/test_chat_state_cycles.py``; docs/operations.md §2.3).
"""

from __future__ import annotations

import gc
import logging

from tether.gcfreeze import SurvivorFreezer
from tether.settings import Settings

log = logging.getLogger("tether.gctune")

GEN1_THRESHOLD = 10  # CPython's default multipliers, kept
GEN2_THRESHOLD = 10


def tune_collector(settings: Settings) -> SurvivorFreezer | None:
    """Freeze what start-up left alive and raise the young generation's threshold, unless
    ``settings.gc_tune`` is off; with ``settings.gc_freeze_survivors``, also install the
    hook that freezes what survives each full collection (src/tether/gcfreeze.py) and
    return it (its ``uninstall`` removes it). Call once, after the graph and the app are
    built."""
    if not settings.gc_tune:
        return None
    gc.collect()
    gc.freeze()
    gc.set_threshold(settings.gc_gen0_threshold, GEN1_THRESHOLD, GEN2_THRESHOLD)
    freezer = None
    if settings.gc_freeze_survivors:
        freezer = SurvivorFreezer(settings.gc_unfreeze_interval_s)
        freezer.install()
    log.info(
        "garbage collector: %d start-up objects frozen, thresholds %s, survivors of full "
        "collections frozen: %s",
        gc.get_freeze_count(),
        gc.get_threshold(),
        freezer is not None,
    )
    return freezer
