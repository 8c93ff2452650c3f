"""Compaction is atomic (issue #16 §6): an interrupted or killed summarisation leaves the
previous history in force, and two replicas (two engines on one database, SQLite and
PostgreSQL) never both compact the same state of a chat. Real stores; the summariser is a
scripted model."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from pydantic_ai import messages as pai
from pydantic_ai.models.function import AgentInfo, FunctionModel
from sqlalchemy.ext.asyncio import AsyncEngine

from tether.chatd import messages as cm
from tether.chatd.compaction import LongChat
from tether.chatd.elision import SUMMARY_HEADER
from tether.chatd.stream import ChatStreamHub
from tether.clock import SystemClock
from tether.db.chatedits import edit_user_message
from tether.db.chats import ChatStore
from tether.db.compactions import CompactionStore
from tether.db.engine import create_engine
from tether.db.users import UserStore
from tether.errors import Conflict

pytestmark = pytest.mark.integration

TURNS = 8


def _longchat(engine: AsyncEngine) -> LongChat:
    clock = SystemClock()
    return LongChat(
        ChatStore(engine, clock),
        CompactionStore(engine, clock),
        ChatStreamHub(),
        max_cached_messages=1000,
        keep_steps=2,
    )


async def _chat_with_turns(engine: AsyncEngine) -> uuid.UUID:
    clock = SystemClock()
    user = await UserStore(engine, clock).create_user(f"u{uuid.uuid4().hex[:8]}")
    chats = ChatStore(engine, clock)
    chat = await chats.create(
        owner_id=user.id, title="t", first_message=[{"type": "text", "text": "the goal"}]
    )
    for turn in range(TURNS):
        if turn:
            await chats.append_message(
                chat.id, role="user", parts=[{"type": "text", "text": f"u{turn}"}]
            )
        call = cm.ToolCallPart(tool_call_id=f"c{turn}", tool_name="execute", args={"n": turn})
        result = cm.ToolResultPart(tool_call_id=f"c{turn}", tool_name="execute", result="x" * 500)
        await chats.append_message(chat.id, role="assistant", parts=cm.dump_parts([call]))
        await chats.append_message(chat.id, role="tool", parts=cm.dump_parts([result]))
        await chats.append_message(
            chat.id, role="assistant", parts=cm.dump_parts([cm.TextPart(text=f"a{turn}")])
        )
    return chat.id


def _summariser(
    gate: asyncio.Event | None = None, entered: asyncio.Event | None = None
) -> FunctionModel:
    async def answer(messages: list[pai.ModelMessage], info: AgentInfo) -> pai.ModelResponse:
        if entered is not None:
            entered.set()
        if gate is not None:
            await gate.wait()
        return pai.ModelResponse(parts=[pai.TextPart(content="the summary")])

    return FunctionModel(answer)


async def test_two_replicas_never_both_compact_the_same_state(
    engine: AsyncEngine, db_url: str
) -> None:
    chat_id = await _chat_with_turns(engine)
    other = create_engine(db_url)
    try:
        gate = asyncio.Event()
        entered = [asyncio.Event(), asyncio.Event()]
        replicas = [_longchat(engine), _longchat(other)]
        tasks = [
            asyncio.create_task(r.compact(chat_id, _summariser(gate, e), reason="test"))
            for r, e in zip(replicas, entered, strict=True)
        ]
        async with asyncio.timeout(20):
            for e in entered:
                await e.wait()  # both summarise the same state at once
            gate.set()
            results = await asyncio.gather(*tasks, return_exceptions=True)
        records = await CompactionStore(engine, SystemClock()).all(chat_id)
    finally:
        await other.dispose()
    won = [r for r in results if not isinstance(r, BaseException)]
    lost = [r for r in results if isinstance(r, BaseException)]
    assert len(won) == 1 and len(lost) == 1 and isinstance(lost[0], Conflict), results
    assert len(records) == 1 and records[0].number == 1
    # the loser's view is the winner's history, not a stale copy
    view = await replicas[1].view(chat_id)
    assert view.compaction is not None and view.compaction.id == records[0].id


async def test_interrupted_summarisation_leaves_the_previous_history(engine: AsyncEngine) -> None:
    chat_id = await _chat_with_turns(engine)
    long = _longchat(engine)
    before = [m.seq for m in (await long.view(chat_id)).history]
    entered = asyncio.Event()
    task = asyncio.create_task(
        long.compact(chat_id, _summariser(asyncio.Event(), entered), reason="t")
    )
    async with asyncio.timeout(20):
        await entered.wait()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert await long.store.latest(chat_id) is None
    view = await long.view(chat_id)
    assert [m.seq for m in view.history] == before and view.compaction is None
    # the next compaction works and leaves every tool call with its result
    record = await long.compact(chat_id, _summariser(), reason="t")
    view = await long.view(chat_id)
    sent = long.model_messages(view, view.history)
    assert isinstance(sent[0], pai.ModelRequest) and SUMMARY_HEADER in str(sent[0].parts[0].content)
    assert "the goal" in str(sent[0].parts[0].content)
    assert record.through_seq < view.history[0].seq
    calls = {p.tool_call_id for m in sent for p in m.parts if isinstance(p, pai.ToolCallPart)}
    results = {p.tool_call_id for m in sent for p in m.parts if isinstance(p, pai.ToolReturnPart)}
    assert calls == results and calls


KILLED = """
import asyncio, sys
from pydantic_ai import messages as pai
from pydantic_ai.models.function import FunctionModel
from tether.chatd.compaction import LongChat
from tether.chatd.stream import ChatStreamHub
from tether.clock import SystemClock
from tether.db.chats import ChatStore
from tether.db.chatedits import edit_user_message
from tether.db.compactions import CompactionStore
from tether.db.engine import create_engine
import uuid

