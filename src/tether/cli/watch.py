"""Waiting for builds and agents with live progress (job log lines as they arrive)."""

from __future__ import annotations

import asyncio
import contextlib
import time

from rich.text import Text

from tether.cli.output import Output
from tether.sdk import Build, TetherClient, WaitTimeout, Workspace
from tether.sdk.models import LIFECYCLE_DONE

BUILD_WAIT_S = 15 * 60.0  # above the server's default build timeout (10 min)
AGENT_WAIT_S = 60.0
_LEVEL_STYLE = {"error": "red", "warn": "yellow", "warning": "yellow", "debug": "dim"}


async def watch_build(
    client: TetherClient, out: Output, ref: str, build: Build, *, timeout: float = BUILD_WAIT_S
) -> Build:
    """Stream the build's job log until it finishes; return the finished build."""
    console = out.progress
    label = f"{build.transition} build #{build.build_number}"
    deadline = time.monotonic() + timeout
    final: Build | None = None
    with console.status(f"{ref}: {label} {build.status}…"):
        try:
            async with asyncio.timeout(timeout):
                events = client.follow_logs(ref, build.build_number)
                async with contextlib.aclosing(events):
                    async for event, data in events:
                        if event == "log" and isinstance(data, dict):
                            level = str(data.get("level", "info"))
                            console.print(
                                Text(str(data.get("output", "")), style=_LEVEL_STYLE.get(level, ""))
                            )
                        elif event == "done" and isinstance(data, dict):
                            final = Build.model_validate(data)
        except TimeoutError:
            raise WaitTimeout(f"{label} of {ref} did not finish within {timeout:g}s") from None
        if final is None:  # the stream ended early (server restart): fall back to polling
            remaining = max(deadline - time.monotonic(), 1.0)
            final = await client.wait_for_build(ref, build.id, remaining)
    report_build(out, ref, final)
    return final


def report_build(out: Output, ref: str, build: Build) -> None:
    label = f"{build.transition} build #{build.build_number}"
    if build.succeeded:
        out.progress.print(Text(f"✓ {ref}: {label} succeeded", style="green"))
    else:
        reason = f": {build.error}" if build.error else ""
        out.error(f"{ref}: {label} {build.status}{reason}", "build_" + build.status)


async def wait_agent(
    client: TetherClient, out: Output, ref: str, *, timeout: float = AGENT_WAIT_S
) -> tuple[Workspace, bool]:
    """Poll until the chat agent's lifecycle is ready or failed (bounded). Returns the
    workspace and whether the agent failed (start_error / start_timeout / timeout)."""
    deadline = time.monotonic() + timeout
    with out.progress.status(f"{ref}: waiting for the agent…") as status:
        while True:
            ws = await client.get_workspace(ref)
            agent = ws.chat_agent()
            if agent is not None:
                status.update(f"{ref}: agent {agent.name} {agent.status}, {agent.lifecycle_state}…")
                if agent.lifecycle_state in LIFECYCLE_DONE or agent.status == "timeout":
                    break
            if ws.state != "running" or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.25)
    agent = ws.chat_agent()
    if agent is None:
        out.note(f"{ref}: the workspace has no agent (state {ws.state})", style="yellow")
        return ws, False
    summary = f"agent {agent.name}: {agent.status}, {agent.lifecycle_state}"
    if agent.lifecycle_state == "ready":
        out.progress.print(Text(f"✓ {ref}: {summary}", style="green"))
        return ws, False
    if agent.lifecycle_state in LIFECYCLE_DONE or agent.status == "timeout":
        out.error(
            f"{ref}: {summary} (see the startup script log)", "agent_" + agent.lifecycle_state
        )
        return ws, True
    out.note(f"{ref}: {summary} — still not ready after {timeout:g}s", style="yellow")
    return ws, False
