"""The chat store and stream hub of a process graph, made once and shared by the API side
and the chat worker (so subscribers see what the worker publishes)."""

from __future__ import annotations

from typing import Any

from tether.chatd.stream import ChatStreamHub
from tether.db.chats import ChatStore


def chats_and_hub(graph: Any) -> tuple[ChatStore, ChatStreamHub]:
    """The graph's ``chats`` store and ``hub``; made and kept in ``graph.extras`` when the
    graph has none yet."""
    chats = getattr(graph, "chats", None) or graph.extras.get("chats")
    if chats is None:
        chats = graph.extras["chats"] = ChatStore(graph.engine, graph.clock)
    hub = getattr(graph, "hub", None) or graph.extras.get("hub")
    if hub is None:
        hub = graph.extras["hub"] = ChatStreamHub()
    return chats, hub
