"""``tether workspaces …`` (alias ``tether ws``): create, list, show, start, stop, delete,
rebuild, cancel, builds, logs. Commands that start a build wait for it by default, showing
the job log live; the exit code is 1 when the build (or the agent's startup) failed."""

from __future__ import annotations

import contextlib
from typing import Annotated

import typer
from rich.text import Text

from tether.cli.common import JsonOpt, run
from tether.cli.output import Output
from tether.cli.parse import parse_duration_ms, parse_params
from tether.cli.watch import report_build, wait_agent, watch_build
from tether.sdk import ApiError, Build, TetherClient, Workspace

app = typer.Typer(help="Manage workspaces.", no_args_is_help=True)

NoWait = Annotated[
    bool, typer.Option("--no-wait", help="Return once the build is queued; do not wait.")
]
Name = Annotated[str, typer.Argument(help="Workspace name or id.")]
STARTUP_LOG_TAIL = 20  # lines of the startup-script log shown when a start fails


async def _finish(
    client: TetherClient, out: Output, ref: str, build: Build, *, wait: bool, follow: bool = True
) -> int:
    """Wait for ``build`` (unless ``wait`` is off), then for the agent after a start; print
    the workspace (JSON) or a summary. Returns the exit code."""
    code = 0
    if wait:
        if follow:
            build = await watch_build(client, out, ref, build)
        else:
            report_build(out, ref, build)
        if not build.succeeded:
            code = 1
        elif build.transition == "start":
            started, failed = await wait_agent(client, out, ref)
            if failed:
                await _show_startup_log(client, out, ref, started)
            code = 1 if failed else 0
    if build.transition == "delete" and build.succeeded:
        out.emit({"build": build}, f"workspace {ref} deleted")
        return code
    ws = await client.get_workspace(ref)
    if out.json_mode:
        out.json(ws)
    else:
        out.line(f"workspace {ws.name} is {ws.state}")
    return code


async def _show_startup_log(client: TetherClient, out: Output, ref: str, ws: Workspace) -> None:
    """After a failed start: the last lines of the chat agent's startup-script log (stderr)."""
    agent = ws.chat_agent()
    if agent is None:
        return
    try:
        logs = await client.agent_logs(ref, str(agent.id))
    except ApiError as exc:  # the log is a courtesy: the failure itself was already reported
        out.note(f"{ref}: could not fetch the startup log: {exc}", style="yellow")
        return
    lines = logs[-STARTUP_LOG_TAIL:]
    if not lines:
        return
    out.note(f"{ref}: last {len(lines)} lines of agent {agent.name}'s startup log:")
    for line in lines:
        style = "red" if line.get("level") == "error" else None
        out.note("  " + str(line.get("output", "")), style=style)


@app.command("create")
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Name of the new workspace.")],
    template: Annotated[str, typer.Option("--template", "-t", help="Template name or id.")],
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="Parameter key=value (repeatable).")
    ] = None,
    ttl: Annotated[
        str | None, typer.Option(help="Stop after this much inactivity (e.g. 2h, 30m).")
    ] = None,
    no_wait: NoWait = False,
    json_mode: JsonOpt = False,
) -> None:
    """Create a workspace from a template and start it."""
    params = parse_params(param)
    ttl_ms = parse_duration_ms(ttl) if ttl is not None else None

    async def body(client: TetherClient, out: Output) -> int:
        ws = await client.create_workspace(template, name, params, ttl_ms)
        if ws.latest_build is None or no_wait:
            out.emit(ws, f"workspace {ws.name} created ({ws.state})")
            return 0
        return await _finish(client, out, ws.name, ws.latest_build, wait=True)

    run(ctx, json_mode, body)


@app.command("list")
def list_workspaces(
    ctx: typer.Context,
    all: Annotated[bool, typer.Option("--all", "-a", help="Every user's (admins).")] = False,
    json_mode: JsonOpt = False,
) -> None:
    """List your workspaces."""

    async def body(client: TetherClient, out: Output) -> int:
        items = await client.list_workspaces(all=all)
        if out.json_mode:
            out.json(items)
        elif not items:
            out.line("no workspaces: create one with `tether workspaces create NAME -t TEMPLATE`")
        else:
            columns = ["NAME", "TEMPLATE", "STATE", "AGENT", "LAST USED"]
            if all:
                columns.append("OWNER")
            rows = []
            for ws in items:
                row = [ws.name, ws.template_name, ws.state, _agent_summary(ws), _when(ws)]
                if all:
                    row.append(str(ws.owner_id))
                rows.append(row)
            out.table(columns, rows)
        return 0

    run(ctx, json_mode, body)


@app.command("show")
def show(ctx: typer.Context, name: Name, json_mode: JsonOpt = False) -> None:
    """Show a workspace, its latest build and its agents."""

    async def body(client: TetherClient, out: Output) -> int:
        ws = await client.get_workspace(name)
        if out.json_mode:
            out.json(ws)
            return 0
        b = ws.latest_build
        out.fields(
            [
                ("name", ws.name),
                ("id", ws.id),
                ("template", ws.template_name),
                ("state", ws.state),
                ("build", f"#{b.build_number} {b.transition} {b.status}" if b else "-"),
                ("ttl", f"{ws.ttl_ms / 1000:g}s" if ws.ttl_ms else "-"),
                ("deadline", ws.deadline.isoformat(timespec="seconds") if ws.deadline else "-"),
                ("last used", _when(ws)),
            ]
        )
        if b is not None and b.error:
            out.line(f"build error: {b.error}", style="red")
        if ws.agents:
            out.line("")
            out.table(
                ["AGENT", "STATUS", "LIFECYCLE", "CHAT", "OS", "DIRECTORY"],
                [
                    (
                        a.name,
                        a.status,
                        a.lifecycle_state,
                        "yes" if a.chat else "",
                        a.os,
                        a.directory,
                    )
                    for a in ws.agents
                ],
            )
        return 0

    run(ctx, json_mode, body)


