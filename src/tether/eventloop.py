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
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar

from tether.errors import TetherError

T = TypeVar("T")

LoopName = Literal["asyncio", "uvloop"]


def loop_choice(setting: str) -> LoopName:
    """The loop ``setting`` (``auto``, ``asyncio`` or ``uvloop``) selects: ``auto`` is uvloop
    when it is importable. A forced ``uvloop`` that is missing is a configuration error."""
    if setting == "asyncio":
        return "asyncio"
    try:
        import uvloop  # noqa: F401
    except ImportError:
        available = False
    else:
        available = True
    if setting == "uvloop" and not available:
        raise TetherError("event_loop is uvloop but uvloop is not installed")
    return "uvloop" if available else "asyncio"


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
