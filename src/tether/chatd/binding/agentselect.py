"""Which agent of a build a chat talks to (docs/behaviour.md §4.1).

tether marks the chat agent with the template's ``chat: true`` flag; the upstream
``-coderd-chat`` name-suffix convention is not used.
"""

from __future__ import annotations

from collections.abc import Iterable

from tether.chatd.binding.types import AgentRow
from tether.errors import AgentSelectionError, WorkspaceStopped


def select_chat_agent(agents: Iterable[AgentRow]) -> AgentRow:
    """Pick the chat agent among the agents of one build.

    1. Only root agents (``parent_id`` is None) count; none → :class:`WorkspaceStopped`
       (the build has nothing a chat can dial, which is what "no agent" means to callers).
    2. Exactly one root agent with ``chat=True`` → that one; more than one →
       :class:`AgentSelectionError`.
    3. Otherwise the first by ``display_order``, lower-cased name, name, id.
    """
    roots = [a for a in agents if a.parent_id is None]
    if not roots:
        raise WorkspaceStopped()
    flagged = [a for a in roots if a.chat]
    if len(flagged) > 1:
        names = ", ".join(sorted(a.name for a in flagged))
        raise AgentSelectionError(
            f"multiple agents are marked chat: true ({names}); mark exactly one",
            agents=sorted(a.name for a in flagged),
        )
    if flagged:
        return flagged[0]
    return min(roots, key=lambda a: (a.display_order, a.name.lower(), a.name, a.id))
