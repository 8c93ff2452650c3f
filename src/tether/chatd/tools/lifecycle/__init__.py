"""Workspace lifecycle tools for root chats (docs/behaviour.md §5.3, with tether's
``stop_workspace``): list_templates, read_template, create_workspace, start_workspace,
stop_workspace — one module per tool, the shared parts in ``common.py``.

create/start/stop hold the chat's workspace mutex (kept by the worker across turns) for
their whole duration, builds and agent waits included, so parallel calls in one step never
create two workspaces (CW-22); the idempotency check reads the database, so a later turn is
safe as well. The chat is bound as soon as a build exists (agent NULL, bound lazily by the
connection cache on first use — CW-27/SW-13).
"""

from __future__ import annotations

import functools
from typing import Any

from pydantic_ai import Tool

from tether.chatd.tools.base import ToolContext, make_tool
from tether.chatd.tools.lifecycle.common import (
    CreateWorkspaceArgs,
    Lifecycle,
    ListTemplatesArgs,
    NoArgs,
    TemplateIdArgs,
    generate_name,
    workspace_name_for,
)
from tether.chatd.tools.lifecycle.create_workspace import create_workspace
from tether.chatd.tools.lifecycle.start_workspace import start_workspace
from tether.chatd.tools.lifecycle.stop_workspace import stop_workspace
from tether.chatd.tools.lifecycle.templates import list_templates, read_template

__all__ = ["generate_name", "lifecycle_tools", "workspace_name_for"]


def lifecycle_tools(ctx: ToolContext) -> list[Tool[Any]]:
    lc = Lifecycle(ctx)
    return [
        make_tool(
            "list_templates",
            "List workspace templates (10 per page).",
            ListTemplatesArgs,
            functools.partial(list_templates, lc),
        ),
        make_tool(
            "read_template",
            "Describe a template and its parameters.",
            TemplateIdArgs,
            functools.partial(read_template, lc),
        ),
        make_tool(
            "create_workspace",
            "Create a workspace for this chat from a template and wait until it is ready. "
            "Idempotent: if the chat already has a usable workspace it is returned instead.",
            CreateWorkspaceArgs,
            functools.partial(create_workspace, lc),
        ),
        make_tool(
            "start_workspace",
            "Start the chat's stopped workspace and wait until it is ready. Idempotent.",
            NoArgs,
            functools.partial(start_workspace, lc),
        ),
        make_tool(
            "stop_workspace",
            "Stop the chat's workspace (its processes end; files are kept).",
            NoArgs,
            functools.partial(stop_workspace, lc),
        ),
    ]
