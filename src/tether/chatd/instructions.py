"""Workspace instruction files in the system prompt (docs/behaviour.md §5.6).

:meth:`InstructionFiles.block` gives the ``<workspace-context>`` block for a turn:

* **reuse** (PL-16): persisted context-file parts stamped with the chat's current agent →
  the block is rebuilt from them; the workspace is not contacted;
* **read** (first turn on a workspace, or the agent changed — PL-15): through the pre-dial
  gate and the chat's connection, the agent's ``GET /instructions`` (home and project
  ``AGENTS.md``, sanitised and capped by the agent), bounded by ``timeout_s`` (setting
  ``instruction_lookup_timeout_s``). The result is persisted as one user-role message with
  ``visibility="user"`` (shown in the UI, never sent to the model as a message: the block
  goes into the system prompt) holding one context-file part per file, each stamped with
  the agent id, OS and directory;
* **nothing found** → a *blank marker* (a context-file part with the agent id, OS and
  directory but no path), so later turns do not ask again — written **only when the
  connection worked** (PL-11, PL-19): an unreachable, stopped or slow workspace persists
  nothing and the next turn retries (PL-14). The marker's OS and directory still go into the
  block (unlike upstream, which returns an empty block on that turn but rebuilds the same
  OS/directory lines from the marker on later turns).

The chat's "current agent" is the one cached in memory (warm turns: zero queries, no
request); otherwise the pre-dial gate names it (one query), so a rebuilt workspace is
noticed even while the binding still names the old agent (PL-15).

Skills (PL-12, PL-13, ``skills.py``) travel with the files: persisted as ``skill`` parts in
the same message (next to the blank marker when there is no file), their index appended to
the block, and the chat's ``last_injected_context`` set to the stripped parts (NULL when
nothing was found).

Failures never fail the turn: worst case the turn runs without the block.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from tether.agent.schemas import Instructions
from tether.chatd import messages as cm
from tether.chatd.skills import last_injected, skill_index, skill_parts, skills_of_agent
from tether.chatd.tools.base import ToolContext
from tether.clock import Clock, within
from tether.errors import NoRunningAgent, NoWorkspace

log = logging.getLogger(__name__)


def parts_of_agent(
    history: Iterable[cm.ChatMessage], agent_id: uuid.UUID
) -> list[cm.ContextFilePart]:
    """The persisted context-file parts stamped with ``agent_id`` (older agents' files are
    not the workspace's instructions any more)."""
    return [
        p
        for m in history
        for p in m.parts
        if isinstance(p, cm.ContextFilePart) and p.agent_id == agent_id
    ]


def context_parts(info: Instructions, agent_id: uuid.UUID) -> list[cm.ContextFilePart]:
    """The parts to persist for what the agent returned: one per file, or the blank marker."""
    if not info.files:
        return [cm.ContextFilePart(agent_id=agent_id, os=info.os, directory=info.directory)]
    return [
        cm.ContextFilePart(
            path=f.path,
            content=f.content,
            truncated=f.truncated,
            os=info.os,
            directory=info.directory,
            agent_id=agent_id,
        )
        for f in info.files
    ]


class InstructionFiles:
    """Loads and persists a chat's workspace instruction files (see the module docstring)."""

    def __init__(self, *, clock: Clock, timeout_s: float) -> None:
        self._clock = clock
        self._timeout_s = timeout_s

    async def block(self, ctx: ToolContext, history: Sequence[cm.ChatMessage]) -> str:
        """The ``<workspace-context>`` block for this turn (``""`` when there is none);
        persists freshly read files. Never raises except on cancellation.

        Warm turns (the chat's agent is cached in memory and matches the persisted parts)
        make no query and no request. Otherwise the pre-dial gate names the current agent
        (one query, or none when a conn is cached): the same agent → the persisted parts,
        else the files are read.
        """
        conns = ctx.conns
        if conns.binding.workspace_id is None:
            return ""
        persisted = cm.instruction_agent_id(history)
        cached = conns.cached_agent
        if (
            persisted is not None
            and cached is not None
            and cached.id == persisted
            and cached.workspace_id == conns.binding.workspace_id
        ):
            return _block(history, persisted)
        try:
            found = await within(self._clock, self._timeout_s, self._read(ctx, persisted))
        except TimeoutError:
            log.warning(
                "chat %s: instruction lookup timed out after %gs; retrying next turn",
                ctx.chat_id,
                self._timeout_s,
            )
            return ""
        except asyncio.CancelledError:
            raise
        except Exception as err:
            log.warning("chat %s: instruction lookup failed: %s", ctx.chat_id, err)
            return ""
        if found is None:
            return ""
        agent_id, info = found
        if info is None:  # the gate named the agent the persisted parts came from
            return _block(history, agent_id)
        parts = context_parts(info, agent_id)
        skills = skill_parts(info, agent_id)
        try:
            await self._persist(ctx, [*parts, *skills], last_injected(parts, skills))
        except asyncio.CancelledError:
            raise
        except Exception as err:
            log.warning("chat %s: persisting instruction files failed: %s", ctx.chat_id, err)
        return _join(cm.format_workspace_context(parts), skill_index(skills))

    async def _read(
        self, ctx: ToolContext, persisted: uuid.UUID | None
    ) -> tuple[uuid.UUID, Instructions | None] | None:
        """``None``: no running agent (skip quietly, persist nothing). ``(agent, None)``:
        the persisted parts are the current agent's after all. Else what the agent sent."""
        conns = ctx.conns
        try:
            agent_id = await ctx.conns.gate_agent_id()
        except (NoRunningAgent, NoWorkspace):
            return None
        if agent_id == persisted:
            return agent_id, None
        info = await ctx.with_agent(lambda c: c.instructions())
        dialled = conns.cached_agent
        return (dialled.id if dialled is not None else agent_id), info

    async def _persist(
        self,
        ctx: ToolContext,
        parts: list[cm.ContextFilePart | cm.SkillPart],
        injected: list[dict[str, Any]] | None,
    ) -> None:
        deps = ctx.deps
        stored = await deps.chats.append_message(
            ctx.chat_id, role="user", parts=cm.dump_parts(parts), visibility="user", model=None
        )
        deps.hub.publish_message(stored)
        await deps.chats.set_fields(ctx.chat_id, last_injected_context=injected)


def _join(block: str, skills: str) -> str:
    return "\n\n".join(p for p in (block, skills) if p)


def _block(history: Sequence[cm.ChatMessage], agent_id: uuid.UUID) -> str:
    """The block rebuilt from the persisted parts of ``agent_id`` (files and skills)."""
    return _join(
        cm.format_workspace_context(parts_of_agent(history, agent_id)),
        skill_index(skills_of_agent(history, agent_id)),
    )
