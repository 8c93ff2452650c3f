"""Automatic chat titles (docs/behaviour.md §2.4).

After a root chat's first turn ends without error, its title is written in the background
by the chat's model, or by the model its config names as ``title_model``
(llm/config.py), as ``POST …/title/regenerate`` does (chatd/titles.py). It never delays or
fails the turn: the request runs after the turn has finished, is bounded by
``Settings.title_generation_timeout_s`` (the injected clock), and any failure — a provider
error, a timeout, an answer that is no title — gives :func:`~tether.chatd.titles.fallback_title`
(the first message's title the chat already has).

Only a chat whose ``title_source`` is ``first_message`` is titled: a title the user gave at
creation or set later (``user``), or one generated before (``auto``), is never replaced.
The write is guarded on ``title_source`` in SQL, so a rename during generation wins. The
change is published on the chat's stream as a ``title`` event (``{"title",
"title_source"}``); ``GET /api/v1/chats/{id}`` shows it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from pydantic_ai.models import Model

from tether.chatd.models import Chat
from tether.chatd.titles import fallback_title, generate_title

log = logging.getLogger(__name__)

TITLE_HISTORY_MESSAGES = 20


class AutoTitler:
    def __init__(self, deps: Any, *, registry: Any = None) -> None:
        self._deps = deps
        self._registry = registry
        self._tasks: set[asyncio.Task[Any]] = set()

    def after_turn(self, chat: Chat, model: Model) -> None:
        """Start titling ``chat`` (as claimed for the turn that just ended) if it needs it."""
        if chat.title_source != "first_message" or not chat.is_root:
            return
        task = asyncio.create_task(self.title(chat, model), name=f"title-{chat.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def title(self, chat: Chat, model: Model) -> Chat | None:
        """Generate and store the title; None when a title was set meanwhile."""
        deps = self._deps
        try:
            history = await deps.chats.messages(chat.id, limit=TITLE_HISTORY_MESSAGES)
            try:
                title = await generate_title(
                    await self._model(model),
                    history,
                    clock=deps.clock,
                    timeout_s=deps.settings.title_generation_timeout_s,
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the turn's outcome never depends on this
                log.info("chat %s: no generated title (%s); keeping the fallback", chat.id, exc)
                title = fallback_title(history)
            updated = await deps.chats.set_auto_title(chat.id, title)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("chat %s: automatic title failed", chat.id)
            return None
        if updated is not None:
            deps.hub.publish(
                chat.id, "title", {"title": updated.title, "title_source": updated.title_source}
            )
        return updated

    async def _model(self, model: Model) -> Model:
        name = getattr(getattr(model, "cfg", None), "title_model", None)
        if name is None or self._registry is None:
            return model
        try:
            found: Model = await self._registry.model(name)
        except Exception as exc:  # a removed title model: the chat's own model writes
            log.warning("title model %s unavailable (%s); using the chat's model", name, exc)
            return model
        return found
