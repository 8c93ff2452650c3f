"""Deleting a user: what happens to their workspaces and chats is the admin's explicit
choice (``keep`` or ``remove``), never a default.

Order matters: the user is disabled first (every token gets 401 and their open streams end),
then their running chats are interrupted and their workspaces stopped (``keep``) or deleted
(``remove``, which also deletes their chats), and finally the user row is marked deleted
and its tokens removed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

from tether.api.revocation import publish_revoked
from tether.domain.chat import ChatStatus
from tether.domain.user import User
from tether.domain.workspace import Transition
from tether.errors import Conflict, TetherError

log = logging.getLogger("tether.api.useradmin")

DataChoice = Literal["keep", "remove"]


@dataclass
class DeletionReport:
    user: User
    data: DataChoice
    workspaces: dict[str, str] = field(default_factory=dict)  # name → what was done
    chats_interrupted: int = 0
    chats_deleted: int = 0


async def delete_user(graph: Any, actor: User, target: User, data: DataChoice) -> DeletionReport:
    if target.id == actor.id:
        raise Conflict("admins cannot delete themselves")
    report = DeletionReport(user=target, data=data)
    await graph.users.set_disabled(target.id, True)
    await publish_revoked(graph.bus, user_id=target.id)

    for status in (ChatStatus.PENDING, ChatStatus.RUNNING):
        busy = await graph.chat_service.list(
            target, archived=None, status=status, roots_only=False, limit=100_000
        )
        for chat in busy:
            await graph.chat_service.interrupt(target, chat.id)
            report.chats_interrupted += 1

    transition = Transition.DELETE if data == "remove" else Transition.STOP
    for ws in await graph.workspaces.list(actor, all_users=True):
        if ws.owner_id != target.id:
            continue
        view = await graph.workspaces.view_of(ws)
        if transition is Transition.STOP and view.state in ("stopped", "stopping", "failed"):
            report.workspaces[ws.name] = f"already {view.state}"
            continue
        try:
            build, _ = await graph.workspaces.transition(
                actor, ws.id, transition, reason="user deleted"
            )
        except TetherError as exc:
            # reported, not hidden: the admin sees which workspace needs attention
            report.workspaces[ws.name] = f"failed: {exc.message}"
            continue
        report.workspaces[ws.name] = f"{transition.value} build #{build.build_number}"

    if data == "remove":
        report.chats_deleted = await graph.users.purge_chats(target.id)
    await graph.users.mark_deleted(target.id)
    await publish_revoked(graph.bus, user_id=target.id)
    log.info("deleted user %s (data: %s): %s", target.name, data, report.workspaces)
    return report
