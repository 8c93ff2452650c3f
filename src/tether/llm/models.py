"""Build the pydantic-ai model of a :class:`~tether.llm.config.ModelConfig`.

Providers: ``openai`` (Chat Completions; ``base_url`` optional), ``anthropic``,
``openai-compatible`` (any server speaking Chat Completions: Ollama, vLLM, llama.cpp; a key
is optional), ``scripted`` (the offline demo model) and ``python`` (an object importable from
Python: a pydantic-ai ``Model`` or a callable returning one — operator config only).

HTTP providers get the model's connect/request timeouts on their client, no SDK retries
(the turn owns retrying, with the model's policy) and the :class:`~tether.llm.provider.
ProviderModel` wrapper (typed errors, the non-streaming mode and fallback). The key is read
from the environment variable or file the config names, never from a request. Building makes
no network call; a bad config or a missing key raise :class:`tether.errors.InvalidInput`.

``resolve_model(spec)`` keeps the ``TETHER_MODEL`` spec form working (operator shortcut).
"""

from __future__ import annotations

import importlib

import httpx
from pydantic_ai.exceptions import UserError
from pydantic_ai.models import Model
from pydantic_ai.settings import ModelSettings

from tether.errors import InvalidInput
from tether.llm.budget import Budget, attach_budget
from tether.llm.config import ModelConfig, check_consistent, spec_to_config
from tether.llm.provider import LenientOpenAIChatModel, ProviderModel
from tether.settings import env_value

_FIELD = "model"
_DEFAULT_KEY_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}
# OpenAI-compatible servers without auth still need a non-empty key in the client.
_NO_KEY = "not-needed"


def resolve_model(spec: str, *, openai_base_url: str | None = None) -> Model:
    """Build the model for a ``TETHER_MODEL`` spec (operator trust; see ``spec_to_config``)."""
    return build_model(spec_to_config(spec, name="spec", openai_base_url=openai_base_url))


def build_model(cfg: ModelConfig) -> Model:
    """The pydantic-ai model of ``cfg`` (HTTP providers wrapped in ``ProviderModel``), with
    its context budget attached when the config states a window (llm/budget.py)."""
    budget = Budget(cfg.context_window, cfg.compaction_threshold) if cfg.context_window else None
    return attach_budget(_build_model(cfg), budget)


def _build_model(cfg: ModelConfig) -> Model:
    check_consistent(cfg.provider, cfg.model, cfg.base_url)
    try:
        if cfg.provider == "scripted":
            from tether.llm.scripted import demo_model

            return demo_model()
        if cfg.provider == "python":
            if cfg.source != "operator":  # never reachable through the API; defence in depth
                raise InvalidInput("python models come from the server config only", field=_FIELD)
            return _python(cfg.model)
        if cfg.provider == "anthropic":
            return ProviderModel(_anthropic(cfg), cfg)
        return ProviderModel(_openai(cfg), cfg)
    except UserError as exc:  # pydantic-ai's "missing API key" and similar
        raise InvalidInput(f"model {cfg.name!r}: {exc}", field=_FIELD) from exc


def model_settings(cfg: ModelConfig) -> ModelSettings:
    """Per-model bounds: the transport timeout of each attempt, a deadline for the first
    streamed output, and no SDK retries (the turn retries with the model's policy)."""
    return ModelSettings(
        timeout=httpx.Timeout(cfg.request_timeout_s, connect=cfg.connect_timeout_s),
        first_event_timeout=cfg.request_timeout_s + cfg.connect_timeout_s,
        max_retries=0,
    )


def _api_key(cfg: ModelConfig) -> str | None:
    if cfg.api_key_file is not None:
        if cfg.source != "operator":
            raise InvalidInput("key files come from the server config only", field=_FIELD)
        try:
            return cfg.api_key_file.read_text().strip() or None
        except OSError as exc:
            raise InvalidInput(
                f"model {cfg.name!r}: cannot read its key file", field=_FIELD
            ) from exc
    env = cfg.api_key_env or _DEFAULT_KEY_ENV.get(cfg.provider)
    key = env_value(env) if env else None
    if key is None and cfg.provider != "openai-compatible":
        raise InvalidInput(
            f"model {cfg.name!r}: no API key (set the environment variable {env})", field=_FIELD
        )
    return key


def _openai(cfg: ModelConfig) -> Model:
    from openai import AsyncOpenAI
    from pydantic_ai.providers.openai import OpenAIProvider

    client = AsyncOpenAI(
        base_url=cfg.base_url,
        api_key=_api_key(cfg) or _NO_KEY,
        max_retries=0,
        timeout=cfg.request_timeout_s,
    )
    return LenientOpenAIChatModel(
        cfg.model, provider=OpenAIProvider(openai_client=client), settings=model_settings(cfg)
    )


def _anthropic(cfg: ModelConfig) -> Model:
    from anthropic import AsyncAnthropic
    from pydantic_ai.models.anthropic import AnthropicModel
    from pydantic_ai.providers.anthropic import AnthropicProvider

    client = AsyncAnthropic(
        api_key=_api_key(cfg), base_url=cfg.base_url, max_retries=0, timeout=cfg.request_timeout_s
    )
    return AnthropicModel(
        cfg.model, provider=AnthropicProvider(anthropic_client=client), settings=model_settings(cfg)
    )


def _python(target: str) -> Model:
    module_name, _, attr_path = target.partition(":")
    if not module_name or not attr_path:
        raise InvalidInput(
            f"model 'python:{target}' must look like 'python:<module>:<attr>'", field=_FIELD
        )
    try:
        obj: object = importlib.import_module(module_name)
        for attr in attr_path.split("."):
            obj = getattr(obj, attr)
    except (ImportError, AttributeError) as exc:
        raise InvalidInput(f"model 'python:{target}': {exc}", field=_FIELD) from exc
    if not isinstance(obj, Model) and callable(obj):
        obj = obj()
    if not isinstance(obj, Model):
        raise InvalidInput(
            f"model 'python:{target}' gave {type(obj).__name__}, not a pydantic-ai Model",
            field=_FIELD,
        )
    return obj
