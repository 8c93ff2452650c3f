"""Message edit, usage and automatic titles with a real chat worker and a scripted model
(issue #14, #16 item 6), on SQLite and PostgreSQL.

The model is a ``FunctionModel`` that records every turn request and answers the title and
summary requests of the same chat itself (only the LLM is scripted)."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest
from pydantic_ai import messages as pai
from pydantic_ai.models.function import AgentInfo, FunctionModel

from tether.channels import CHATS as WORKER_CHANNEL
from tether.chatd.compaction import longchat_of
from tether.chatd.edits import edit_message
from tether.chatd.elision import SUMMARY_HEADER
from tether.chatd.titles import TITLE_PROMPT
from tether.db.chatedits import edit_user_message
from tether.db.compactions import CompactionStore
from tether.domain.chat import Chat, ChatStatus

if TYPE_CHECKING:  # only an annotation: importing "conftest" at run time is ambiguous
    from chatd_env import Chatd

pytestmark = pytest.mark.integration


def _texts(messages: list[pai.ModelMessage]) -> str:
    out = []
    for m in messages:
        for p in m.parts:
            content = getattr(p, "content", None)
            if isinstance(content, str):
                out.append(content)
    return "\n".join(out)


@dataclass
class Model:
    title: str = "Parser bug hunt"
    hang_title: bool = False
    turns: list[list[pai.ModelMessage]] = field(default_factory=list)
    title_requests: int = 0

    async def respond(self, messages: list[pai.ModelMessage], info: AgentInfo) -> pai.ModelResponse:
        if TITLE_PROMPT in (info.instructions or ""):
            self.title_requests += 1
            if self.hang_title:
                await asyncio.sleep(3600)  # a silent provider
            return pai.ModelResponse(parts=[pai.TextPart(content=self.title)])
        if _texts(messages).startswith("Summarise the conversation"):
            return pai.ModelResponse(parts=[pai.TextPart(content="SUMMARY-OF-OLD-TURNS")])
        self.turns.append(messages)
        return pai.ModelResponse(parts=[pai.TextPart(content=f"answer {len(self.turns)}")])

    async def stream(self, messages: list[pai.ModelMessage], info: AgentInfo) -> AsyncIterator[str]:
        response = await self.respond(messages, info)
        yield response.text or ""

    def build(self) -> FunctionModel:
        return FunctionModel(self.respond, stream_function=self.stream, model_name="parity2")


async def _turn(chatd: Chatd, chat_id: uuid.UUID, text: str) -> None:
    await chatd.send(chat_id, text)
    chat = await chatd.wait_status(chat_id)
    assert chat.status is ChatStatus.WAITING, chat.last_error


async def test_edit_replaces_the_history_and_invalidates_a_later_compaction(
    chatd: Chatd,
) -> None:
    script = Model()
    model = script.build()
    chatd.start_worker()
    chat = await chatd.run_chat("GOAL-ORIGINAL: fix the parser", model)
    assert chat.status is ChatStatus.WAITING, chat.last_error
    for text in ("SECOND-MESSAGE", "THIRD-MESSAGE", "FOURTH-MESSAGE"):
        await _turn(chatd, chat.id, text)
    record = await longchat_of(chatd.graph).compact(chat.id, model, reason="user", keep_steps=1)
    await _turn(chatd, chat.id, "FIFTH-MESSAGE")
    assert SUMMARY_HEADER in _texts(script.turns[-1])  # the compaction is in force
    assert "SECOND-MESSAGE" not in _texts(script.turns[-1])

    history = await chatd.messages(chat.id)
    second = next(m for m in history if m.parts[0].get("text") == "SECOND-MESSAGE")
    assert second.seq <= record.through_seq  # edited before the cut
    edit = await edit_message(
        chatd.graph, chatd.owner, chat.id, second.id, "SECOND-EDITED: use a real lexer"
    )
    assert edit.invalidated_compactions == 1 and edit.chat.status is ChatStatus.PENDING
    chat = await chatd.wait_status(chat.id)
    assert chat.status is ChatStatus.WAITING, chat.last_error

    sent = _texts(script.turns[-1])
    assert "SECOND-EDITED: use a real lexer" in sent and "GOAL-ORIGINAL" in sent
    for gone in ("SUMMARY-OF-OLD-TURNS", SUMMARY_HEADER, "SECOND-MESSAGE", "THIRD-MESSAGE"):
        assert gone not in sent  # no stale summary, no superseded message
    assert [m.parts[0].get("text") for m in await chatd.messages(chat.id)] == [
        "GOAL-ORIGINAL: fix the parser",
        "answer 1",
        "SECOND-EDITED: use a real lexer",
        f"answer {len(script.turns)}",
    ]
    compactions = await CompactionStore(chatd.graph.engine, chatd.graph.clock).all(chat.id)
    assert [c.invalidated for c in compactions] == [True]
    assert await longchat_of(chatd.graph).store.latest(chat.id) is None

    # the turn of every user message has its usage, keyed by that message
    turns = await chatd.chats.usage.turns(chat.id, limit=100)
    assert turns[-1].message_id == edit.message.id and turns[-1].tokens.input_tokens > 0
    assert len(turns) == 6 and all(t.tokens.requests == 1 for t in turns)
    total = await chatd.chats.usage.chat_total(chat.id)
    assert total.requests == 6 and total.output_tokens > 0


async def test_first_turn_gets_a_generated_title_and_user_titles_are_kept(
    chatd: Chatd,
) -> None:
    script = Model(title='"Parser bug hunt."')
    model = script.build()
    chatd.start_worker()
    chat = await _titled_chat(chatd, "please fix the parser", model)
    titled = await _wait_title(chatd, chat.id)
    assert (titled.title, titled.title_source) == ("Parser bug hunt", "auto")
    await _turn(chatd, chat.id, "and the lexer")
    await asyncio.sleep(0.2)
    assert script.title_requests == 1  # once, after the first turn only

    named = await chatd.new_chat("fix it", model, title_source="user")
    named = await chatd.wait_status(named.id)
    assert named.status is ChatStatus.WAITING
    await asyncio.sleep(0.2)
    assert script.title_requests == 1 and (await chatd.chats.get(named.id)).title == "fix it"


async def test_a_silent_title_model_falls_back_within_the_deadline(chatd: Chatd) -> None:
    chatd.graph.settings.title_generation_timeout_s = 3.0
    script = Model(hang_title=True)
    model = script.build()
    chatd.start_worker()
    chat = await _titled_chat(chatd, "please fix the parser", model)
    other = await _titled_chat(chatd, "second chat", model)
    # both turns ended well while their titles are still being asked for: not delayed
    for done in (chat, other):
        assert done.status is ChatStatus.WAITING and done.last_error is None
        assert (await chatd.chats.get(done.id)).title_source == "first_message"
        assert [m.role for m in await chatd.messages(done.id)] == ["user", "assistant"]
    await chatd.chats.set_fields(other.id, title="Mine", title_source="user")  # a rename

    titled = await _wait_title(chatd, chat.id, timeout=15)
    assert (titled.title, titled.title_source) == ("please fix the parser", "auto")
    await asyncio.sleep(0.5)  # the other chat's deadline passed at the same time
    kept = await chatd.chats.get(other.id)
    assert (kept.title, kept.title_source) == ("Mine", "user")
    assert script.title_requests == 2


async def _titled_chat(chatd: Chatd, text: str, model: FunctionModel) -> Chat:
    chat = await chatd.new_chat(text, model, title_source="first_message")
    return await chatd.wait_status(chat.id)


async def _wait_title(chatd: Chatd, chat_id: uuid.UUID, timeout: float = 10) -> Chat:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        chat = await chatd.chats.get(chat_id)
        if chat.title_source != "first_message":
            return chat
        assert asyncio.get_running_loop().time() < deadline, "no title in time"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("bus_event", [True, False], ids=["bus", "bus-lost"])
async def test_an_edit_on_another_replica_reaches_this_workers_history_cache(
    chatd: Chatd, bus_event: bool
) -> None:
    """The edit is made as another replica makes it: its own transaction and the bus
    event, never this process's cache. Claims happen only on wake-ups (a long poll). With
    the event lost, the cache finds the edit itself: its newest row is superseded."""
    script = Model()
    model = script.build()
    chatd.start_worker(poll_s=30.0)
    chat = await chatd.run_chat("FIRST-MESSAGE", model)
    await _turn(chatd, chat.id, "SECOND-MESSAGE")
    assert chat.id in longchat_of(chatd.graph).cache  # warm: the next turn reads no old rows
    second = (await chatd.messages(chat.id))[2]
    await edit_user_message(
        chatd.graph.engine,
        chatd.graph.clock,
        chatd.chats,
        chat.id,
        second.id,
        [{"type": "text", "text": "SECOND-EDITED"}],
    )
    if bus_event:
        await chatd.graph.bus.publish(
            WORKER_CHANNEL, {"chat_id": str(chat.id), "type": "pending", "edited": True}
        )
    else:
        chatd.worker.wake()  # type: ignore[union-attr]
    chat = await chatd.wait_status(chat.id)
    assert chat.status is ChatStatus.WAITING, chat.last_error
    sent = _texts(script.turns[-1])
    assert "SECOND-EDITED" in sent and "FIRST-MESSAGE" in sent
    assert "SECOND-MESSAGE" not in sent  # a stale cache would still hold it


async def test_an_image_reaches_the_model_as_binary_content(chatd: Chatd) -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 32
    script = Model()
    chatd.start_worker()
    parts = [
        {"type": "text", "text": "what is this?"},
        {"type": "image", "media_type": "image/png", "data": base64.b64encode(png).decode()},
    ]
    chat = await chatd.chats.create(owner_id=chatd.owner.id, title="img", first_message=parts)
    chatd.models[chat.id] = script.build()
    chatd.worker.wake()  # type: ignore[union-attr]
    chat = await chatd.wait_status(chat.id)
    assert chat.status is ChatStatus.WAITING, chat.last_error
    sent = [
        c
        for m in script.turns[-1]
        for p in m.parts
        if isinstance(p, pai.UserPromptPart) and not isinstance(p.content, str)
        for c in p.content
    ]
    assert len(sent) == 1 and isinstance(sent[0], pai.BinaryContent)
    assert (sent[0].data, sent[0].media_type) == (png, "image/png")
