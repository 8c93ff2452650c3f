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
from typing import Annotated, Literal

from fastapi import Depends

from tether.api.deps import BusDep, ChatServiceDep, UserStoreDep, WorkspaceServiceDep
from tether.api.revocation import publish_revoked
from tether.chatd.service import ChatService
from tether.db.pubsub import EventBus
from tether.db.users import UserStore
from tether.domain.chat import ChatStatus
from tether.domain.user import User
from tether.domain.workspace import Transition
from tether.errors import Conflict, TetherError
from tether.workspaces.service import WorkspaceService

log = logging.getLogger("tether.api.useradmin")

DataChoice = Literal["keep", "remove"]


@dataclass
class DeletionReport:
    user: User
    data: DataChoice
    workspaces: dict[str, str] = field(default_factory=dict)  # name → what was done
    chats_interrupted: int = 0
    chats_deleted: int = 0


@dataclass
class UserDeletion:
    """What deleting a user touches: the user store, the bus (revocation), the chats and
    the workspaces."""

    users: UserStore
    bus: EventBus
    chats: ChatService
    workspaces: WorkspaceService

    async def delete_user(self, actor: User, target: User, data: DataChoice) -> DeletionReport:
        if target.id == actor.id:
            raise Conflict("admins cannot delete themselves")
        report = DeletionReport(user=target, data=data)
        await self.users.set_disabled(target.id, True)
        await publish_revoked(self.bus, user_id=target.id)

        for status in (ChatStatus.PENDING, ChatStatus.RUNNING):
            busy = await self.chats.list(
                target, archived=None, status=status, roots_only=False, limit=100_000
            )
            for chat in busy:
                await self.chats.interrupt(target, chat.id)
                report.chats_interrupted += 1

        transition = Transition.DELETE if data == "remove" else Transition.STOP
        for ws in await self.workspaces.list(actor, all_users=True):
            if ws.owner_id != target.id:
                continue
            view = await self.workspaces.view_of(ws)
            if transition is Transition.STOP and view.state in ("stopped", "stopping", "failed"):
                report.workspaces[ws.name] = f"already {view.state}"
                continue
            try:
                build, _ = await self.workspaces.transition(
                    actor, ws.id, transition, reason="user deleted"
                )
            except TetherError as exc:
                # reported, not hidden: the admin sees which workspace needs attention
                report.workspaces[ws.name] = f"failed: {exc.message}"
                continue
            report.workspaces[ws.name] = f"{transition.value} build #{build.build_number}"

        if data == "remove":
            report.chats_deleted = await self.users.purge_chats(target.id)
        await self.users.mark_deleted(target.id)
        await publish_revoked(self.bus, user_id=target.id)
        log.info("deleted user %s (data: %s): %s", target.name, data, report.workspaces)
        return report


def user_deletion(
    users: UserStoreDep, bus: BusDep, chats: ChatServiceDep, workspaces: WorkspaceServiceDep
) -> UserDeletion:
    return UserDeletion(users, bus, chats, workspaces)


UserDeletionDep = Annotated[UserDeletion, Depends(user_deletion)]
