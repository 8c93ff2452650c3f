"""Template YAML parsing, spec validation and build parameter validation."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tether.errors import InvalidInput
from tether.workspaces.template_parse import parse_template, spec_from_json, spec_to_json
from tether.workspaces.templates import TemplateSpec, validate_parameters

EXAMPLES = Path(__file__).parents[3] / "examples" / "templates"


def parse(text: str) -> TemplateSpec:
    return parse_template(textwrap.dedent(text))


def parse_error(text: str) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        parse(text)
    return info.value


# -- the spec ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_examples_parse_and_round_trip_through_json(path: Path) -> None:
    spec = parse_template(path.read_text())
    assert spec_from_json(spec_to_json(spec)) == spec
    assert validate_parameters(spec, {}) is not None


def test_python_example_is_a_one_agent_python_template() -> None:
    spec = parse_template((EXAMPLES / "python.yaml").read_text())
    assert spec.name == "python"
    assert spec.directory == "project"
    assert [a.chat for a in spec.agents] == [True]
    assert {p.name for p in spec.parameters} >= {"python_version", "repo_name"}
    assert "pip" not in (spec.startup_script or "")


def test_defaults() -> None:
    spec = parse("name: tiny\n")
    assert spec.display_name == "tiny"
    assert spec.description == ""
    assert spec.backend == "local"
    assert spec.directory == "project"
    assert spec.connection_timeout_s == 120
    assert spec.parameters == [] and spec.env == {} and spec.mcp is None
    assert [(a.name, a.order, a.chat) for a in spec.agents] == [("main", 0, True)]
    assert not spec.deprecated and spec.ttl_ms is None


def test_parameter_defaults_and_yaml_scalars_become_strings() -> None:
    spec = parse(
        """
        name: t
        env: {DEBUG: 1, FAST: true}
        parameters:
          - {name: cpus, type: number, default: 2, validation: {min: 1, max: 8}}
          - {name: gpu, type: bool, default: false}
          - {name: tags, type: list(string), default: [a, b]}
        """
    )
    cpus, gpu, tags = spec.parameters
    assert cpus.display_name == "cpus" and cpus.mutable and not cpus.required
    assert (cpus.default, gpu.default, tags.default) == ("2", "false", '["a", "b"]')
    assert spec.env == {"DEBUG": "1", "FAST": "true"}


def test_several_chat_agents_are_allowed() -> None:
    spec = parse(
        """
        name: t
        agents: [{name: a, chat: true}, {name: b, order: 1, chat: true}]
        """
    )
    assert [a.name for a in spec.agents] == ["a", "b"]


@pytest.mark.parametrize(
    ("text", "field", "fragment"),
    [
        ("name: Bad_Name\n", "name", "pattern"),
        ("name: t\ncolour: red\n", "colour", "unknown key"),
        ("name: t\nparameters: [{name: 9x}]\n", "parameters[0].name", "pattern"),
        ("name: t\nparameters: [{name: x, type: float}]\n", "parameters[0].type", ""),
        (
            "name: t\nparameters: [{name: a}, {name: b, validation: {regex: '(['}}]\n",
            "parameters[1].validation.regex",
            "invalid regular expression",
        ),
        (
            "name: t\nparameters: [{name: n, type: number, validation: {min: 5, max: 1}}]\n",
            "parameters[0].validation.min",
            "greater than max",
        ),
        (
            "name: t\nparameters: [{name: x, required: true, default: a}]\n",
            "parameters[0].default",
            "required parameters take no default",
        ),
        (
            "name: t\nparameters: [{name: x, default: c, options: [{name: A, value: a}]}]\n",
            "parameters[0].default",
            "not one of the options",
        ),
        (
            "name: t\nparameters: [{name: x, default: UP, validation: {regex: '^[a-z]+$'}}]\n",
            "parameters[0].default",
            "does not match",
        ),
        (
            "name: t\nparameters: [{name: n, type: number, default: 9, validation: {max: 8}}]\n",
            "parameters[0].default",
            "greater than the maximum",
        ),
        (
            "name: t\nparameters: [{name: n, type: number, default: lots}]\n",
            "parameters[0].default",
            "not a number",
        ),
        (
            "name: t\nparameters: [{name: n, type: number, validation: {regex: x}}]\n",
            "parameters[0].validation.regex",
            "cannot apply",
        ),
        (
            "name: t\nparameters: [{name: b, type: bool, validation: {min: 1}}]\n",
            "parameters[0].validation",
            "min/max apply to number",
        ),
        (
            "name: t\nparameters: [{name: x, options: [{name: A, value: a}, {name: B, value: a}]}]",
            "parameters[0].options[1].value",
            "duplicate option value",
        ),
        ("name: t\nparameters: [{name: x}, {name: x}]\n", "parameters[1].name", "duplicate"),
        ("name: t\nagents: [{name: a}, {name: a}]\n", "agents[1].name", "duplicate agent"),
        ("name: t\nagents: [{name: A}]\n", "agents[0].name", "pattern"),
        ("name: t\nagents: []\n", "agents", "at least 1"),
        ("name: t\ndirectory: ../escape\n", "directory", "inside HOME"),
        ("name: t\nconnection_timeout_s: 0\n", "connection_timeout_s", "greater than 0"),
        ("name: t\nenv: {A: [1]}\n", "env.A", ""),
    ],
)
def test_invalid_templates_name_the_field(text: str, field: str, fragment: str) -> None:
    err = parse_error(text)
    assert err.field == field
    assert err.details["field"] == field
    assert fragment in err.message
    assert err.details["errors"][0]["field"] == field


def test_all_errors_are_listed_and_the_first_is_the_field() -> None:
    err = parse_error(
        """
        name: Bad
        connection_timeout_s: -1
        parameters:
          - {name: ok}
          - {name: bad, validation: {regex: '(['}}
        """
    )
    fields = [e["field"] for e in err.details["errors"]]
    assert fields[0] == err.field == "name"
    assert set(fields) == {"name", "connection_timeout_s", "parameters[1].validation.regex"}
    assert "(and 2 more)" in err.message


def test_yaml_syntax_error_gives_line_and_column() -> None:
    err = parse_error("name: t\nparameters: [\n  {name: a\n")
    assert "line 4, column 1" in err.message
    assert (err.details["line"], err.details["column"]) == (4, 1)
    assert err.message.startswith("invalid template YAML")
    assert err.field is None


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just a string\n", "1: x\n"])
def test_non_mapping_yaml_is_invalid(text: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_template(text)
    assert info.value.details["errors"][0]["message"] == info.value.message


def test_spec_from_json_rejects_bad_data() -> None:
    with pytest.raises(InvalidInput) as info:
        spec_from_json({"name": "t", "agents": [{"name": "a", "order": "first"}]})
    assert info.value.field == "agents[0].order"


# -- parameter values --------------------------------------------------------------------

SPEC = """
name: t
parameters:
  - {name: region, default: eu, options: [{name: Europe, value: eu}, {name: US, value: us}]}
  - {name: cpus, type: number, default: 2, validation: {min: 1, max: 8}}
  - {name: gpu, type: bool, default: "false"}
  - name: repo
    required: true
    mutable: false
    validation: {regex: '^[a-z-]+$', error: "{value} is not a valid repo name"}
  - {name: note}
  - name: tags
    type: list(string)
    default: '["x"]'
    options: [{name: X, value: x}, {name: Y, value: y}]
