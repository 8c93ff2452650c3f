"""Every dependency in ``api/deps.py`` is ``async def``: FastAPI runs a plain ``def``
dependency in a worker thread, a thread hand-off per dependency per request (issue #12)."""

from __future__ import annotations

import inspect
import typing

from tether.api import auth, deps, revocation


def test_every_typed_dependency_is_a_coroutine_function() -> None:
    found = []
    for module in (deps, auth, revocation):
        for name, value in vars(module).items():
            if typing.get_origin(value) is not typing.Annotated:
                continue
            for meta in value.__metadata__:
                dependency = getattr(meta, "dependency", None)
                if dependency is not None:
                    found.append((name, dependency))
    assert len(found) >= 20
    sync = [name for name, dep in found if not inspect.iscoroutinefunction(dep)]
    assert sync == []
