"""``start_workspace`` (docs/behaviour.md §5.3): idempotent; start means running — a dead
agent of a started workspace is rebuilt, not waited on. Holds the chat's workspace mutex
throughout (CW-22)."""

from __future__ import annotations

from typing import Any

from tether.chatd.tools.lifecycle.common import IN_PROGRESS, Lifecycle, NoArgs
from tether.chatd.tools.readiness import wait_build
from tether.domain.workspace import JobStatus, Transition, Workspace
from tether.errors import NoWorkspace, TetherError, WorkspaceDeleted
from tether.workspaces.startrunning import StartAction, StartOutcome


async def start_workspace(lc: Lifecycle, _args: NoArgs) -> dict[str, Any]:
    return await lc.after_ready(await _start(lc))


async def _start(lc: Lifecycle) -> dict[str, Any]:
    deps, settings = lc.deps, lc.settings
    async with lc.ctx.state.workspace_lock:
        chat = await deps.chats.get(lc.ctx.chat_id)
        if chat.workspace_id is None:
            raise NoWorkspace("the chat has no workspace; use create_workspace first")
        ws = await deps.workspace_store.get(chat.workspace_id)
        if ws.deleted:
            raise WorkspaceDeleted()
        latest = await deps.workspace_store.latest_build(ws.id)
        if latest is None:
            raise TetherError("the workspace has no build")
        if latest.status in IN_PROGRESS:
            await lc.bind(ws, latest)
            error = await wait_build(deps, latest.id)
            if error is not None:
                return {
                    "error": f"waiting for in-progress build: {error}",
                    "build_id": str(latest.id),
                }
            return await lc.started(ws, latest)
        if latest.status is JobStatus.SUCCEEDED and latest.transition is Transition.START:
            # Start means running: a dead agent (killed, frozen) is rebuilt, not waited on.
            outcome = await deps.workspaces.start(
                await lc.owner(), ws.id, timeout_s=settings.build_timeout_s, reason="chat"
            )
            if outcome.action is not StartAction.REBUILT:
                return await lc.started(ws, None)
            return await _rebuilt(lc, ws, outcome)
        build, _ = await deps.workspaces.transition(
            await lc.owner(), ws.id, Transition.START, reason="chat"
        )
        await lc.bind(ws, build)
        error = await wait_build(deps, build.id)
        if error is not None:
            return {
                "error": f"workspace start build failed: {error}",
                "build_id": str(build.id),
            }
        result = await lc.started(ws, build)
        if build.template_version_id != latest.template_version_id:
            result["updated_to_active_version"] = True
            result["update_reason"] = "template requires active versions"
            result["message"] = (
                "the workspace was started on the template's active version, "
                "which differs from the version of its previous build"
            )
        return result


async def _rebuilt(lc: Lifecycle, ws: Workspace, outcome: StartOutcome) -> dict[str, Any]:
    await lc.bind(ws, outcome.build)
    error = await wait_build(lc.deps, outcome.build.id)
    if error is not None:
        return {
            "error": f"rebuilding the workspace failed: {error}",
            "build_id": str(outcome.build.id),
        }
    result = await lc.started(ws, outcome.build)
    result.update(rebuilt=True, message=outcome.message)
    return result
