"""Chat operations on behalf of a user: create, read, send, interrupt, archive.

Access: a member sees and acts only on their own chats; anyone else's chat is
:class:`~tether.errors.NotFound` (never Forbidden, so ids do not leak). Admins can see and
act on every chat, but a chat can only be *created* on the actor's own workspace.

Every state change the service causes is announced: on the stream hub (``status``,
``queue_update`` and persisted user ``message`` events, so subscribers see them at once) and
on the event bus (``chats`` → ``{"type": "pending"}`` wakes the workers;
``chat:<id>`` → ``{"type": "interrupt"}`` wakes the worker running the turn). The database
stays the truth: the worker also watches the row's status / ``interrupt_requested``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from tether.channels import CHATS, chat_channel
from tether.chatd.context import check_single_message
from tether.chatd.follow import status_data
from tether.chatd.images import ImageRules, check_image, count_images
from tether.chatd.relay import StreamRelay
from tether.chatd.stream import ChatStreamHub
from tether.chatd.subagentops import SubagentOps
from tether.clock import Clock
from tether.db.chatlabels import check_labels
from tether.db.chats import ChatStore
from tether.db.chatsummary import ChatSummary
from tether.db.pubsub import EventBus
from tether.domain.chat import Chat, ChatStatus, QueuedMessage, StoredMessage
from tether.domain.user import User
from tether.errors import Conflict, ImagesNotSupported, InvalidInput, NotFound, TetherError
from tether.llm.budget import Budget
from tether.workspaces.service import WorkspaceService

Busy = Literal["queue", "interrupt"]
Content = str | Sequence[dict[str, Any]]

TITLE_CHARS = 60
MAX_TITLE = 256
MAX_MESSAGES_PAGE = 500
BUSY_STATUSES = frozenset({ChatStatus.PENDING, ChatStatus.RUNNING, ChatStatus.INTERRUPTING})


@dataclass(frozen=True)
class MessagePage:
    messages: list[StoredMessage]
    next_after_seq: int | None  # pass as ``after_seq`` for the next page; None at the end


@dataclass(frozen=True)
class SendResult:
    chat: Chat
    message: StoredMessage | None  # persisted now (the chat was idle)
    queued_message: QueuedMessage | None  # queued (a turn is pending or running)
    # the chat's queue length, labels and usage, read with it (None: read them when needed)
    summary: ChatSummary | None = None

    @property
    def queued(self) -> bool:
        return self.queued_message is not None


def user_parts(content: Content, images: ImageRules | None = None) -> list[dict[str, Any]]:
    """Normalise what a user sends into stored parts: a string is one text part; a list
    may hold only ``{"type": "text", "text": ...}`` parts (users cannot author tool calls
    or context files) and, with ``images``, image parts (chatd/images.py). InvalidInput
    (field ``content``) for anything else or no text and no image."""
    if isinstance(content, str):
        raw: list[Any] = [{"type": "text", "text": content}]
    else:
        raw = list(content)
    parts: list[dict[str, Any]] = []
    for i, part in enumerate(raw):
        if images is not None and isinstance(part, dict) and part.get("type") == "image":
            parts.append(check_image(i, part, images))
            if count_images(parts) > images.max_count:
                raise InvalidInput(
                    f"at most {images.max_count} images per message", field=f"content[{i}]"
                )
            continue
        if not isinstance(part, dict) or part.get("type") != "text":
            raise InvalidInput(
                f"content[{i}]: only text parts can be sent", field=f"content[{i}].type"
            )
        text = part.get("text")
        if not isinstance(text, str):
            raise InvalidInput(f"content[{i}].text must be a string", field=f"content[{i}].text")
        if set(part) - {"type", "text"}:
            extra = sorted(set(part) - {"type", "text"})
            raise InvalidInput(f"content[{i}]: unknown fields {extra}", field=f"content[{i}]")
        parts.append({"type": "text", "text": text})
    if not any(p.get("text", "").strip() or p["type"] == "image" for p in parts):
        raise InvalidInput("content must contain some text", field="content")
    return parts


def title_from(parts: list[dict[str, Any]]) -> str:
    text = " ".join(" ".join(p.get("text", "").split()) for p in parts if p.get("type") == "text")
    text = text.strip() or "New chat"
    return text if len(text) <= TITLE_CHARS else text[: TITLE_CHARS - 1].rstrip() + "…"


@dataclass(frozen=True)
class _Asked:
    """A model a send asked for: its configured name and config, or the lookup's error."""

    name: str
    config: Any | None
    error: TetherError | None


