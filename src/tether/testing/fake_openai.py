"""A fake OpenAI-compatible Chat Completions server on a real loopback socket (uvicorn).

It plays the provider behaviours tether must survive, so the real pydantic-ai
``OpenAIChatModel`` (through tether's ``ProviderModel``) talks to it over HTTP:

* ``behaviour="answer"`` — a well-behaved server: with tools and no tool result yet in the
  current turn it calls ``tool_name`` (``{}``), otherwise it says ``"done"``; streamed
  (SSE) or not, as asked;
* ``behaviour="silent"`` — accepts the connection and the request, never answers;
* ``behaviour="stall"`` — starts a streamed answer (headers and a first, empty chunk), then
  sends nothing more (a plain request is answered like ``silent``);
* ``behaviour="llama"`` — like ``answer``, but a streamed request with tools gets llama.cpp's
  "Automatic streaming tool choice is not supported": as an HTTP 500 error document
  (``llama_error="http"``) or, as llama-server does once the stream has started, an
  ``error:`` line that no SSE parser reads (``llama_error="in_stream"``).

With ``context_window`` (tokens; the fake's tokenizer is ``len(json(messages, tools)) /
3.5``) a request above the window gets the context-length error of ``overflow_style``:
OpenAI's ``context_length_exceeded``, Anthropic's "prompt is too long" or llama.cpp's
``exceed_context_size_error``; ``prompt_tokens`` keeps the count of every request and the
usage it reports is that count. A request without tools whose last user message asks to
summarise is answered with :data:`SUMMARY_ANSWER`.

``fail`` answers every request, ``fail_plain`` every non-streamed one, with an HTTP error
``(status, message)``.

With ``strict_content`` (default) an assistant message carrying ``tool_calls`` must have a
string ``content``: ``null`` or a missing ``content`` is refused with 400, as llama.cpp does.
Every request body is kept in ``requests``.

    async with FakeOpenAI(behaviour="silent").running() as fake:
        ...  # fake.url is "http://127.0.0.1:<port>/v1"
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tether.cancellation import cancel_and_wait

LLAMA_STREAM_TOOLS_ERROR = "Automatic streaming tool choice is not supported"
NULL_CONTENT_ERROR = "Expected 'content' to be a string or an array"
SUMMARY_ANSWER = "Summary: the user asked for the template list; each call returned it."
CHARS_PER_TOKEN = 3.5


def prompt_tokens(body: dict[str, Any]) -> int:
    """The fake's tokenizer: what a request costs against ``context_window``."""
    text = json.dumps(body.get("messages", [])) + json.dumps(body.get("tools", []))
    return int(len(text) / CHARS_PER_TOKEN)


def overflow_error(style: str, tokens: int, window: int) -> JSONResponse:
    """The context-length error of a real provider of ``style``."""
    error: dict[str, Any]
    if style == "anthropic":
        error = {
            "type": "invalid_request_error",
            "message": f"prompt is too long: {tokens} tokens > {window} maximum",
        }
        return JSONResponse({"type": "error", "error": error}, status_code=400)
    if style == "llama":
        error = {
            "code": 400,
            "message": "the request exceeds the available context size, try increasing it",
            "type": "exceed_context_size_error",
            "n_prompt_tokens": tokens,
            "n_ctx": window,
        }
        return JSONResponse({"error": error}, status_code=400)
    error = {
        "message": f"This model's maximum context length is {window} tokens. However, your "
        f"messages resulted in {tokens} tokens. Please reduce the length of the messages.",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }
    return JSONResponse({"error": error}, status_code=400)


