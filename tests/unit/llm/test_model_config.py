"""The operator's model config: file/env/spec shortcut, defaults, and what a built model is
bounded by. No network I/O."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from pydantic_ai.models.function import FunctionModel

from tether.errors import InvalidInput
from tether.llm.config import AdminModelInput, load_operator_models
from tether.llm.models import build_model
from tether.llm.provider import LenientOpenAIChatModel, ProviderModel
from tether.settings import Settings

LOCAL = {
    "name": "local",
    "provider": "openai-compatible",
    "model": "qwen",
    "base_url": "http://127.0.0.1:8080/v1",
    "request_timeout_s": 7,
    "connect_timeout_s": 2,
}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "TETHER_MODEL",
        "TETHER_MODELS_JSON",
        "TETHER_MODELS_FILE",
        "TETHER_DEFAULT_MODEL",
    ):
        monkeypatch.delenv(name, raising=False)


def test_zero_configuration_is_the_scripted_demo_model(tmp_path: Path) -> None:
    loaded = load_operator_models(Settings(data_dir=tmp_path))
    assert [m.name for m in loaded.models] == ["default"] and loaded.default == "default"
    assert isinstance(build_model(loaded.models[0]), FunctionModel)


def test_models_file_yaml_and_default(tmp_path: Path) -> None:
    path = tmp_path / "models.yaml"
    path.write_text(
        "default: demo\nmodels:\n"
        "  - {name: local, provider: openai-compatible, model: qwen, "
        "base_url: 'http://127.0.0.1:8080/v1'}\n"
        "  - {name: demo, provider: scripted, model: demo}\n"
    )
    loaded = load_operator_models(Settings(data_dir=tmp_path, models_file=path))
    assert [m.name for m in loaded.models] == ["local", "demo"]  # no spec shortcut added
    assert loaded.default == "demo"


def test_models_json_env_and_explicit_spec_shortcut(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TETHER_MODELS_JSON", json.dumps({"models": [LOCAL]}))
    monkeypatch.setenv("TETHER_MODEL", "python:tether.llm.scripted:demo_model")
    loaded = load_operator_models(Settings(data_dir=tmp_path))
    assert [m.name for m in loaded.models] == ["local", "default"]
    assert loaded.default == "local"


@pytest.mark.parametrize(
    ("doc", "default"),
    [
        ({"models": [LOCAL]}, "missing"),
        ({"models": [LOCAL, LOCAL]}, None),
        ({"models": [{**LOCAL, "base_url": None}]}, None),
        ({"models": [{**LOCAL, "provider": "mystery"}]}, None),
        ({"models": [{**LOCAL, "surprise": 1}]}, None),
        ({"models": "local"}, None),
        ({"other": []}, None),
    ],
)
def test_bad_operator_config_is_invalid_input(
    tmp_path: Path, doc: dict[str, object], default: str | None
) -> None:
    settings = Settings(data_dir=tmp_path, models_json=json.dumps(doc), default_model=default)
    with pytest.raises(InvalidInput):
        load_operator_models(settings)


def test_a_built_http_model_is_bounded_by_its_config(tmp_path: Path) -> None:
    doc = json.dumps({"models": [LOCAL]})
    cfg = load_operator_models(Settings(data_dir=tmp_path, models_json=doc)).models[0]
    model = build_model(cfg)  # no key needed for openai-compatible
    assert isinstance(model, ProviderModel)
    assert isinstance(model.wrapped, LenientOpenAIChatModel)
    settings = model.settings or {}
    timeout = settings.get("timeout")
    assert isinstance(timeout, httpx.Timeout)
    assert (timeout.read, timeout.connect) == (7, 2)
    assert settings.get("max_retries") == 0  # the turn retries, with the model's policy


def test_openai_without_its_key_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    cfg = AdminModelInput(name="gpt", provider="openai", model="gpt-4o").to_config()
    with pytest.raises(InvalidInput, match="OPENAI_API_KEY"):
        build_model(cfg)


def test_settings_give_the_bounds_a_config_leaves_out(tmp_path: Path) -> None:
    doc = json.dumps({"models": [{k: v for k, v in LOCAL.items() if k != "request_timeout_s"}]})
    settings = Settings(
        data_dir=tmp_path,
        models_json=doc,
        model="openai-compatible:m@http://127.0.0.1:9/v1",
        model_request_timeout_s=33,
        provider_max_retries=1,
    )
    local, shortcut = load_operator_models(settings).models
    assert (local.request_timeout_s, local.connect_timeout_s, local.max_retries) == (33, 2, 1)
    assert (shortcut.request_timeout_s, shortcut.max_retries) == (33, 1)