class ModelNames(Protocol):
    """Which model names a chat may use (``tether.llm.registry.ModelRegistry``)."""

    async def chat_model(self, requested: str | None) -> str: ...


class ChatService(SubagentOps):
    def __init__(
        self,
        *,
        chats: ChatStore,
        workspaces: WorkspaceService,
        hub: ChatStreamHub,
        bus: EventBus,
        clock: Clock,
        max_queued: int = 20,
        stream_poll_s: float = 1.0,
        stream_ping_s: float = 15.0,
        models: ModelNames | None = None,
        images: ImageRules | None = None,
    ) -> None:
        self.store = chats
        self.images = images  # None: image parts are refused
        self._models = models
        self.hub = hub
        self.clock = clock
        self.stream_poll_s = stream_poll_s
        self.stream_ping_s = stream_ping_s
        # other replicas' stream events (tether.chatd.relay), if any
        self.stream_remote: StreamRelay | None = None
        # whether this process sees every change of a chat now (chatd/follow.py Pacing);
        # streams then re-read the database only every stream_fallback_poll_s
        self.stream_complete: Callable[[], bool] | None = None
        self.stream_fallback_poll_s = 30.0
        self._workspaces = workspaces
        self._bus = bus
        self._max_queued = max_queued

    # --- access -------------------------------------------------------------------------

    async def get(self, actor: User, chat_id: uuid.UUID) -> Chat:
        """The chat, if the actor may see it; NotFound otherwise."""
        try:
            chat = await self.store.get(chat_id)
        except NotFound:
            chat = None
        if chat is None or (chat.owner_id != actor.id and not actor.is_admin):
            raise NotFound(f"chat {chat_id} not found")
        return chat

    async def children(self, actor: User, chat_id: uuid.UUID) -> list[Chat]:
        """The subagent chats spawned by this chat (archived ones included)."""
        chat = await self.get(actor, chat_id)
        return await self.store.list(
            owner_id=chat.owner_id, archived=None, parent_chat_id=chat.id, limit=200
        )

    async def queued_counts(self, chats: list[Chat]) -> dict[uuid.UUID, int]:
        return await self.store.queued_counts([c.id for c in chats])

    async def queued(self, actor: User, chat_id: uuid.UUID) -> list[QueuedMessage]:
        chat = await self.get(actor, chat_id)
        return await self.store.queued(chat.id)

    async def messages(
        self,
        actor: User,
        chat_id: uuid.UUID,
        *,
        after_seq: int = 0,
        limit: int = 100,
        include_superseded: bool = False,
    ) -> MessagePage:
        """One page of history in ``seq`` order, after ``after_seq``; messages an edit
        replaced only with ``include_superseded``."""
        chat = await self.get(actor, chat_id)
        limit = max(1, min(limit, MAX_MESSAGES_PAGE))
        # one extra row tells whether another page exists without a count query
        rows = await self.store.messages(
            chat.id,
            after_seq=max(0, after_seq),
            limit=limit + 1,
            include_superseded=include_superseded,
        )
        page = rows[:limit]
        more = len(rows) > limit
        return MessagePage(page, page[-1].seq if more and page else None)

    # --- operations ---------------------------------------------------------------------

    async def create(
        self,
        actor: User,
        content: Content,
        *,
        workspace_id: uuid.UUID | None = None,
        model: str | None = None,
        title: str | None = None,
        plan_mode: bool = False,
        labels: dict[str, str] | None = None,
    ) -> Chat:
        """A new root chat, pending with its first user message. Only ``workspace_id`` is
        written; the build/agent half of the binding is resolved lazily by the first turn.
        ``plan_mode``: the chat's turns are read-only until a message turns it off (PL-9)."""
        parts = user_parts(content, self.images)
        if workspace_id is not None:
            ws = await self._workspaces.get(actor, workspace_id)
            if ws.owner_id != actor.id:  # admins may see others' workspaces, not chat in them
                raise NotFound(f"workspace {workspace_id} not found")
        if self._models is not None:  # only configured names; never a spec from a request
            model = await self._models.chat_model(model)
        await self.check_fits(model, parts)
        given_title = (title or "").strip()
        title = given_title or title_from(parts)
        if len(title) > MAX_TITLE:
            raise InvalidInput(f"title must be at most {MAX_TITLE} characters", field="title")
        if labels:
            check_labels(labels)  # before anything is written
        chat = await self.store.create(
            owner_id=actor.id,
            title=title,
            first_message=parts,
            workspace_id=workspace_id,
            model=model,
            plan_mode=plan_mode,
            title_source="user" if given_title else "first_message",  # chatd/autotitle.py
        )
        if labels:
            await self.store.labels.set(chat.id, labels)
        first = await self.store.messages(chat.id, limit=1)
        if first:
            self.hub.publish_message(first[0])
        await self._wake_workers(chat.id)
        return chat

    async def send(
        self,
        actor: User,
        chat_id: uuid.UUID,
        content: Content,
        *,
        busy: Busy = "queue",
        model: str | None = None,
        plan_mode: bool | None = None,
    ) -> SendResult:
        """Send a user message. Idle chat → persisted, the chat becomes pending. Busy chat
        → queued (QueueFull past the limit); the worker promotes it when the turn ends.
        ``busy="interrupt"`` also interrupts the running turn (a pending chat no worker
        has started takes the message into its history at once). ``model`` switches the
        chat to another configured model from its next turn on; ``plan_mode`` (when given)
        turns plan mode on or off from the next turn on (PL-9; a running turn keeps its
        mode)."""
        parts = user_parts(content, self.images)
        # A model asked for is looked up before the transaction (issue #12: not while it
        # holds the write lock); what the look-up raises is raised where it was before,
        # after the guarded statement, so another's chat still answers 404 first.
        asked = await self._look_up(model) if model is not None else None

        # One transaction: ownership and status by the guarded statement (no read of the
        # chat first), then this check on the locked chat — the model's limits, and the
        # switches asked for, written with the message (a failure writes nothing).
        async def check(chat: Chat) -> dict[str, Any]:
            changes: dict[str, Any] = {}
            if plan_mode is not None and plan_mode != chat.plan_mode:
                changes["plan_mode"] = plan_mode
            if asked is None:
                await self.check_fits(chat.model, parts)
                return changes
            if asked.error is not None:
                raise asked.error
            if asked.name != chat.model:
                changes["model"] = asked.name
            if asked.config is not None:
                self._fits(asked.config, parts)
            return changes

        sent = await self.store.submit_user_message(
            chat_id,
            parts,
            max_queued=self._max_queued,
            join_pending=busy == "interrupt",
            owner_id=None if actor.is_admin else actor.id,
            check=check,
        )
        chat = sent.chat
        if sent.message is not None:
            self.hub.publish_message(sent.message)
            self.hub.publish(chat.id, "status", status_data(chat))
            await self._wake_workers(chat.id)
        else:
            await self._publish_queue(chat.id)
            if busy == "interrupt":
                chat = await self._interrupt(chat)
        return SendResult(chat, sent.message, sent.queued, sent.summary)

    async def _look_up(self, model: str) -> _Asked:
        """The configured name and config of a model a send asks for, or what looking it
        up raised."""
        if self._models is None:
            return _Asked(model, None, None)
        try:
            name = await self._models.chat_model(model)
            get = getattr(self._models, "get", None)
            return _Asked(name, await get(name) if get is not None else None, None)
        except TetherError as exc:
            return _Asked(model, None, exc)

    async def check_fits(self, model: str | None, parts: list[dict[str, Any]]) -> None:
        """A message that cannot fit the model's window even alone is refused now (413
        ``context_overflow``), not after it was queued (chatd/context.py); so is an image
        for a model that takes none (422 ``images_not_supported``)."""
        get = getattr(self._models, "get", None)
        if get is None:
            return
        self._fits(await get(model or self._models.default), parts)  # type: ignore[union-attr]

    @staticmethod
    def _fits(cfg: Any, parts: list[dict[str, Any]]) -> None:
        """:meth:`check_fits` with the model's config at hand."""
        if count_images(parts) and not getattr(cfg, "images", False):
            raise ImagesNotSupported(
                f"the chat's model {cfg.name} does not accept images; send text, or switch "
                "the chat to a model configured with images: true",
                field="content",
            )
        if cfg.context_window:
            text = "\n".join(str(p.get("text", "")) for p in parts)
            check_single_message(Budget(cfg.context_window, cfg.compaction_threshold), text)

    async def interrupt(self, actor: User, chat_id: uuid.UUID) -> Chat:
        """Stop the current turn. Running → interrupting (the worker persists the partial
        reply and ends the turn); pending (not claimed yet) → waiting, or straight on to
        the next queued message; idle or already interrupting → no-op."""
        return await self._interrupt(await self.get(actor, chat_id))

    async def update(
        self,
        actor: User,
        chat_id: uuid.UUID,
        *,
        title: str | None = None,
        labels: dict[str, str] | None = None,
    ) -> Chat:
        """Rename the chat and/or replace its labels (``None``: unchanged)."""
        chat = await self.get(actor, chat_id)
        if labels is not None:
            await self.store.labels.set(chat.id, check_labels(labels))
        if title is not None:
            title = title.strip()
            if not title or len(title) > MAX_TITLE:
                raise InvalidInput(f"title must be 1 to {MAX_TITLE} characters", field="title")
            chat = await self.store.set_fields(chat.id, title=title, title_source="user")
        return chat

    async def labels_of(self, chats: list[Chat]) -> dict[uuid.UUID, dict[str, str]]:
        return await self.store.labels.of([c.id for c in chats])

    async def archive(self, actor: User, chat_id: uuid.UUID, archived: bool = True) -> Chat:
        chat = await self.get(actor, chat_id)
        if chat.archived == archived:
            return chat
        return await self.store.set_fields(chat.id, archived=archived)

    # --- internals ----------------------------------------------------------------------

    async def _interrupt(self, chat: Chat) -> Chat:
        # The status can move under us (claimed, finished); each step is a compare-and-set,
        # so re-read and retry a few times rather than report a spurious conflict.
        for _ in range(3):
            if chat.status is ChatStatus.RUNNING:
                try:
                    chat = await self.store.transition(
                        chat.id, ChatStatus.INTERRUPTING, interrupt_requested=True
                    )
                except Conflict:
                    chat = await self.store.get(chat.id)
                    continue
                self.hub.publish(chat.id, "status", status_data(chat))
                await self._bus.publish(chat_channel(chat.id), {"type": "interrupt"})
                return chat
            if chat.status is ChatStatus.PENDING:
                try:
                    chat, promoted = await self.store.cancel_pending(chat.id)
                except Conflict:
                    chat = await self.store.get(chat.id)
                    continue
                if promoted is not None:
                    self.hub.publish_message(promoted)
                    await self._publish_queue(chat.id)
                    await self._wake_workers(chat.id)
                self.hub.publish(chat.id, "status", status_data(chat))
                return chat
            return chat  # waiting, error, interrupting: nothing (more) to stop
        return chat

    async def _publish_queue(self, chat_id: uuid.UUID) -> None:
        queued = await self.store.queued(chat_id)
        self.hub.publish(chat_id, "queue_update", {"queued": [queued_json(q) for q in queued]})

    async def _wake_workers(self, chat_id: uuid.UUID) -> None:
        await self._bus.publish(CHATS, {"chat_id": str(chat_id), "type": "pending"})

    # Last in the class on purpose: a method named ``list`` shadows the builtin for the
    # annotations of the methods defined after it.
    async def list(
        self,
        actor: User,
        *,
        archived: bool | None = False,
        status: ChatStatus | None = None,
        roots_only: bool = True,
        limit: int = 50,
        search: str | None = None,
        labels: dict[str, str] | None = None,
    ) -> list[Chat]:
        """The actor's own chats, most recently updated first; ``search`` matches the title
        (case-insensitive substring), ``labels`` must all be on the chat."""
        return await self.store.list(
            owner_id=actor.id,
            archived=archived,
            status=status,
            roots_only=roots_only,
            limit=limit,
            search=search,
            labels=labels,
        )


def queued_json(q: QueuedMessage) -> dict[str, Any]:
    return {"id": str(q.id), "parts": q.parts, "created_at": q.created_at.isoformat()}
