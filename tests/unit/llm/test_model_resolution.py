"""resolve_model: every spec form builds the right pydantic-ai model without network I/O.

HTTP providers come wrapped in ``ProviderModel`` (typed errors, timeouts, fallback);
``unwrap`` gives the provider's own model."""

from __future__ import annotations

import pytest
from pydantic_ai.models import Model
from pydantic_ai.models.anthropic import AnthropicModel
from pydantic_ai.models.function import FunctionModel
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.models.test import TestModel

from tether.errors import InvalidInput
from tether.llm.models import resolve_model as _resolve
from tether.llm.provider import ProviderModel

# Importable targets for the python: form.
A_MODEL = TestModel()
NOT_A_MODEL = 42


def make_model() -> TestModel:
    return TestModel(custom_output_text="made")


def make_nothing() -> str:
    return "nope"


def resolve_model(spec: str, *, openai_base_url: str | None = None) -> Model:
    model = _resolve(spec, openai_base_url=openai_base_url)
    if spec.startswith(("openai", "anthropic")):
        assert isinstance(model, ProviderModel)
        return model.wrapped
    return model


@pytest.fixture(autouse=True)
def _keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "ak-test")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


def test_openai() -> None:
    model = resolve_model("openai:gpt-4o")
    assert isinstance(model, OpenAIChatModel)
    assert model.model_name == "gpt-4o"
    assert model.base_url == "https://api.openai.com/v1/"


def test_openai_with_base_url_setting() -> None:
    model = resolve_model("openai:local", openai_base_url="http://127.0.0.1:8000/v1")
    assert isinstance(model, OpenAIChatModel)
    assert model.base_url == "http://127.0.0.1:8000/v1/"


def test_anthropic() -> None:
    model = resolve_model("anthropic:claude-sonnet-4-5")
    assert isinstance(model, AnthropicModel)
    assert model.model_name == "claude-sonnet-4-5"


def test_openai_compatible_with_url_and_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    model = resolve_model("openai-compatible:llama3.1:8b@http://127.0.0.1:11434/v1")
    assert isinstance(model, OpenAIChatModel)
    assert model.model_name == "llama3.1:8b"
    assert model.base_url == "http://127.0.0.1:11434/v1/"


def test_openai_compatible_takes_url_from_setting() -> None:
    model = resolve_model("openai-compatible:qwen", openai_base_url="http://127.0.0.1:9/v1")
    assert isinstance(model, OpenAIChatModel)
    assert model.base_url == "http://127.0.0.1:9/v1/"
    with pytest.raises(InvalidInput) as info:
        resolve_model("openai-compatible:qwen")
    assert info.value.field == "model"


def test_python_attr_instance_and_factory() -> None:
    assert resolve_model(f"python:{__name__}:A_MODEL") is A_MODEL
    made = resolve_model(f"python:{__name__}:make_model")
    assert isinstance(made, TestModel) and made.custom_output_text == "made"
    demo = resolve_model("python:tether.llm.scripted:demo_model")
    assert isinstance(demo, FunctionModel)


@pytest.mark.parametrize(
    "spec",
    [
        f"python:{__name__}:NOT_A_MODEL",
        f"python:{__name__}:make_nothing",
        f"python:{__name__}:missing",
        "python:no_such_module_xyz:thing",
        "python:only_module",
    ],
)
def test_python_errors(spec: str) -> None:
    with pytest.raises(InvalidInput) as info:
        resolve_model(spec)
    assert info.value.field == "model"


@pytest.mark.parametrize("spec", ["gpt-4o", "mystery:model", "openai:", ""])
def test_bad_specs_name_the_setting(spec: str) -> None:
    with pytest.raises(InvalidInput) as info:
        resolve_model(spec)
    assert info.value.field == "model"
    assert "model setting" in info.value.message


def test_missing_api_key_is_invalid_input(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(InvalidInput, match="OPENAI_API_KEY"):
        resolve_model("openai:gpt-4o")
