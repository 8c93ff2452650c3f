"""The test guard refuses real provider requests before any network I/O."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pydantic_ai.models
import pytest
from pydantic_ai import Agent
from pydantic_ai.exceptions import ModelHTTPError
from pydantic_ai.models import override_allow_model_requests

from tether.llm.models import resolve_model
from tether.llm.scripted import zero_latency_execute_model
from tether.testing.models import block_real_model_requests


class FakeProvider:
    """A local HTTP endpoint that counts connections and answers 400 to anything."""

    def __init__(self) -> None:
        self.connections = 0
        self.url = ""

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        await reader.readuntil(b"\r\n\r\n")
        body = b'{"error": {"message": "nope"}}'
        writer.write(
            b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        writer.close()


@pytest.fixture
async def provider() -> AsyncIterator[FakeProvider]:
    fake = FakeProvider()
    server = await asyncio.start_server(fake._handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    fake.url = f"http://127.0.0.1:{port}/v1"
    async with server:
        yield fake


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")


def test_guard_sets_and_restores_the_flag() -> None:
    with override_allow_model_requests(True):
        with block_real_model_requests():
            assert pydantic_ai.models.ALLOW_MODEL_REQUESTS is False
        assert pydantic_ai.models.ALLOW_MODEL_REQUESTS is True


async def test_real_model_run_is_refused_without_network(provider: FakeProvider) -> None:
    model = resolve_model("openai:gpt-4o", openai_base_url=provider.url)
    with block_real_model_requests():
        with pytest.raises(RuntimeError, match="ALLOW_MODEL_REQUESTS"):
            await Agent(model).run("hello")
    assert provider.connections == 0


async def test_control_without_guard_the_request_does_reach_the_network(
    provider: FakeProvider,
) -> None:
    # Proves the connection counter above can see a request.
    model = resolve_model("openai:gpt-4o", openai_base_url=provider.url)
    with override_allow_model_requests(True):
        with pytest.raises(ModelHTTPError):
            await Agent(model).run("hello")
    assert provider.connections >= 1


async def test_scripted_models_still_work_under_the_guard() -> None:
    agent = Agent(zero_latency_execute_model())

    @agent.tool_plain
    def execute(command: str) -> dict[str, object]:
        return {"success": True, "output": "", "exit_code": 0}

    with block_real_model_requests():
        result = await agent.run("go")
    assert result.output == "ok"
