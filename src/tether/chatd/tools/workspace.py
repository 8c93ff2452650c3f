"""Tools that run over the chat's agent connection (docs/behaviour.md §5.2): execute,
process_output, process_list, process_signal, read_file, write_file, edit_files, list_dir.

Each one reaches the agent only through :meth:`ToolContext.with_agent`, so a missing,
stopped or unreachable workspace becomes a typed error result (see ``tools/base.py``).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field
from pydantic_ai import Tool

from tether.agent.schemas import EXEC_ENV, BackgroundStarted, ExecResult
from tether.chatd.tools.base import Args, ToolContext, invalid_arguments, make_tool
from tether.durations import parse_duration

_FILE_DUMP_RE = re.compile(r"^\s*(cat|head|tail|less|more)\s+[^|;&]+$")
READ_FILE_NOTE = "to read a file, prefer the read_file tool (it pages long files by line)"


def _compact(result: dict[str, Any]) -> dict[str, Any]:
    """Drop ``None`` fields: an ``error`` key is present only when something failed (the
    scripted demo model and UIs detect failure by the key)."""
    return {k: v for k, v in result.items() if v is not None}


def cap_output(text: str, cap_bytes: int) -> tuple[str, bool]:
    """``text`` cut to at most ``cap_bytes`` of UTF-8 on a character boundary."""
    raw = text.encode()
    if len(raw) <= cap_bytes:
        return text, False
    return raw[:cap_bytes].decode(errors="ignore"), True


class ExecuteArgs(Args):
    command: str = Field(min_length=1, description="Shell command (run with sh -c).")
    timeout: str | float | None = Field(
        default=None, description='Foreground timeout, e.g. "30s" or "2m" (default 10s).'
    )
    workdir: str | None = Field(default=None, description="Working directory.")
    run_in_background: bool = Field(
        default=False, description="Start and return a background_process_id at once."
    )


class ProcessIdArgs(Args):
    process_id: str = Field(min_length=1)


class NoArgs(Args):
    pass


class SignalArgs(Args):
    process_id: str = Field(min_length=1)
    signal: Literal["terminate", "kill"]


class ReadFileArgs(Args):
    path: str = Field(min_length=1)
    offset: int = Field(default=1, ge=1, description="First line to read (1-based).")
    limit: int | None = Field(default=None, ge=1, description="Lines to read (default 2000).")


class WriteFileArgs(Args):
    path: str = Field(min_length=1)
    content: str


class Edit(Args):
    search: str = Field(description="Exact text to find (must match once).")
    replace: str


class FileEdits(Args):
    path: str = Field(min_length=1)
    edits: list[Edit] = Field(min_length=1)


class EditFilesArgs(Args):
    files: list[FileEdits] = Field(min_length=1)


class ListDirArgs(Args):
    path: str = Field(default=".", min_length=1)


def workspace_tools(ctx: ToolContext) -> list[Tool[Any]]:
    settings = ctx.deps.settings

    async def execute(args: ExecuteArgs) -> dict[str, Any]:
        timeout_s = settings.exec_default_timeout_s
        if args.timeout is not None:
            try:
                timeout_s = parse_duration(args.timeout)
            except ValueError as exc:
                raise invalid_arguments(str(exc)) from exc
            timeout_s = min(timeout_s, settings.exec_max_timeout_s)
        env = dict(EXEC_ENV)
        if args.run_in_background:
            started: BackgroundStarted = await ctx.with_agent(
                lambda c: c.exec(args.command, workdir=args.workdir, background=True, env=env),
                retry_request=False,
            )
            return _compact(
                {
                    "success": True,
                    "output": "",
                    "exit_code": None,
                    "wall_duration_ms": 0,
                    "error": None,
                    "truncated": False,
                    "note": "started in the background; use process_output to read its output",
                    "background_process_id": started.process_id,
                }
            )
        result: ExecResult = await ctx.with_agent(
            lambda c: c.exec(args.command, timeout_s=timeout_s, workdir=args.workdir, env=env),
            retry_request=False,  # the command may already have run
        )
        output, cut = cap_output(result.output, settings.exec_output_cap_bytes)
        error = result.error
        exit_code = result.exit_code
        if result.timed_out:
            exit_code = -1
            error = f"command timed out after {timeout_s:g}s"
        return _compact(
            {
                "success": exit_code == 0 and not result.timed_out,
                "output": output,
                "exit_code": exit_code,
                "wall_duration_ms": result.wall_ms,
                "error": error,
                "truncated": result.truncated or cut,
                "note": READ_FILE_NOTE if _FILE_DUMP_RE.match(args.command) else None,
                "background_process_id": None,
            }
        )

    async def process_output(args: ProcessIdArgs) -> dict[str, Any]:
        out = await ctx.with_agent(lambda c: c.process_output(args.process_id))
        output, cut = cap_output(out.output, settings.exec_output_cap_bytes)
        return _compact(
            {
                "success": out.running or out.exit_code == 0,
                "output": output,
                "exit_code": out.exit_code,
                "running": out.running,
                "truncated": out.truncated or cut,
                "note": "process is still running" if out.running else None,
            }
        )

    async def process_list(_: NoArgs) -> dict[str, Any]:
        listing = await ctx.with_agent(lambda c: c.process_list())
        return listing.model_dump(mode="json")

    async def process_signal(args: SignalArgs) -> dict[str, Any]:
        res = await ctx.with_agent(lambda c: c.process_signal(args.process_id, args.signal))
        return {"success": True, "message": res.message}

    async def read_file(args: ReadFileArgs) -> dict[str, Any]:
        limit = args.limit or settings.read_file_default_limit
        res = await ctx.with_agent(lambda c: c.read_file(args.path, args.offset, limit))
        return res.model_dump(mode="json")

    async def write_file(args: WriteFileArgs) -> dict[str, Any]:
        res = await ctx.with_agent(lambda c: c.write_file(args.path, args.content))
        return {"ok": True, "path": res.path, "bytes_written": res.bytes_written}

    async def edit_files(args: EditFilesArgs) -> dict[str, Any]:
        files = [f.model_dump() for f in args.files]
        res = await ctx.with_agent(lambda c: c.edit_files(files))
        return res.model_dump(mode="json")

    async def list_dir(args: ListDirArgs) -> dict[str, Any]:
        res = await ctx.with_agent(lambda c: c.list_dir(args.path))
        return res.model_dump(mode="json")

    return [
        make_tool(
            "execute",
            "Run a shell command in the workspace. Foreground commands wait up to `timeout`; "
            "use run_in_background for servers and long jobs.",
            ExecuteArgs,
            execute,
        ),
        make_tool(
            "process_output",
            "Output and state of a background process, or of a foreground command whose "
            "execute call ended early (by the process id the error reported).",
            ProcessIdArgs,
            process_output,
        ),
        make_tool("process_list", "List the workspace's processes.", NoArgs, process_list),
        make_tool(
            "process_signal",
            "Send terminate or kill to a background process.",
            SignalArgs,
            process_signal,
        ),
        make_tool(
            "read_file",
            "Read a text file by line window (offset is 1-based; default 2000 lines).",
            ReadFileArgs,
            read_file,
        ),
        make_tool(
            "write_file", "Create or overwrite a file with content.", WriteFileArgs, write_file
        ),
        make_tool(
            "edit_files",
            "Apply search/replace edits to files; each search text must match exactly once.",
            EditFilesArgs,
            edit_files,
        ),
        make_tool("list_dir", "List a directory.", ListDirArgs, list_dir),
    ]
