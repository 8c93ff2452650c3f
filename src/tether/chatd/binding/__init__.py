"""The binding: which workspace agent a chat talks to, and its connection
(docs/behaviour.md §4). The modules follow that section:

- ``types``: the vocabulary — a chat's binding columns, the agent row, a connection;
- ``agentselect`` (§4.1): the chat agent of a build;
- ``resolver`` (§4.2, §4.3): the agent for the chat's binding (binding-first, lazy bind and
  repair) and the pre-dial gate;
- ``conncache`` (§4.4): the chat's connection, kept across turns; the gate's one memo;
- ``lazydial`` (§4.5): a dial that validates the binding only when it is slow or fails;
- ``adapters``: the real seams — the binding store over the database, the agent dialer.
"""

from tether.chatd.binding.adapters import AgentDialer, StoreBinding, binding_of
from tether.chatd.binding.agentselect import select_chat_agent
from tether.chatd.binding.conncache import (
    ANCESTOR_CHAT_IDS_HEADER,
    CHAT_ID_HEADER,
    ChatConnections,
    Dialer,
)
from tether.chatd.binding.lazydial import DialResult, dial_with_lazy_validation
from tether.chatd.binding.resolver import AgentResolver, BindingStore
from tether.chatd.binding.types import AgentRow, ChatBinding, Conn

__all__ = [
    "ANCESTOR_CHAT_IDS_HEADER",
    "CHAT_ID_HEADER",
    "AgentDialer",
    "AgentResolver",
    "AgentRow",
    "BindingStore",
    "ChatBinding",
    "ChatConnections",
    "Conn",
    "DialResult",
    "Dialer",
    "StoreBinding",
    "binding_of",
    "dial_with_lazy_validation",
    "select_chat_agent",
]
