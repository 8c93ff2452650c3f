"""Naming a chat on the command line: an id, a unique id prefix or an exact title."""

from __future__ import annotations

import uuid
from typing import Annotated

import typer

from tether.cli.common import CliError
from tether.sdk.chats import Chat, ChatsAPI

ChatRef = Annotated[str, typer.Argument(help="Chat id, unique id prefix or exact title.")]


async def resolve_chat(chats: ChatsAPI, ref: str) -> Chat:
    """A chat by id, unique id prefix or exact title (archived chats included)."""
    try:
        return await chats.get(uuid.UUID(ref))
    except ValueError:
        pass
    candidates = await chats.list() + await chats.list(archived=True)
    found = {c.id: c for c in candidates if str(c.id).startswith(ref.lower()) or c.title == ref}
    if len(found) == 1:
        return next(iter(found.values()))
    if not found:
        raise CliError(f"no chat matches {ref!r} (see `tether chat list`)", code="not_found")
    raise CliError(f"{ref!r} matches {len(found)} chats; use more of the id", code="ambiguous")
