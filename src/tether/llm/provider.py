"""Providers are bounded and understood: the wrapper every HTTP model runs through.

:class:`ProviderModel` wraps a pydantic-ai model built from a
:class:`~tether.llm.config.ModelConfig` and

* streams unless the model says ``stream: false``; then each step is one plain request whose
  response is replayed as stream events (subscribers still see the parts);
* falls back to a plain request, for this model from then on, when the provider refuses to
  stream with tools — llama.cpp's OpenAI-compatible server answers "Automatic streaming tool
  choice is not supported", in an HTTP error or inside an otherwise empty stream (which
  pydantic-ai reports as "Streamed response ended without content or tool calls");
* turns transport failures into tether's errors, carrying the provider's own message:
  :class:`~tether.errors.ProviderTimeout` (no answer within the model's timeouts),
  :class:`~tether.errors.ProviderError` (cannot connect) and
  :class:`~tether.errors.ProviderUnsupported` (the provider refuses a feature, e.g. the
  fallback too). HTTP errors stay ``ModelHTTPError``: the turn retries them with the
  model's policy (:func:`retry_policy`) and reports ``provider_error`` with the message.

:class:`LenientOpenAIChatModel` sends ``content: ""`` instead of ``null`` beside
``tool_calls`` (llama.cpp rejects ``null``; OpenAI accepts both).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from openai.types import chat
from pydantic_ai.exceptions import (
    ModelAPIError,
    ModelConnectionError,
    ModelHTTPError,
    ModelRequestTimeout,
    ModelTimeoutError,
    UnexpectedModelBehavior,
)
from pydantic_ai.messages import ModelMessage, ModelResponse
from pydantic_ai.models import (
    CompletedStreamedResponse,
    Model,
    ModelRequestParameters,
    StreamedResponse,
)
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.models.wrapper import WrapperModel
from pydantic_ai.settings import ModelSettings
from pydantic_ai.tools import RunContext

from tether.errors import ProviderError, ProviderTimeout, ProviderUnsupported
from tether.llm.config import ModelConfig

log = logging.getLogger(__name__)

_EMPTY_STREAM = "Streamed response ended without content or tool calls"
_UNSUPPORTED_WORDS = ("not supported", "unsupported", "not implemented")


class LenientOpenAIChatModel(OpenAIChatModel):
    """Chat Completions with assistant ``content`` always a string (never ``null``)."""

    def _map_model_response(self, message: ModelResponse) -> chat.ChatCompletionMessageParam | None:
        mapped = super()._map_model_response(message)
        if (
            mapped is not None
            and mapped.get("role") == "assistant"
            and mapped.get("content") is None
        ):
            mapped["content"] = ""
        return mapped


def retry_policy(model: Model, default_retries: int, default_base_s: float) -> tuple[int, float]:
    """How often and how patiently the turn retries a retryable provider error."""
    if isinstance(model, ProviderModel):
        return model.cfg.max_retries, model.cfg.retry_base_s
    return default_retries, default_base_s


def cannot_stream_with_tools(exc: Exception) -> bool:
    """True when the provider's answer means "no streaming with tools here"."""
    if isinstance(exc, UnexpectedModelBehavior):
        return _EMPTY_STREAM in str(exc)
    if isinstance(exc, ModelAPIError):
        text = f"{exc.message} {getattr(exc, 'body', '')}".lower()
        return "stream" in text and any(w in text for w in _UNSUPPORTED_WORDS)
    return False


class ProviderModel(WrapperModel):
    """A configured HTTP model: bounded, typed errors, non-streaming mode and fallback."""

    def __init__(self, wrapped: Model, cfg: ModelConfig) -> None:
        super().__init__(wrapped)
        self.cfg = cfg
        self.streams_with_tools = cfg.stream  # cleared for good by the first fallback

    async def request(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> ModelResponse:
        try:
            return await self.wrapped.request(messages, model_settings, model_request_parameters)
        except Exception as exc:
            typed = self._typed(exc)
            if typed is exc:
                raise
            raise typed from exc

    @asynccontextmanager
    async def request_stream(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
        run_context: RunContext[Any] | None = None,
    ) -> AsyncGenerator[StreamedResponse]:
        params = model_request_parameters
        if not self.cfg.stream or (params.function_tools and not self.streams_with_tools):
            yield await self._replayed(messages, model_settings, params)
            return
        async with AsyncExitStack() as stack:
            try:
                stream = await stack.enter_async_context(
                    self.wrapped.request_stream(messages, model_settings, params, run_context)
                )
            except Exception as exc:
                if not (params.function_tools and cannot_stream_with_tools(exc)):
                    typed = self._typed(exc)
                    if typed is exc:
                        raise
                    raise typed from exc
                log.warning(
                    "model %s cannot stream with tools (%s); using plain requests from now on",
                    self.cfg.name,
                    _message(exc),
                )
                self.streams_with_tools = False
                stream = await self._replayed(messages, model_settings, params, cause=exc)
            try:
                yield stream
            except (ModelAPIError, UnexpectedModelBehavior) as exc:
                typed = self._typed(exc)
                if typed is exc:
                    raise
                raise typed from exc

    async def _replayed(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        params: ModelRequestParameters,
        *,
        cause: Exception | None = None,
    ) -> StreamedResponse:
        settings = ModelSettings(**(model_settings or {}))
        settings.pop("first_event_timeout", None)  # a plain request has no events to wait for
        try:
            response = await self.wrapped.request(messages, settings, params)
        except Exception as exc:
            typed = self._typed(exc)
            if cause is not None and not isinstance(typed, ProviderTimeout):
                raise ProviderUnsupported(
                    f"model {self.cfg.name!r}: the provider cannot stream with tools "
                    f"({_message(cause)}) and the plain request failed too: {_message(typed)}"
                ) from exc
            if typed is exc:
                raise
            raise typed from exc
        return CompletedStreamedResponse(
            response, model_request_parameters=params, replay_events=True
        )

    def _typed(self, exc: Exception) -> Exception:
        return typed_provider_error(exc, self)


def typed_provider_error(exc: Exception, model: Model) -> Exception:
    """tether's error for a provider failure; HTTP errors pass (the turn retries them).

    Also used by the turn for what pydantic-ai raises outside the model (its own
    ``first_event_timeout``/``request_timeout`` deadlines)."""
    name = model.cfg.name if isinstance(model, ProviderModel) else model.model_name
    if isinstance(exc, ModelTimeoutError | ModelRequestTimeout):
        bound = (
            f"within {model.cfg.request_timeout_s:g} s"
            if isinstance(model, ProviderModel)
            else "in time"
        )
        return ProviderTimeout(
            f"model {name!r}: the provider did not answer {bound} ({_message(exc)})"
        )
    if isinstance(exc, ModelHTTPError):
        text = _message(exc).lower()
        if exc.status_code in (400, 404, 422, 501) and any(w in text for w in _UNSUPPORTED_WORDS):
            return ProviderUnsupported(
                f"model {name!r}: the provider refused (HTTP {exc.status_code}): {_message(exc)}"
            )
        return exc
    if isinstance(exc, ModelConnectionError):
        return ProviderError(f"model {name!r}: cannot reach the provider: {_message(exc)}")
    if isinstance(exc, ModelAPIError | UnexpectedModelBehavior):
        return ProviderError(f"model {name!r}: {_message(exc)}")
    return exc


def _message(exc: BaseException) -> str:
    message = getattr(exc, "message", None)
    return str(message or exc or type(exc).__name__)
