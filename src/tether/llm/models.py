"""Pick the pydantic-ai model named by the ``model`` setting (``TETHER_MODEL``).

Spec forms:

* ``openai:<model>`` — OpenAI Chat Completions (``OPENAI_API_KEY``; with ``openai_base_url``
  the requests go to that server instead);
* ``anthropic:<model>`` — Anthropic (``ANTHROPIC_API_KEY``);
* ``openai-compatible:<model>@<base_url>`` — any OpenAI-compatible server (Ollama, vLLM,
  llama.cpp); the URL may be left out when ``openai_base_url`` is given. A missing API key
  is fine there (the provider sends a placeholder);
* ``python:<module>:<attr>`` — an object importable from Python: a pydantic-ai ``Model``, or
  a callable taking no arguments that returns one (e.g. the scripted demo model).

API keys are read from the environment by the pydantic-ai providers themselves. Building a
model makes no network call; a bad spec or missing credentials raise
:class:`tether.errors.InvalidInput` with ``field="model"``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from pydantic_ai.exceptions import UserError
from pydantic_ai.models import Model

from tether.errors import InvalidInput

_FIELD = "model"


def resolve_model(spec: str, *, openai_base_url: str | None = None) -> Model:
    """Build the model for ``spec`` (see the module docstring for the accepted forms)."""
    prefix, sep, rest = spec.strip().partition(":")
    if not sep or not rest:
        raise InvalidInput(
            f"model setting {spec!r} must look like '<provider>:<model>'", field=_FIELD
        )
    builders: dict[str, Callable[[str, str | None], Model]] = {
        "openai": _openai,
        "anthropic": _anthropic,
        "openai-compatible": _openai_compatible,
        "python": _python,
    }
    builder = builders.get(prefix)
    if builder is None:
        raise InvalidInput(
            f"model setting {spec!r}: unknown provider {prefix!r} "
            f"(expected one of {', '.join(builders)})",
            field=_FIELD,
        )
    try:
        return builder(rest, openai_base_url)
    except UserError as exc:  # pydantic-ai's "missing API key" and similar
        raise InvalidInput(f"model setting {spec!r}: {exc}", field=_FIELD) from exc


def _openai(name: str, base_url: str | None) -> Model:
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    return OpenAIChatModel(name, provider=OpenAIProvider(base_url=base_url))


def _openai_compatible(rest: str, base_url: str | None) -> Model:
    # Split at the first '@': model names have none, while a URL may carry user:pass@host.
    name, _, url = rest.partition("@")
    url = url or (base_url or "")
    if not name or not url:
        raise InvalidInput(
            f"model setting 'openai-compatible:{rest}' needs '<model>@<base_url>' "
            "or the openai_base_url setting",
            field=_FIELD,
        )
    return _openai(name, url)


def _anthropic(name: str, _base_url: str | None) -> Model:
    from pydantic_ai.models.anthropic import AnthropicModel
    from pydantic_ai.providers.anthropic import AnthropicProvider

    return AnthropicModel(name, provider=AnthropicProvider())


def _python(rest: str, _base_url: str | None) -> Model:
    module_name, _, attr_path = rest.partition(":")
    if not module_name or not attr_path:
        raise InvalidInput(
            f"model setting 'python:{rest}' must look like 'python:<module>:<attr>'", field=_FIELD
        )
    try:
        obj: object = importlib.import_module(module_name)
        for attr in attr_path.split("."):
            obj = getattr(obj, attr)
    except (ImportError, AttributeError) as exc:
        raise InvalidInput(f"model setting 'python:{rest}': {exc}", field=_FIELD) from exc
    if not isinstance(obj, Model) and callable(obj):
        obj = obj()
    if not isinstance(obj, Model):
        raise InvalidInput(
            f"model setting 'python:{rest}' gave {type(obj).__name__}, not a pydantic-ai Model",
            field=_FIELD,
        )
    return obj
