"""Finding and signalling a workspace's agent process, for fault tests.

One place knows how a test finds an agent's PID (today: the local backend's ``inspect``,
which reads its pidfiles), so a backend that wraps agents (a sandbox) changes only this.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tether.workspaces.backends.base import WorkspaceRef


async def agent_pid(graph: Any, workspace_id: uuid.UUID, backend: str = "local") -> int:
    """The PID of the workspace's (one) agent process."""
    ws = await graph.workspace_store.get(workspace_id)
    ref = WorkspaceRef(workspace_id=ws.id, owner_name="", name=ws.name, template_name="")
    runtime = await graph.backends[backend].inspect(ref)
    [pid] = runtime.agent_pids.values()
    return int(pid)


@contextlib.contextmanager
def frozen(pid: int) -> Iterator[None]:
    """SIGSTOP ``pid`` for the block; SIGCONT on the way out, whatever happens (a stopped
    agent left behind would hang the teardown's graceful stop)."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def agent_pid_on_disk(data_dir: Path, workspace_id: uuid.UUID) -> int:
    """The PID of the workspace's (one) agent, for tests that run the server as a separate
    process (no graph to ask): read from the local backend's records under ``data_dir``."""
    records = list((data_dir / "workspaces" / str(workspace_id) / "agents").glob("*.pid"))
    [record] = records
    return int(json.loads(record.read_text())["pid"])
