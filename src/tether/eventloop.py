"""The server's event loop (issue #12): uvloop, uvicorn's own "standard" choice, when it is
importable, else asyncio's; ``Settings.event_loop`` forces either (an operator's fallback).

Only ``tether server`` (and the benchmarks' in-process server, so they measure what
production runs) runs on it. The agent stays on asyncio: it idles most of its life and its
footprint is kept small (tests/unit/agent/test_agent_footprint.py).

What differs on uvloop, and why it does not matter here:

* ``loop.time()`` has millisecond resolution (libuv's clock). The deadlines computed from
  it (``db/sqliteloop.py``'s busy wait, ``chatd/follow.py``'s poll and ping, the task
  owner's shutdown bound) are tens of milliseconds and more.
* Subprocesses (``workspaces/images.py``), signal handlers (uvicorn's), ``to_thread`` and
  ``call_soon_threadsafe`` are asyncio's API, which uvloop implements in full; the local
  backend starts agents with ``subprocess`` in a thread and watches no pidfd on the loop.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar

from tether.errors import TetherError

T = TypeVar("T")

LoopName = Literal["asyncio", "uvloop"]


def fast_choice(setting: str, *, field: str, fast: str, fallback: str) -> str:
    """What an ``auto | <fallback> | <fast>`` setting selects: ``auto`` is the ``fast``
    module when it is importable, else ``fallback``. A forced ``fast`` that is missing is a
    configuration error naming ``field``."""
    if setting == fallback:
        return fallback
    available = importlib.util.find_spec(fast) is not None
    if setting == fast and not available:
        raise TetherError(f"{field} is {fast} but {fast} is not installed")
    return fast if available else fallback


def loop_choice(setting: str) -> LoopName:
    """The loop ``setting`` (``auto``, ``asyncio`` or ``uvloop``) selects: ``auto`` is uvloop
    when it is importable. A forced ``uvloop`` that is missing is a configuration error."""
    choice = fast_choice(setting, field="event_loop", fast="uvloop", fallback="asyncio")
    return "uvloop" if choice == "uvloop" else "asyncio"


def loop_factory(name: LoopName) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """A new loop of that kind (None: asyncio's default)."""
    if name == "asyncio":
        return None
    import uvloop

    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T], setting: str) -> T:
    """``asyncio.run(main)`` on the loop ``setting`` selects."""
    try:
        factory = loop_factory(loop_choice(setting))
    except BaseException:
        main.close()  # never started: no "never awaited" warning
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


def running_loop_name() -> LoopName:
    """What the running loop is (what a server reports it serves on)."""
    module = type(asyncio.get_running_loop()).__module__
    return "uvloop" if module.split(".")[0] == "uvloop" else "asyncio"
