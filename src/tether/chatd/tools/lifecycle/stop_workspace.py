"""``stop_workspace`` (tether's addition to docs/behaviour.md §5.3): processes end, files
are kept; an already stopped workspace is reported as such. Holds the chat's workspace
mutex throughout (CW-22)."""

from __future__ import annotations

from typing import Any

from tether.chatd.tools.lifecycle.common import Lifecycle, NoArgs
from tether.chatd.tools.readiness import wait_build
from tether.domain.workspace import JobStatus, Transition
from tether.errors import NoWorkspace, WorkspaceDeleted


async def stop_workspace(lc: Lifecycle, _args: NoArgs) -> dict[str, Any]:
    deps = lc.deps
    async with lc.ctx.state.workspace_lock:
        chat = await deps.chats.get(lc.ctx.chat_id)
        if chat.workspace_id is None:
            raise NoWorkspace()
        ws = await deps.workspace_store.get(chat.workspace_id)
        if ws.deleted:
            raise WorkspaceDeleted()
        latest = await deps.workspace_store.latest_build(ws.id)
        if (
            latest is not None
            and latest.status is JobStatus.SUCCEEDED
            and latest.transition is Transition.STOP
        ):
            return {"stopped": True, "already_stopped": True, "build_id": str(latest.id)}
        build, _ = await deps.workspaces.transition(
            await lc.owner(), ws.id, Transition.STOP, reason="chat"
        )
        await lc.bind(ws, build)  # also evicts the chat's cached connection
        error = await wait_build(deps, build.id)
        if error is not None:
            return {"error": f"workspace stop build failed: {error}", "build_id": str(build.id)}
        return {"stopped": True, "build_id": str(build.id)}
