"""Start-up reconciliation of backends that keep state outside the server (containers,
volumes): remove what belongs to workspaces the database no longer has (deleted while the
server was down, or a delete that failed half-way). Backends opt in with
``remove_unknown(known, log)`` (see the docker backend); an engine that does not answer is
logged and skipped, never fatal."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping

from tether.db.workspaces import WorkspaceStore
from tether.errors import TetherError

log = logging.getLogger("tether.reconcile")


async def reconcile_backends(workspaces: WorkspaceStore, backends: Mapping[str, object]) -> None:
    async def known() -> set[uuid.UUID]:
        return {ws.id for ws in await workspaces.list()}

    async def sink(level: str, line: str) -> None:
        log.log(logging.WARNING if level != "info" else logging.INFO, "%s", line)

    for name, backend in list(backends.items()):  # a backend may be added meanwhile
        remove = getattr(backend, "remove_unknown", None)
        if remove is None:
            continue
        try:
            removed = await remove(known, sink)
        except TetherError as exc:
            log.info("%s backend not reconciled: %s", name, exc.message)
            continue
        except Exception:  # never takes the provisioner down
            log.exception("%s backend: reconciliation failed", name)
            continue
        if removed:
            log.warning(
                "%s backend: removed the leftovers of %d unknown workspace(s): %s",
                name,
                len(removed),
                ", ".join(map(str, removed)),
            )
