"""Workspace templates: the spec, its rules, and validation of parameter values.

A template is written in YAML (see ``examples/templates/``), read into a :class:`TemplateSpec`
by ``workspaces/template_parse.py`` (which also stores it as JSON), and used to validate the
parameter values of each build (:func:`validate_parameters`). Every problem raises
:class:`tether.errors.InvalidInput` whose ``field`` is a path such as
``parameters[1].validation.regex``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from tether.errors import InvalidInput

ParameterType = Literal["string", "number", "bool", "list(string)"]

_NAME = r"^[a-z][a-z0-9-]{0,63}$"
_PARAM_NAME = r"^[a-z_][a-z0-9_]*$"
_AGENT_NAME = r"^[a-z][a-z0-9-]*$"

TTL_MS_MAX = 10 * 366 * 24 * 3600 * 1000  # ten years
CONNECTION_TIMEOUT_S_MAX = 7 * 24 * 3600
INT32_MAX = 2**31 - 1


class SpecErrors(ValueError):
    """Cross-field errors of one model, each with a path relative to that model."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{f}: {m}" for f, m in errors))
        self.errors = errors


def _scalar_to_str(value: Any) -> Any:
    # YAML turns `default: 3` into an int and `default: true` into a bool; values are strings.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return json.dumps(value)  # a list(string) value is a JSON array
    return value


def _values_to_str(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _scalar_to_str(v) for k, v in value.items()}
    return value


