"""One path for chat state (issue #13): the chat tools change chats only through
:class:`~tether.chatd.service.ChatService`, never by writing the store or publishing
wake-ups themselves."""

from __future__ import annotations

import ast
from pathlib import Path

import tether.chatd.tools

TOOLS = Path(tether.chatd.tools.__file__).resolve().parent
MUTATORS = {
    "create",
    "transition",
    "set_fields",
    "enqueue",
    "send_user_message",
    "submit_user_message",
    "cancel_pending",
    "finish_turn",
}


def _writes(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Attribute) or not isinstance(node.value, ast.Attribute):
            continue
        owner = node.value.attr
        if (owner == "chats" and node.attr in MUTATORS) or (
            owner == "bus" and node.attr == "publish"
        ):
            found.append(f"{owner}.{node.attr} (line {node.lineno})")
    return found


def test_chat_tools_change_chats_only_through_the_service() -> None:
    offenders = {p.name: w for p in sorted(TOOLS.rglob("*.py")) if (w := _writes(p))}
    assert offenders == {}