async def hang(messages, info):
    print("summarising", flush=True)
    await asyncio.Event().wait()

async def main():
    engine = create_engine(sys.argv[1])
    clock = SystemClock()
    long = LongChat(ChatStore(engine, clock), CompactionStore(engine, clock), ChatStreamHub(),
                    max_cached_messages=100, keep_steps=2)
    await long.compact(uuid.UUID(sys.argv[2]), FunctionModel(hang), reason="test")

asyncio.run(main())
"""


async def test_kill_9_during_summarisation_leaves_the_chat_usable(
    sqlite_engine: AsyncEngine,
) -> None:
    engine = sqlite_engine
    chat_id = await _chat_with_turns(engine)
    url = str(engine.url)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        textwrap.dedent(KILLED),
        url,
        str(chat_id),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert line.decode().strip() == "summarising"
        os.kill(proc.pid, signal.SIGKILL)
        assert await asyncio.wait_for(proc.wait(), 10) == -signal.SIGKILL
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    long = _longchat(engine)
    assert await long.store.latest(chat_id) is None
    record = await long.compact(chat_id, _summariser(), reason="after the crash")
    assert record.number == 1


def test_killed_helper_is_a_real_path(tmp_path: Path) -> None:
    """The subprocess above imports what it uses (a typo would make the kill test vacuous)."""
    code = KILLED.replace("asyncio.run(main())", "print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "ok", out.stderr


async def test_the_instruction_block_and_goal_survive_compaction(
    sqlite_engine: AsyncEngine,
) -> None:
    engine = sqlite_engine
    chat_id = await _chat_with_turns(engine)
    chats = ChatStore(engine, SystemClock())
    rules = cm.ContextFilePart(
        path="/home/u/AGENTS.md", content="Always answer in Esperanto.", agent_id=uuid.uuid4()
    )
    await chats.append_message(
        chat_id, role="system", parts=cm.dump_parts([rules]), visibility="user"
    )
    for turn in range(4):  # push the context-file message before the cut
        await chats.append_message(
            chat_id, role="user", parts=[{"type": "text", "text": f"later {turn}"}]
        )
        await chats.append_message(
            chat_id, role="assistant", parts=cm.dump_parts([cm.TextPart(text="ok")])
        )
    long = _longchat(engine)
    block = cm.workspace_context_from_history((await long.view(chat_id)).history)
    assert "Esperanto" in block
    await long.compact(chat_id, _summariser(), reason="t")
    await long.compact(chat_id, _summariser(), reason="t")  # and a second time
    view = await long.view(chat_id)
    assert view.compaction is not None and view.compaction.number == 2
    assert all(m.seq is None or m.seq > view.compaction.through_seq for m in view.history)
    assert cm.workspace_context_from_history(view.history) == block
    lead = long.model_messages(view, view.history)[0]
    assert isinstance(lead, pai.ModelRequest)
    assert "the goal" in str(lead.parts[0].content)  # the first user message, kept twice over


async def test_an_edit_during_summarisation_discards_that_compaction(engine: AsyncEngine) -> None:
    """An edit of the idle chat while ``/compact`` summarises replaces messages the summary
    covers: the record is refused (Conflict) and the edited history is what the model gets."""
    chat_id = await _chat_with_turns(engine)
    long = _longchat(engine)
    await long.chats.set_fields(chat_id, status="waiting")
    gate, entered = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(long.compact(chat_id, _summariser(gate, entered), reason="t"))
    async with asyncio.timeout(20):
        await entered.wait()
        second = [m for m in await long.chats.messages(chat_id) if m.role == "user"][1]
        await edit_user_message(
            engine, SystemClock(), long.chats, chat_id, second.id, [{"type": "text", "text": "E"}]
        )
        gate.set()
        with pytest.raises(Conflict):
            await task
    assert await long.store.latest(chat_id) is None
    view = await long.view(chat_id)
    assert [m.parts[0].text for m in view.history if m.role == "user"] == ["the goal", "E"]  # type: ignore[union-attr]
