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
  reference counting before a collection sees them.
* A generation-1 collection runs every ``Settings.gc_gen1_threshold`` (3) young ones, not
  CPython's 10: it walks generations 0 and 1, i.e. what survived the young collections
  since the last one — every chat's newly cached history and state, the turns in flight —
  and with the raised generation-0 threshold ten windows' survivors came to 40–60 k
  objects with 300 cached chats, 20–30 ms of CPU (up to 127 k and 68 ms when the server
  falls behind): the "young" pauses of tens of ms in the open-loop tail. Three windows'
  survivors are ≈ 25 k objects, ≈ 8 ms. Generation 2 keeps CPython's multiplier (10).
* What survives a full collection is frozen too (``src/tether/gcfreeze.py``), so a full
  collection walks only what was promoted since the last one.

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

GEN2_THRESHOLD = 10  # CPython's default multiplier, kept


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
    gc.set_threshold(settings.gc_gen0_threshold, settings.gc_gen1_threshold, GEN2_THRESHOLD)
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
