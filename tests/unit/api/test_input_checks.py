"""The pure checks behind the API's input guard and the template loader: plain data,
bounded YAML, and the HTTP status of an agent's refusal."""

from __future__ import annotations

import time

import pytest

from tether.api.guard import check_json
from tether.errors import AgentRequestFailed, InvalidInput
from tether.plaindata import plain_problem
from tether.workspaces.safe_yaml import YamlTooLarge, load_yaml
from tether.workspaces.template_parse import parse_template


@pytest.mark.parametrize(
    "value",
    [None, True, 0, -(2**63), 2**63 - 1, 1.5, "héllo 😀", [1, {"a": ["b"]}], {"k": None}],
)
def test_plain_values_pass(value: object) -> None:
    assert plain_problem(value, max_depth=8) is None


@pytest.mark.parametrize(
    "value",
    [
        2**63,
        -(2**63) - 1,
        float("inf"),
        float("nan"),
        "a\x00b",
        "\ud800",
        {"\udfff": 1},
        {1: "x"},
        b"bytes",
        {1, 2},
        [[[[[[[[[["too deep"]]]]]]]]]],
    ],
)
def test_non_plain_values_fail(value: object) -> None:
    assert plain_problem(value, max_depth=8) is not None


def test_plain_check_is_iterative() -> None:
    deep: list[object] = []
    for _ in range(100_000):
        deep = [deep]
    assert "deeper" in (plain_problem(deep, max_depth=64) or "")


@pytest.mark.parametrize(
    "body",
    [b"{", b'{"a": NaN}', b'{"a": 1e999}', b'{"a": "\\ud800"}', b"\xff", b"[" * 50_000],
)
def test_check_json_refuses(body: bytes) -> None:
    with pytest.raises(InvalidInput):
        check_json(body)


def test_check_json_returns_the_data() -> None:
    assert check_json('{"a": [1, 2.5, "é"]}'.encode()) == {"a": [1, 2.5, "é"]}


def _bomb(levels: int) -> str:
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "\n".join(lines)


def test_alias_bomb_is_refused_before_expanding() -> None:
    started = time.monotonic()
    with pytest.raises(YamlTooLarge, match="expands"):
        load_yaml(_bomb(10))  # 9**10 nodes once expanded
    assert time.monotonic() - started < 2.0


def test_aliases_within_the_bounds_load() -> None:
    data = load_yaml("base: &b {image: python}\nuse: *b\nmerged: {<<: *b, tag: 3}")
    assert data == {
        "base": {"image": "python"},
        "use": {"image": "python"},
        "merged": {"image": "python", "tag": 3},
    }


def test_large_scalar_repeated_by_aliases_is_refused() -> None:
    text = "a: &a " + "x" * 100_000 + "\nb: [" + ", ".join(["*a"] * 20) + "]"
    with pytest.raises(YamlTooLarge, match="characters"):
        load_yaml(text)


@pytest.mark.parametrize("text", ["a: &a [*a]", "a: &a {b: *a}", "a: &a {b: [1, {c: *a}]}"])
def test_recursive_alias_is_refused(text: str) -> None:
    with pytest.raises(YamlTooLarge, match="contains it"):
        load_yaml(text)


def test_deep_yaml_is_refused_without_recursion_error() -> None:
    with pytest.raises(YamlTooLarge, match="deeper"):
        load_yaml("a: " + "[" * 100_000 + "]" * 100_000)


def test_dates_become_text() -> None:
    assert load_yaml("d: 2024-01-02") == {"d": "2024-01-02"}


@pytest.mark.parametrize(
    "text",
    [
        "name: t\nagents: [{name: a, order: .inf}]",
        "name: t\nmcp: {x: .nan}",
        "name: t\nmcp: {x: !!binary aGVsbG8=}",
        "name: t\nmcp: {x: !!set {a}}",
        "name: t\nagents: [{name: a, order: " + "9" * 5000 + "}]",
        "name: t\nttl_ms: 99999999999999999",
        "name: t\nconnection_timeout_s: 9999999999999",
        "name: t\nmcp: " + "[" * 1000 + "]" * 1000,
        "name: t\nmcp: &a {x: *a}",
        "!!python/object/apply:os.system ['true']",
    ],
)
def test_parse_template_refuses_with_invalid_input(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_template(text)


@pytest.mark.parametrize(
    ("agent_status", "api_status"),
    [(400, 400), (404, 404), (409, 409), (413, 413), (401, 502), (403, 502), (500, 502)],
)
def test_agent_refusal_status(agent_status: int, api_status: int) -> None:
    exc = AgentRequestFailed("no", status=agent_status, agent_code="x")
    assert exc.status_code == api_status
    assert exc.http_status == 502  # the class's status is unchanged (model-facing paths)
