"""What the title model is given and what is kept of its answer (``chatd/titles.py``)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from pydantic_ai.models.function import FunctionModel

from tether.chatd.titles import (
    TITLE_MAX_CHARS,
    TRANSCRIPT_MAX_CHARS,
    clean_title,
    generate_title,
    transcript,
)
from tether.clock import SystemClock
from tether.domain.chat import StoredMessage
from tether.errors import InvalidInput, ProviderTimeout
from tether.llm.scripted import Call, Say, script_model
from tether.testing.clock import DEFAULT_START, FakeClock, settle


def _msg(role: str, text: str, visibility: str = "both") -> StoredMessage:
    parts = [{"type": "text", "text": text}]
    return StoredMessage(
        uuid.uuid4(), uuid.UUID(int=1), 1, role, parts, visibility, None, DEFAULT_START
    )


def test_transcript_keeps_the_conversation_only_and_is_capped() -> None:
    history = [
        _msg("user", "fix   the\nbuild"),
        _msg("user", "AGENTS.md rules", visibility="user"),  # instruction files
        _msg("tool", "tool output"),
        _msg("assistant", "done"),
    ]
    assert transcript(history) == "User: fix the build\nAssistant: done"
    assert len(transcript([_msg("user", "x" * 10_000)] * 3)) <= TRANSCRIPT_MAX_CHARS + 2


def test_clean_title() -> None:
    assert clean_title('\n  "Fix the flaky login test."\nbecause…') == "Fix the flaky login test"
    assert clean_title("Title: **Deploy app**") == "Deploy app"
    assert clean_title("  \n ") == ""
    long = clean_title("word " * 100)
    assert len(long) == TITLE_MAX_CHARS and long.endswith("…")


async def test_a_model_without_a_usable_title_gets_the_first_message_title() -> None:
    """The scripted demo model answers a first message with a tool call; there are no tools
    in a title request, so the chat is titled as a new chat is (never a server error)."""
    history = [_msg("user", "please   fix the build"), _msg("assistant", "ok")]
    for model in (script_model([Call("list_templates", {})]), script_model([Say("  \n")])):
        title = await generate_title(model, history, clock=SystemClock(), timeout_s=5)
        assert title == "please fix the build"
    with pytest.raises(InvalidInput):  # nothing to name the chat by
        await generate_title(model, [], clock=SystemClock(), timeout_s=5)


async def test_title_from_the_model_and_its_deadline() -> None:
    assert (
        await generate_title(
            script_model([Say('"Fix the build."')]),
            [_msg("user", "fix it")],
            clock=SystemClock(),
            timeout_s=5,
        )
        == "Fix the build"
    )
    clock = FakeClock()

    async def never(messages: list[Any], info: Any) -> Any:
        await asyncio.Event().wait()

    task = asyncio.ensure_future(
        generate_title(FunctionModel(never), [_msg("user", "x")], clock=clock, timeout_s=30)
    )
    await settle()
    clock.advance(30)
    with pytest.raises(ProviderTimeout):
        await asyncio.wait_for(task, 5)