@dataclass
class FakeOpenAI:
    behaviour: Literal["answer", "silent", "stall", "llama"] = "answer"
    llama_error: Literal["http", "in_stream"] = "http"
    strict_content: bool = True
    tool_name: str = "list_templates"
    fail: tuple[int, str] | None = None  # every request gets this HTTP error
    fail_plain: tuple[int, str] | None = None  # non-streamed requests get this HTTP error
    requests: list[dict[str, Any]] = field(default_factory=list)
    context_window: int | None = None
    overflow_style: Literal["openai", "anthropic", "llama"] = "openai"
    prompt_tokens: list[int] = field(default_factory=list)  # per request
    overflows: int = 0
    url: str = ""
    _release: asyncio.Event = field(default_factory=asyncio.Event)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[FakeOpenAI]:
        app = Starlette(routes=[Route("/v1/chat/completions", self._completions, methods=["POST"])])
        server = uvicorn.Server(
            uvicorn.Config(
                app, host="127.0.0.1", port=0, log_level="warning", timeout_graceful_shutdown=1
            )
        )
        task = asyncio.create_task(server.serve())
        try:
            for _ in range(500):
                if server.started or task.done():
                    break
                await asyncio.sleep(0.01)
            assert server.started, "fake OpenAI server did not start"
            port = server.servers[0].sockets[0].getsockname()[1]
            self.url = f"http://127.0.0.1:{port}/v1"
            yield self
        finally:
            self._release.set()  # silent requests end, so the server can stop
            server.should_exit = True
            await asyncio.wait({task}, timeout=10)
            await cancel_and_wait(task)

    # --- the endpoint ---------------------------------------------------------------------

    async def _completions(self, request: Request) -> Response:
        body: dict[str, Any] = await request.json()
        self.requests.append(body)
        if self.behaviour == "silent" or (self.behaviour == "stall" and not body.get("stream")):
            await self._release.wait()
            return Response(status_code=503)
        if self.behaviour == "stall":
            return StreamingResponse(self._stalled(body), media_type="text/event-stream")
        if self.strict_content:
            for message in body.get("messages", []):
                if (
                    message.get("role") == "assistant"
                    and message.get("tool_calls")
                    and not isinstance(message.get("content"), str | list)
                ):
                    return _error(400, NULL_CONTENT_ERROR, "invalid_request_error")
        stream = bool(body.get("stream"))
        tools = bool(body.get("tools"))
        tokens = prompt_tokens(body)
        self.prompt_tokens.append(tokens)
        if self.context_window is not None and tokens > self.context_window:
            self.overflows += 1
            return overflow_error(self.overflow_style, tokens, self.context_window)
        failure = self.fail or (None if stream else self.fail_plain)
        if failure is not None:
            return _error(failure[0], failure[1], "server_error")
        if self.behaviour == "llama" and stream and tools:
            if self.llama_error == "http":
                return _error(500, LLAMA_STREAM_TOOLS_ERROR, "server_error")
            line = json.dumps(
                {"code": 500, "message": LLAMA_STREAM_TOOLS_ERROR, "type": "server_error"}
            )
            return StreamingResponse(iter([f"error: {line}\n\n"]), media_type="text/event-stream")
        message = self._answer(body, tools)
        if not stream:
            return JSONResponse(_completion(body, message, tokens))
        return StreamingResponse(_chunks(body, message, tokens), media_type="text/event-stream")

    async def _stalled(self, body: dict[str, Any]) -> AsyncIterator[str]:
        first = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}],
        }
        yield f"data: {json.dumps(first)}\n\n"
        await self._release.wait()

    def _answer(self, body: dict[str, Any], tools: bool) -> dict[str, Any]:
        messages = body.get("messages", [])
        last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
        answered = any(m.get("role") == "tool" for m in messages[last_user + 1 :])
        text = messages[last_user].get("content") if last_user >= 0 else ""
        if not tools and isinstance(text, str) and text.startswith("Summarise the conversation"):
            return {"role": "assistant", "content": SUMMARY_ANSWER}
        if tools and not answered:
            n = len(self.requests)
            return {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": f"call_{n}",
                        "type": "function",
                        "function": {"name": self.tool_name, "arguments": "{}"},
                    }
                ],
            }
        return {"role": "assistant", "content": "done"}


def _error(status: int, message: str, kind: str) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": status, "message": message, "type": kind}}, status_code=status
    )


def _completion(body: dict[str, Any], message: dict[str, Any], tokens: int = 1) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "fake"),
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": "tool_calls" if message.get("tool_calls") else "stop",
            }
        ],
        "usage": {"prompt_tokens": tokens, "completion_tokens": 1, "total_tokens": tokens + 1},
    }


async def _chunks(
    body: dict[str, Any], message: dict[str, Any], tokens: int = 1
) -> AsyncIterator[str]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        data = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return f"data: {json.dumps(data)}\n\n"

    calls = message.get("tool_calls")
    if calls:
        yield chunk({"role": "assistant", "tool_calls": [{"index": 0, **calls[0]}]})
        yield chunk({}, "tool_calls")
    else:
        yield chunk({"role": "assistant", "content": message["content"]})
        yield chunk({}, "stop")
    usage = {"prompt_tokens": tokens, "completion_tokens": 1, "total_tokens": tokens + 1}
    last = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": body.get("model", "fake"),
        "choices": [],
        "usage": usage,
    }
    yield f"data: {json.dumps(last)}\n\n"
    yield "data: [DONE]\n\n"
