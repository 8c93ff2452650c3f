"""Configured models: what a named model is, and the operator's list of them.

A chat names a model; the name maps to a :class:`ModelConfig` written by the operator (the
server's config file, ``TETHER_MODELS_JSON`` or the ``TETHER_MODEL`` spec shortcut) or by an
admin through the API (:class:`AdminModelInput`, stored in the database). Nothing else can
choose a provider, a URL or a key source.

Operator document (YAML or JSON, from ``models_file`` or ``models_json``)::

    default: local                 # optional; else the first model
    models:
      - name: local
        provider: openai-compatible  # openai | anthropic | openai-compatible | scripted | python
        model: qwen2.5-coder         # the provider's model id (python: "<module>:<attr>")
        base_url: http://127.0.0.1:8080/v1
        api_key_env: LLAMA_API_KEY   # or api_key_file: /etc/tether/llama.key (operator only)
        request_timeout_s: 60
        connect_timeout_s: 5
        max_retries: 2
        retry_base_s: 1.0
        stream: true
        context_window: 32768        # tokens; compaction above compaction_threshold of it
        compaction_threshold: 0.7
        summary_model: small        # optional: another configured model summarises
        title_model: small          # optional: another configured model writes titles
        images: false               # true: users may attach images (chatd/images.py)

Trust: ``python`` models (import and call code) and ``api_key_file`` (read a file) are
accepted only from the operator. Admin models name their key by an environment variable
matching ``*_API_KEY`` (not ``TETHER_*``), so an admin cannot route the database URL or any
other server secret to a provider.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tether.errors import InvalidInput
from tether.settings import Settings

Provider = Literal["openai", "anthropic", "openai-compatible", "scripted", "python"]
AdminProvider = Literal["openai", "anthropic", "openai-compatible", "scripted"]
NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
ADMIN_KEY_ENV = re.compile(r"^(?!TETHER_)[A-Z][A-Z0-9_]{0,96}_API_KEY$")
SCRIPTED_MODELS = ("demo",)
SHORTCUT_NAME = "default"
DEMO_MODEL = "tether.llm.scripted:demo_model"

ModelName = Annotated[str, Field(pattern=NAME_PATTERN)]


class ModelOptions(BaseModel):
    """The bounds and behaviour of one model (docs/operations.md §2.1: per-model request timeout,
    non-streaming fallback)."""

    model_config = ConfigDict(extra="forbid")

    request_timeout_s: float = Field(default=120.0, gt=0, le=3600)
    connect_timeout_s: float = Field(default=10.0, gt=0, le=300)
    max_retries: int = Field(default=3, ge=0, le=10)
    retry_base_s: float = Field(default=1.0, ge=0, le=60)
    stream: bool = True
    # the context budget (chatd/context.py): None = unknown, nothing is measured
    context_window: int | None = Field(default=None, ge=512, le=100_000_000)
    compaction_threshold: float = Field(default=0.7, ge=0.1, le=0.95)
    summary_model: ModelName | None = None  # another configured model writes the summaries
    images: bool = False  # accepts image parts (chatd/images.py)
    title_model: ModelName | None = None  # another configured model writes automatic titles


class ModelConfig(ModelOptions):
    """A named model as the server uses it."""

    name: ModelName
    provider: Provider
    model: str = Field(min_length=1, max_length=256)
    base_url: str | None = Field(default=None, max_length=2048)
    api_key_env: str | None = Field(default=None, max_length=128)
    api_key_file: Path | None = None
    source: Literal["operator", "admin"] = "operator"

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("base_url must be an http:// or https:// URL")
        return value


class AdminModelInput(ModelOptions):
    """A model an admin adds through the API: no ``python`` provider, no key file."""

    name: ModelName
    provider: AdminProvider
    model: str = Field(min_length=1, max_length=256)
    base_url: str | None = Field(default=None, max_length=2048)
    api_key_env: str | None = Field(default=None, max_length=128)

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return ModelConfig._url(value)

    @field_validator("api_key_env")
    @classmethod
    def _key_env(cls, value: str | None) -> str | None:
        if value is not None and not ADMIN_KEY_ENV.match(value):
            raise ValueError(
                "api_key_env must name an environment variable ending in _API_KEY (not TETHER_*)"
            )
        return value

    def to_config(self) -> ModelConfig:
        check_consistent(self.provider, self.model, self.base_url)
        return ModelConfig(**self.model_dump(), source="admin")


class AdminModelPatch(BaseModel):
    """A partial edit of an admin model (the name stays)."""

    model_config = ConfigDict(extra="forbid")

    provider: AdminProvider | None = None
    model: str | None = Field(default=None, min_length=1, max_length=256)
    base_url: str | None = Field(default=None, max_length=2048)
    api_key_env: str | None = Field(default=None, max_length=128)
    request_timeout_s: float | None = Field(default=None, gt=0, le=3600)
    connect_timeout_s: float | None = Field(default=None, gt=0, le=300)
    max_retries: int | None = Field(default=None, ge=0, le=10)
    retry_base_s: float | None = Field(default=None, ge=0, le=60)
    stream: bool | None = None
    context_window: int | None = Field(default=None, ge=512, le=100_000_000)
    compaction_threshold: float | None = Field(default=None, ge=0.1, le=0.95)
    summary_model: ModelName | None = None
    images: bool | None = None
    title_model: ModelName | None = None

    def apply(self, current: ModelConfig) -> ModelConfig:
        data = current.model_dump(exclude={"source", "api_key_file"})
        data.update(self.model_dump(exclude_unset=True))
        try:
            edited = AdminModelInput(**data)
        except ValidationError as exc:
            raise _invalid(exc, "model") from exc
        return edited.to_config()


def check_consistent(provider: str, model: str, base_url: str | None) -> None:
    """Provider-specific rules shared by operator and admin models."""
    if provider == "openai-compatible" and not base_url:
        raise InvalidInput("an openai-compatible model needs base_url", field="base_url")
    if provider == "scripted" and model not in SCRIPTED_MODELS:
        raise InvalidInput(
            f"scripted models are {', '.join(SCRIPTED_MODELS)}, not {model!r}", field="model"
        )
    if provider == "python" and model.count(":") != 1:
        raise InvalidInput("a python model is '<module>:<attr>'", field="model")


def _invalid(exc: ValidationError, prefix: str) -> InvalidInput:
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first.get("loc", ()))
    field = f"{prefix}.{loc}" if loc else prefix
    return InvalidInput(f"{field}: {first.get('msg', 'invalid')}", field=field)


def option_defaults(settings: Settings) -> dict[str, Any]:
    """A model's bounds when its config leaves them out (the settings' values)."""
    return {
        "request_timeout_s": settings.model_request_timeout_s,
        "connect_timeout_s": settings.model_connect_timeout_s,
        "max_retries": settings.provider_max_retries,
        "retry_base_s": settings.provider_retry_base_s,
    }


def spec_to_config(
    spec: str,
    *,
    name: str,
    openai_base_url: str | None = None,
    defaults: dict[str, Any] | None = None,
) -> ModelConfig:
    """The ``TETHER_MODEL`` spec shortcut (``openai:<m>``, ``anthropic:<m>``,
    ``openai-compatible:<m>@<url>``, ``python:<module>:<attr>``) as a named config."""
    prefix, sep, rest = spec.strip().partition(":")
    if not sep or not rest:
        raise InvalidInput(
            f"model setting {spec!r} must look like '<provider>:<model>'", field="model"
        )
    base_url: str | None = None
    key_env: str | None = None
    if prefix == "openai":
        base_url = openai_base_url
    elif prefix == "openai-compatible":
        # Split at the first '@': model names have none, while a URL may carry user:pass@host.
        rest, _, url = rest.partition("@")
        base_url = url or openai_base_url
        if not rest or not base_url:
            raise InvalidInput(
                f"model setting {spec!r} needs '<model>@<base_url>' or the openai_base_url setting",
                field="model",
            )
        key_env = "OPENAI_API_KEY"  # the operator's own choice of URL: as before, if set
    elif prefix not in ("anthropic", "python"):
        raise InvalidInput(
            f"model setting {spec!r}: unknown provider {prefix!r} "
            "(expected one of openai, anthropic, openai-compatible, python)",
            field="model",
        )
    if prefix == "python" and rest.count(":") != 1:
        raise InvalidInput(
            f"model setting {spec!r} must look like 'python:<module>:<attr>'", field="model"
        )
    try:
        return ModelConfig.model_validate(
            {
                **(defaults or {}),
                "name": name,
                "provider": prefix,
                "model": rest,
                "base_url": base_url,
                "api_key_env": key_env,
                "images": (prefix, rest) == ("python", DEMO_MODEL),  # the demo takes images
            }
        )
    except ValidationError as exc:
        raise _invalid(exc, "model") from exc


class OperatorModels(BaseModel):
    """The operator's models and the default's name."""

    models: list[ModelConfig]
    default: str


def load_operator_models(settings: Settings) -> OperatorModels:
    """Read the operator's models from ``models_file``/``models_json`` and the ``model``
    spec. The spec adds a model named ``default`` when no document defines models or when
    ``TETHER_MODEL`` was set explicitly; zero configuration gives the scripted demo model."""
    documents: list[tuple[str, Any]] = []
    if settings.models_file is not None:
        try:
            text = settings.models_file.read_text()
        except OSError as exc:
            raise InvalidInput(f"cannot read models_file: {exc}", field="models_file") from exc
        documents.append(("models_file", _parse(text, "models_file")))
    if settings.models_json:
        documents.append(("models_json", _parse(settings.models_json, "models_json")))
    models: list[ModelConfig] = []
    default: str | None = settings.default_model
    defaults = option_defaults(settings)
    for field, doc in documents:
        if not isinstance(doc, dict) or not isinstance(doc.get("models", []), list):
            raise InvalidInput(f"{field} must be a mapping with a 'models' list", field=field)
        unknown = set(doc) - {"models", "default"}
        if unknown:
            raise InvalidInput(f"{field}: unknown keys {sorted(unknown)}", field=field)
        for i, item in enumerate(doc.get("models", [])):
            try:
                cfg = ModelConfig.model_validate({**defaults, **item, "source": "operator"})
            except (ValidationError, TypeError) as exc:
                if isinstance(exc, ValidationError):
                    raise _invalid(exc, f"{field}.models[{i}]") from exc
                raise InvalidInput(f"{field}.models[{i}] must be a mapping", field=field) from exc
            check_consistent(cfg.provider, cfg.model, cfg.base_url)
            models.append(cfg)
        default = default or doc.get("default")
    if not models or "model" in settings.model_fields_set:
        models.append(
            spec_to_config(
                settings.model,
                name=SHORTCUT_NAME,
                openai_base_url=settings.openai_base_url,
                defaults=defaults,
            )
        )
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise InvalidInput(f"duplicate model names in the server config: {names}", field="models")
    default = default or names[0]
    if default not in names:
        raise InvalidInput(
            f"default model {default!r} is not configured (have: {', '.join(names)})",
            field="default_model",
        )
    return OperatorModels(models=models, default=default)


def _parse(text: str, field: str) -> Any:
    try:
        return json.loads(text) if text.lstrip().startswith("{") else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise InvalidInput(f"{field} is not valid YAML/JSON: {exc}", field=field) from exc
