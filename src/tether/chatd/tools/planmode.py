"""Plan mode (docs/behaviour.md §5.7, PL-9): the model plans without changing the workspace.

A plan-mode turn keeps only the tools that read — ``read_file``, ``list_dir``,
``process_list``, ``process_output``, ``list_templates``, ``read_template`` and the subagent
tools (children inherit plan mode, SA-2) — and a ``write_file`` that writes the chat's plan
file and nothing else. ``execute``, ``edit_files``, ``process_signal`` and the lifecycle
writes (``create_workspace``, ``start_workspace``, ``stop_workspace``) are not offered, and
the turn skips workspace MCP discovery (MCP tools can do anything).

The plan file is ``~/.tether/plans/<chat id>.md`` in the workspace: the agent resolves
``~`` itself, so no lookup (and no dial) is needed to name it.
"""

from __future__ import annotations

import posixpath
import uuid
from typing import Any

from pydantic_ai import Tool

from tether.chatd.tools.base import ToolContext, make_tool
from tether.chatd.tools.workspace import WriteFileArgs
from tether.errors import Forbidden

# Tools that change the workspace or its lifecycle: never offered in plan mode.
WRITE_TOOLS = frozenset(
    {
        "execute",
        "edit_files",
        "process_signal",
        "write_file",  # replaced by the plan-file-only version below
        "create_workspace",
        "start_workspace",
        "stop_workspace",
    }
)

PLAN_PROMPT = (
    "Plan mode is on: do not change the workspace. You can read files, list directories and "
    "templates, and ask subagents (they are in plan mode too). Write your plan, as Markdown, "
    "to the plan file {path} with write_file — the only file you may write — and then "
    "summarise it for the user."
)


def plan_path(chat_id: uuid.UUID) -> str:
    """The chat's plan file in the workspace (``~`` is the workspace user's home)."""
    return f"~/.tether/plans/{chat_id}.md"


def is_plan_path(chat_id: uuid.UUID, path: str) -> bool:
    """True only for the chat's own plan file; ``..`` and other spellings are normalised
    first so ``~/.tether/plans/x/../<id>.md`` is the plan file and ``~/x`` is not."""
    return posixpath.normpath(path.strip()) == plan_path(chat_id)


def plan_prompt(chat_id: uuid.UUID) -> str:
    return PLAN_PROMPT.format(path=plan_path(chat_id))


def plan_mode_tools(ctx: ToolContext, tools: list[Tool[Any]]) -> list[Tool[Any]]:
    """``tools`` without the write tools, plus the plan-file ``write_file``."""
    path = plan_path(ctx.chat_id)

    async def write_plan(args: WriteFileArgs) -> dict[str, Any]:
        if not is_plan_path(ctx.chat_id, args.path):
            raise Forbidden(
                f"plan mode: only the plan file {path} may be written, not {args.path!r}"
            )
        res = await ctx.with_agent(lambda c: c.write_file(path, args.content))
        return {"ok": True, "path": res.path, "bytes_written": res.bytes_written}

    kept = [t for t in tools if t.name not in WRITE_TOOLS]
    return [
        *kept,
        make_tool(
            "write_file",
            f"Plan mode: write the plan (Markdown) to {path}; no other file may be written.",
            WriteFileArgs,
            write_plan,
        ),
    ]
