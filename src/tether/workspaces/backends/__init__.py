"""Workspace backends: where workspaces run (:mod:`.base` is the seam, :mod:`.local` the
built-in implementation)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tether.errors import InvalidInput
from tether.workspaces.backends.base import WorkspaceBackend

BACKEND_NAMES = ("local", "docker")


def backend_for(name: str, *, root: Path, server_url: str, **options: Any) -> WorkspaceBackend:
    """Build the backend called ``name`` (a template's ``backend``); ``options`` go to its
    constructor. Raises InvalidInput for an unknown name."""
    if name == "local":
        # Imported here: local.py imports this package (a module-level import would cycle).
        from tether.workspaces.backends.local import LocalBackend

        return LocalBackend(root, server_url, **options)
    if name == "docker":
        from tether.workspaces.backends.docker import DockerBackend

        return DockerBackend(root, server_url, **options)
    raise InvalidInput(
        f"unknown workspace backend {name!r} (known: {', '.join(BACKEND_NAMES)})", field="backend"
    )