"""


@pytest.fixture
def spec() -> TemplateSpec:
    return parse_template(SPEC)


def invalid(spec: TemplateSpec, values: dict[str, str], **kw: dict[str, str]) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        validate_parameters(spec, values, **kw)
    return info.value


def test_defaults_are_filled_in(spec: TemplateSpec) -> None:
    assert validate_parameters(spec, {"repo": "demo"}) == {
        "region": "eu",
        "cpus": "2",
        "gpu": "false",
        "repo": "demo",
        "tags": '["x"]',
    }


def test_given_values_win(spec: TemplateSpec) -> None:
    values = {"repo": "demo", "region": "us", "cpus": "7.5", "gpu": "true", "note": "hi"}
    values["tags"] = '["x", "y"]'
    assert validate_parameters(spec, values) == values


@pytest.mark.parametrize(
    ("values", "field", "fragment"),
    [
        ({"repo": "demo", "zone": "a"}, "parameters.zone", "unknown parameter"),
        ({}, "parameters.repo", "required"),
        ({"repo": "demo", "cpus": "many"}, "parameters.cpus", "not a number"),
        ({"repo": "demo", "cpus": "nan"}, "parameters.cpus", "not a finite number"),
        ({"repo": "demo", "cpus": "0"}, "parameters.cpus", "less than the minimum 1"),
        ({"repo": "demo", "cpus": "9"}, "parameters.cpus", "greater than the maximum 8"),
        ({"repo": "demo", "gpu": "yes"}, "parameters.gpu", "not a bool"),
        ({"repo": "demo", "region": "mars"}, "parameters.region", "not one of the options"),
        ({"repo": "Demo!"}, "parameters.repo", "Demo! is not a valid repo name"),
        ({"repo": "demo", "tags": "x"}, "parameters.tags", "JSON list of strings"),
        ({"repo": "demo", "tags": '["z"]'}, "parameters.tags", "not one of the options"),
    ],
)
def test_bad_values_name_the_parameter(
    spec: TemplateSpec, values: dict[str, str], field: str, fragment: str
) -> None:
    err = invalid(spec, values)
    assert err.field == field
    assert fragment in err.message


def test_immutable_parameter_cannot_change(spec: TemplateSpec) -> None:
    previous = validate_parameters(spec, {"repo": "demo"})
    err = invalid(spec, {"repo": "other"}, previous=previous)
    assert err.field == "parameters.repo"
    assert "immutable" in err.message
    # Unchanged is fine, and so is changing a mutable one.
    again = validate_parameters(spec, {"repo": "demo", "cpus": "4"}, previous=previous)
    assert again == {**previous, "cpus": "4"}


def test_previous_values_are_kept_over_defaults(spec: TemplateSpec) -> None:
    previous = validate_parameters(spec, {"repo": "demo", "region": "us"})
    assert validate_parameters(spec, {}, previous=previous)["region"] == "us"


def test_a_parameter_dropped_from_the_template_may_ride_along_from_previous(
    spec: TemplateSpec,
) -> None:
    previous = {**validate_parameters(spec, {"repo": "demo"}), "old": "1"}
    resolved = validate_parameters(spec, dict(previous), previous=previous)
    assert "old" not in resolved
    err = invalid(spec, {**previous, "old": "2"}, previous=previous)
    assert err.field == "parameters.old"


def test_immutable_parameter_new_to_the_template_may_be_set(spec: TemplateSpec) -> None:
    assert validate_parameters(spec, {"repo": "demo"}, previous={"region": "eu"})["repo"] == "demo"
