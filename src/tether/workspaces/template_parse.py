"""Reading a workspace template: YAML text (:func:`parse_template`) or its stored JSON form
(:func:`spec_from_json`, :func:`spec_to_json`) into a
:class:`~tether.workspaces.templates.TemplateSpec`. Every problem raises
:class:`tether.errors.InvalidInput` naming the field of the first one, such as
``parameters[1].validation.regex`` (``details["errors"]`` lists them all).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import yaml
from pydantic import ValidationError

from tether.errors import InvalidInput
from tether.workspaces.safe_yaml import YamlTooLarge, load_yaml
from tether.workspaces.templates import SpecErrors, TemplateSpec


def _path(loc: Iterable[str | int]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _join(base: str, rel: str) -> str:
    if not base:
        return rel
    return f"{base}{rel}" if rel.startswith("[") else f"{base}.{rel}"


def _errors(exc: ValidationError) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    for err in exc.errors(include_url=False):
        base = _path(err["loc"])
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, SpecErrors):
            out += [{"field": _join(base, f), "message": m} for f, m in cause.errors]
            continue
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        out.append({"field": base, "message": message})
    return out


def _invalid(errors: list[dict[str, str]], what: str) -> InvalidInput:
    first = errors[0]
    where = f"{first['field']}: " if first["field"] else ""
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return InvalidInput(
        f"invalid {what}: {where}{first['message']}{more}",
        field=first["field"] or None,
        errors=errors,
    )


def spec_from_json(data: Mapping[str, Any]) -> TemplateSpec:
    """Build a spec from its stored JSON form (or any mapping); raises InvalidInput."""
    try:
        return TemplateSpec.model_validate(dict(data))
    except ValidationError as exc:
        raise _invalid(_errors(exc), "template") from None


def spec_to_json(spec: TemplateSpec) -> dict[str, Any]:
    """The spec as plain JSON data (what the database stores)."""
    return spec.model_dump(mode="json")


def _whole(message: str, **details: Any) -> InvalidInput:
    # A problem with the document as a whole: no field path to name.
    return InvalidInput(message, errors=[{"field": "", "message": message}], **details)


def parse_template(text: str) -> TemplateSpec:
    """Parse and validate a template written in YAML; raises InvalidInput naming the field
    of the first problem (``details["errors"]`` lists them all)."""
    try:
        data = load_yaml(text)
    except YamlTooLarge as exc:
        raise _whole(f"template YAML refused: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        if mark is None:
            raise _whole(f"invalid template YAML: {problem}") from None
        line, column = mark.line + 1, mark.column + 1
        raise _whole(
            f"invalid template YAML at line {line}, column {column}: {problem}",
            line=line,
            column=column,
        ) from None
    except ValueError as exc:  # values that are not plain data (.inf, !!binary, huge ints)
        raise _whole(f"invalid template YAML: {exc}") from None
    if not isinstance(data, dict):
        kind = "empty" if data is None else type(data).__name__
        raise _whole(f"a template must be a YAML mapping, got {kind}")
    if not all(isinstance(k, str) for k in data):
        raise _whole("template keys must be strings")
    return spec_from_json(data)