# An environment mapping; YAML numbers and booleans in it are taken as their strings.
EnvVars = Annotated[dict[str, str], BeforeValidator(_values_to_str)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class OptionSpec(_Model):
    name: str = Field(min_length=1)
    value: str
    description: str = ""

    @field_validator("value", mode="before")
    @classmethod
    def _coerce(cls, value: Any) -> Any:
        return _scalar_to_str(value)


class ValidationSpec(_Model):
    min: float | None = None
    max: float | None = None
    regex: str | None = None
    error: str | None = None  # replaces the default message; may use {min} {max} {value}

    @field_validator("regex")
    @classmethod
    def _regex_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _bounds(self) -> ValidationSpec:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise SpecErrors([("min", f"min ({self.min:g}) is greater than max ({self.max:g})")])
        return self


class ParameterSpec(_Model):
    name: str = Field(pattern=_PARAM_NAME)
    display_name: str = ""
    description: str = ""
    type: ParameterType = "string"
    default: str | None = None
    required: bool = False
    mutable: bool = True
    options: list[OptionSpec] = Field(default_factory=list)
    validation: ValidationSpec | None = None

    @field_validator("default", mode="before")
    @classmethod
    def _coerce(cls, value: Any) -> Any:
        return _scalar_to_str(value)

    @model_validator(mode="before")
    @classmethod
    def _display_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("display_name") and "name" in data:
            data = {**data, "display_name": data["name"]}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> ParameterSpec:
        errors: list[tuple[str, str]] = []
        v = self.validation
        if v is not None and self.type != "number" and (v.min is not None or v.max is not None):
            errors.append(("validation", f"min/max apply to number parameters, not {self.type}"))
        if v is not None and v.regex is not None and self.type not in ("string", "list(string)"):
            errors.append(("validation.regex", f"a regex cannot apply to a {self.type} parameter"))
        values = [o.value for o in self.options]
        names = [o.name for o in self.options]
        for i, o in enumerate(self.options):
            if values.index(o.value) != i:
                errors.append((f"options[{i}].value", f"duplicate option value {o.value!r}"))
            elif names.index(o.name) != i:
                errors.append((f"options[{i}].name", f"duplicate option name {o.name!r}"))
            elif self.type != "list(string)" and (problem := check_value(self, o.value, False)):
                errors.append((f"options[{i}].value", problem))
        if self.required and self.default is not None:
            errors.append(("default", "required parameters take no default"))
        elif (
            self.default is not None and not errors and (problem := check_value(self, self.default))
        ):
            errors.append(("default", f"the default is invalid: {problem}"))
        if errors:
            raise SpecErrors(errors)
        return self


class AgentSpec(_Model):
    name: str = Field(pattern=_AGENT_NAME, max_length=64)
    order: int = Field(default=0, ge=-INT32_MAX, le=INT32_MAX)
    chat: bool = False


class DockerSpec(_Model):
    """``docker:`` of a template for the ``docker`` backend. String values may use
    ``{{ parameter }}`` to take a build parameter's value (see
    :mod:`tether.workspaces.backends.dockerconfig`)."""

    image: str | None = None  # None: the server's default image (settings.docker_image)
    cpus: str | None = None  # e.g. "1.5"
    memory: str | None = None  # bytes or with a unit: "512m", "2g"
    pids: str | None = None  # max processes in the container
    env: EnvVars = Field(default_factory=dict)  # container environment
    network_mode: str = "none"  # "none", "host" or an engine network's name

    @field_validator("cpus", "memory", "pids", mode="before")
    @classmethod
    def _scalars(cls, value: Any) -> Any:
        return _scalar_to_str(value)


def _default_agents() -> list[AgentSpec]:
    return [AgentSpec(name="main", order=0, chat=True)]


class TemplateSpec(_Model):
    """A validated workspace template. Several ``chat: true`` agents are allowed here; choosing
    among them is a runtime error of agent selection."""

    name: str = Field(pattern=_NAME)
    display_name: str = ""
    description: str = ""
    backend: str = Field(default="local", min_length=1)
    parameters: list[ParameterSpec] = Field(default_factory=list)
    startup_script: str | None = None
    directory: str | None = "project"  # working directory, relative to HOME (None: HOME)
    agents: list[AgentSpec] = Field(default_factory=_default_agents, min_length=1)
    mcp: dict[str, Any] | None = None  # written as .mcp.json into the working directory
    env: EnvVars = Field(default_factory=dict)
    network: bool = True  # False: no network in the workspace (the agent session is relayed)
    docker: DockerSpec | None = None  # image, limits, env, network of the docker backend
    connection_timeout_s: int = Field(default=120, gt=0, le=CONNECTION_TIMEOUT_S_MAX)
    deprecated: bool = False
    ttl_ms: int | None = Field(default=None, gt=0, le=TTL_MS_MAX)

    @field_validator("directory")
    @classmethod
    def _directory(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.strip() or "\0" in value:
            raise ValueError("directory must be a non-empty path")
        path = PurePosixPath(value)
        if not path.is_absolute() and ".." in path.parts:
            raise ValueError("directory must stay inside HOME (no '..')")
        return value

    @model_validator(mode="before")
    @classmethod
    def _display_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("display_name") and "name" in data:
            data = {**data, "display_name": data["name"]}
        return data

    @model_validator(mode="after")
    def _unique(self) -> TemplateSpec:
        errors = [
            (f"parameters[{i}].name", f"duplicate parameter {n!r}")
            for i, n in _dups(p.name for p in self.parameters)
        ]
        errors += [
            (f"agents[{i}].name", f"duplicate agent {n!r}")
            for i, n in _dups(a.name for a in self.agents)
        ]
        if self.docker is not None:
            # Imported here: the backends package imports this module's users.
            from tether.workspaces.backends.dockerconfig import unknown_references

            known = {p.name for p in self.parameters}
            errors += [(f"docker.{f}", m) for f, m in unknown_references(self.docker, known)]
        if errors:
            raise SpecErrors(errors)
        return self


def _dups(names: Iterable[str]) -> list[tuple[int, str]]:
    seen: set[str] = set()
    out = []
    for i, n in enumerate(names):
        if n in seen:
            out.append((i, n))
        seen.add(n)
    return out


def check_value(param: ParameterSpec, value: str, with_options: bool = True) -> str | None:
    """Why ``value`` is not acceptable for ``param`` (type, options, validation), or None."""
    items: list[str] = [value]
    number: float | None = None
    if param.type == "number":
        try:
            number = float(value)
        except ValueError:
            return f"{value!r} is not a number"
        if not math.isfinite(number):
            return f"{value!r} is not a finite number"
    elif param.type == "bool":
        if value not in ("true", "false"):
            return f"{value!r} is not a bool (use 'true' or 'false')"
    elif param.type == "list(string)":
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = None
        if not isinstance(parsed, list) or not all(isinstance(x, str) for x in parsed):
            return f"{value!r} is not a JSON list of strings"
        items = parsed
    if with_options and param.options:
        allowed = {o.value for o in param.options}
        for item in items:
            if item not in allowed:
                return f"{item!r} is not one of the options: {', '.join(sorted(allowed))}"
    v = param.validation
    if v is None:
        return None
    problem = None
    if number is not None and v.min is not None and number < v.min:
        problem = f"{value} is less than the minimum {v.min:g}"
    elif number is not None and v.max is not None and number > v.max:
        problem = f"{value} is greater than the maximum {v.max:g}"
    elif v.regex is not None and param.type in ("string", "list(string)"):
        # search semantics (like Coder): anchor the regex with ^…$ to match the whole value
        bad = [item for item in items if re.search(v.regex, item) is None]
        if bad:
            problem = f"{bad[0]!r} does not match {v.regex!r}"
    if problem is not None and v.error:
        return _custom_error(v, value) or problem
    return problem


def _custom_error(v: ValidationSpec, value: str) -> str:
    fields = {
        "min": "" if v.min is None else f"{v.min:g}",
        "max": "" if v.max is None else f"{v.max:g}",
    }
    fields["value"] = value
    text = v.error or ""
    for key, repl in fields.items():
        text = text.replace("{" + key + "}", repl)
    return text


def validate_parameters(
    spec: TemplateSpec,
    values: Mapping[str, str],
    *,
    previous: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Check build parameter values against the template and return the full resolved set.

    Missing optional values take their default (or the ``previous`` value when given, so a
    rebuild keeps earlier choices). An immutable parameter may not change from ``previous``.
    Raises InvalidInput with ``field="parameters.<name>"`` for the first problem."""
    known = {p.name: p for p in spec.parameters}
    for name, given in values.items():
        # A parameter the template dropped may ride along unchanged from the previous build.
        stale = previous is not None and previous.get(name) == given
        if name not in known and not stale:
            raise InvalidInput(f"unknown parameter {name!r}", field=f"parameters.{name}")
    resolved: dict[str, str] = {}
    for p in spec.parameters:
        field = f"parameters.{p.name}"
        value: str | None = values.get(p.name)
        if value is None and previous is not None:
            value = previous.get(p.name)
        if value is None:
            value = p.default
        if value is None:
            if p.required:
                raise InvalidInput(f"parameter {p.name!r} is required", field=field)
            continue  # optional without default: left unset
        if not isinstance(value, str):
            raise InvalidInput(f"parameter {p.name!r} must be a string value", field=field)
        problem = check_value(p, value)
        if problem is not None:
            raise InvalidInput(f"parameter {p.name!r}: {problem}", field=field)
        if not p.mutable and previous is not None and p.name in previous:
            if previous[p.name] != value:
                raise InvalidInput(
                    f"parameter {p.name!r} is immutable and cannot change "
                    f"from {previous[p.name]!r} to {value!r}",
                    field=field,
                )
        resolved[p.name] = value
    return resolved