@app.command("start")
def start(
    ctx: typer.Context,
    name: Name,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="Parameter key=value (repeatable).")
    ] = None,
    no_wait: NoWait = False,
    json_mode: JsonOpt = False,
) -> None:
    """Start a stopped workspace."""
    params = parse_params(param)

    async def body(client: TetherClient, out: Output) -> int:
        result = await client.start_workspace(name, params or None)
        if result.action == "rebuilt":
            out.note(f"{name}: {result.message}", style="yellow")
        elif not result.created and not result.build.in_progress:
            out.note(f"{name}: already running (build #{result.build.build_number})")
        follow = result.created or result.build.in_progress
        return await _finish(client, out, name, result.build, wait=not no_wait, follow=follow)

    run(ctx, json_mode, body)


@app.command("stop")
def stop(
    ctx: typer.Context, name: Name, no_wait: NoWait = False, json_mode: JsonOpt = False
) -> None:
    """Stop a workspace (its agent and processes end)."""

    async def body(client: TetherClient, out: Output) -> int:
        result = await client.stop_workspace(name)
        follow = result.created or result.build.in_progress
        return await _finish(client, out, name, result.build, wait=not no_wait, follow=follow)

    run(ctx, json_mode, body)


@app.command("delete")
def delete(
    ctx: typer.Context,
    name: Name,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    no_wait: NoWait = False,
    json_mode: JsonOpt = False,
) -> None:
    """Delete a workspace (stops it first)."""
    if not yes:
        typer.confirm(f"Delete workspace {name}? Its files are removed.", abort=True)

    async def body(client: TetherClient, out: Output) -> int:
        result = await client.delete_workspace(name)
        return await _finish(client, out, name, result.build, wait=not no_wait)

    run(ctx, json_mode, body)


@app.command("rebuild")
def rebuild(
    ctx: typer.Context, name: Name, no_wait: NoWait = False, json_mode: JsonOpt = False
) -> None:
    """Stop and start a workspace again (new agent; same files)."""

    async def body(client: TetherClient, out: Output) -> int:
        result = await client.rebuild_workspace(name)
        return await _finish(client, out, name, result.build, wait=not no_wait)

    run(ctx, json_mode, body)


@app.command("cancel")
def cancel(ctx: typer.Context, name: Name, json_mode: JsonOpt = False) -> None:
    """Cancel the workspace's running build."""

    async def body(client: TetherClient, out: Output) -> int:
        build = await client.cancel_build(name)
        if out.json_mode:
            out.json(build)
        else:
            out.line(f"{name}: build #{build.build_number} is {build.status}")
        return 0

    run(ctx, json_mode, body)


@app.command("builds")
def builds(ctx: typer.Context, name: Name, json_mode: JsonOpt = False) -> None:
    """List the workspace's builds."""

    async def body(client: TetherClient, out: Output) -> int:
        items = await client.list_builds(name)
        if out.json_mode:
            out.json(items)
        else:
            out.table(
                ["BUILD", "TRANSITION", "STATUS", "REASON", "CREATED", "ERROR"],
                [
                    (
                        f"#{b.build_number}",
                        b.transition,
                        b.status,
                        b.reason,
                        b.created_at.isoformat(timespec="seconds"),
                        b.error or "",
                    )
                    for b in items
                ],
            )
        return 0

    run(ctx, json_mode, body)


@app.command("logs")
def logs(
    ctx: typer.Context,
    name: Name,
    build: Annotated[int | None, typer.Option(help="Build number (default: latest).")] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep streaming until the build finishes.")
    ] = False,
    json_mode: JsonOpt = False,
) -> None:
    """Print a build's job log."""

    async def body(client: TetherClient, out: Output) -> int:
        if not follow:
            result = await client.build_logs(name, build)
            if out.json_mode:
                out.json(result)
            else:
                for line in result.logs:
                    out.line(line.output, style="red" if line.level == "error" else None)
            return 0
        lines: list[dict[str, object]] = []
        done: Build | None = None
        events = client.follow_logs(name, build)
        async with contextlib.aclosing(events):
            async for event, data in events:
                if event == "log" and isinstance(data, dict):
                    lines.append(data)
                    if not out.json_mode:
                        out.out.print(Text(str(data.get("output", ""))))
                elif event == "done" and isinstance(data, dict):
                    done = Build.model_validate(data)
        if out.json_mode:
            out.json({"build": done, "logs": lines})
        elif done is not None:
            report_build(out, name, done)
        return 0

    run(ctx, json_mode, body)


def _agent_summary(ws: Workspace) -> str:
    agent = ws.chat_agent()
    return f"{agent.name} {agent.status}/{agent.lifecycle_state}" if agent else "-"


def _when(ws: Workspace) -> str:
    return ws.last_used_at.isoformat(timespec="seconds")
