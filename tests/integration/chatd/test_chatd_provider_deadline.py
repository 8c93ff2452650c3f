"""pydantic-ai enforces a model's ``first_event_timeout``/``request_timeout`` around the
model, so its ``ModelRequestTimeout`` reaches the turn runner directly: the turn ends with
``provider_timeout``, not ``internal``."""

from __future__ import annotations

from collections.abc import AsyncIterator

from chatd_env import Chatd
from pydantic_ai import messages as pai
from pydantic_ai.exceptions import ModelRequestTimeout
from pydantic_ai.models.function import AgentInfo, FunctionModel

from tether.domain.chat import ChatStatus


def _deadline_model() -> FunctionModel:
    async def stream(messages: list[pai.ModelMessage], info: AgentInfo) -> AsyncIterator[str]:
        raise ModelRequestTimeout("slow", 2.0, setting="first_event_timeout")
        yield ""  # pragma: no cover - makes this an async generator

    async def respond(messages: list[pai.ModelMessage], info: AgentInfo) -> pai.ModelResponse:
        raise AssertionError("the turn runner streams")

    return FunctionModel(respond, stream_function=stream, model_name="slow")


async def test_a_deadline_raised_around_the_model_is_provider_timeout(chatd: Chatd) -> None:
    chatd.start_worker()
    chat = await chatd.new_chat("hi", _deadline_model())
    events = chatd.record_events(chat.id)
    chat = await chatd.wait_status(chat.id)
    assert chat.status is ChatStatus.ERROR
    assert chat.last_error_code == "provider_timeout"
    assert chat.last_error is not None and "2" in chat.last_error
    assert [e.data["code"] for e in events if e.event == "error"] == ["provider_timeout"]
    assert not [e for e in events if e.event == "retry"]
