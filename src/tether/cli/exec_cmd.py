"""``tether exec WORKSPACE [--timeout S] [--workdir D] -- CMD...``: run a command through
the workspace's agent; its output goes to stdout and its exit code becomes ours."""

from __future__ import annotations

import shlex
import sys
from typing import Annotated

import typer

from tether.cli.common import JsonOpt, run
from tether.cli.output import Output
from tether.sdk import BackgroundStarted, TetherClient

TIMEOUT_EXIT = 124  # what coreutils `timeout` returns


def command_line(argv: list[str]) -> str:
    """One argument is a shell command line as written (``"ls | wc -l"``); several are
    quoted into one (``sh -c 'exit 3'``)."""
    return argv[0] if len(argv) == 1 else shlex.join(argv)


def exec_command(
    ctx: typer.Context,
    workspace: Annotated[str, typer.Argument(help="Workspace name or id.")],
    cmd: Annotated[list[str], typer.Argument(help="The command (after --).")],
    timeout: Annotated[float, typer.Option(help="Seconds before the command is killed.")] = 30.0,
    workdir: Annotated[
        str | None, typer.Option(help="Working directory (default: the agent's).")
    ] = None,
    background: Annotated[
        bool, typer.Option("--background", help="Start it in the background and return.")
    ] = False,
    json_mode: JsonOpt = False,
) -> None:
    """Run a command in a workspace and exit with its exit code (124 on timeout)."""
    if timeout <= 0:
        raise typer.BadParameter("must be positive", param_hint="'--timeout'")
    command = command_line(cmd)

    async def body(client: TetherClient, out: Output) -> int:
        result = await client.exec(
            workspace, command, timeout_s=timeout, workdir=workdir, background=background
        )
        if isinstance(result, BackgroundStarted):
            out.emit(result, f"started background process {result.process_id}")
            return 0
        if out.json_mode:
            out.json(result)
        else:
            sys.stdout.write(result.output)
            if result.output and not result.output.endswith("\n"):
                sys.stdout.write("\n")
            sys.stdout.flush()
        if result.truncated:
            out.note("(output truncated)", style="yellow")
        if result.timed_out:
            out.error(f"command timed out after {timeout:g}s and was killed", "timeout")
            return TIMEOUT_EXIT
        if result.error:
            out.error(result.error, "exec_error")
        if result.exit_code < 0 or result.exit_code > 255:
            return 1
        return result.exit_code

    run(ctx, json_mode, body)
