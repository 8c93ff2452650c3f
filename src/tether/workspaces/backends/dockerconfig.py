"""The ``docker:`` section of a template, resolved for one build.

String values may reference build parameters as ``{{ name }}`` (e.g.
``image: "{{ image }}"``, ``memory: "{{ memory }}"``); :func:`resolve` substitutes the
build's values and parses the limits. A reference to a parameter the template does not declare
is a template error (:func:`unknown_references`); a limit that does not parse after
substitution is a typed :class:`~tether.errors.InvalidInput` naming the field.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tether.errors import InvalidInput

_REF = re.compile(r"\{\{\s*([a-z_][a-z0-9_]*)\s*\}\}")
_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_NETWORK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MIN_MEMORY = 6 << 20  # the engine refuses less than 6 MiB


@dataclass(frozen=True)
class DockerConfig:
    """What the docker backend applies to a workspace's container."""

    image: str
    nano_cpus: int | None = None
    memory_bytes: int | None = None
    pids_limit: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    network_mode: str = "none"


def _strings(raw: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
    for key in ("image", "cpus", "memory", "pids", "network_mode"):
        value = raw.get(key)
        if isinstance(value, str):
            yield key, value
    env = raw.get("env") or {}
    if isinstance(env, Mapping):
        for name, value in env.items():
            if isinstance(value, str):
                yield f"env.{name}", value


def unknown_references(spec: Any, known: set[str]) -> list[tuple[str, str]]:
    """``(field, message)`` for each ``{{ name }}`` that names no declared parameter."""
    raw = spec.model_dump() if hasattr(spec, "model_dump") else dict(spec)
    out = []
    for where, value in _strings(raw):
        for name in _REF.findall(value):
            if name not in known:
                out.append((where, f"{{{{ {name} }}}} names no parameter of this template"))
    return out


def _fill(value: str, parameters: Mapping[str, str]) -> str:
    return _REF.sub(lambda m: parameters.get(m.group(1), ""), value)


def _bad(field_name: str, message: str) -> InvalidInput:
    return InvalidInput(f"docker.{field_name}: {message}", field=f"docker.{field_name}")


def parse_cpus(raw: str) -> int:
    try:
        cpus = float(raw)
    except ValueError:
        raise _bad("cpus", f"{raw!r} is not a number of CPUs") from None
    if not math.isfinite(cpus) or cpus <= 0 or cpus > 1024:
        raise _bad("cpus", f"{raw!r} must be more than 0 and at most 1024")
    return int(cpus * 1e9)


def parse_memory(raw: str) -> int:
    match = _MEMORY.match(raw)
    if match is None:
        raise _bad("memory", f"{raw!r} is not a size (bytes, or with k, m, g, t)")
    amount = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    if amount < MIN_MEMORY:
        raise _bad("memory", f"{raw!r} is below the engine's minimum of 6m")
    return amount


def parse_pids(raw: str) -> int:
    try:
        pids = int(raw)
    except ValueError:
        raise _bad("pids", f"{raw!r} is not a whole number") from None
    if pids < 8:
        raise _bad("pids", f"{raw!r} is too low for an agent (at least 8)")
    return pids


def resolve(
    raw: Mapping[str, Any], parameters: Mapping[str, str], default_image: str
) -> DockerConfig:
    """The template's ``docker:`` data with this build's parameter values substituted."""

    def get(key: str) -> str | None:
        value = raw.get(key)
        if value is None:
            return None
        filled = _fill(str(value), parameters).strip()
        return filled or None

    image = get("image") or default_image
    if any(c.isspace() for c in image) or image.startswith("-"):
        raise _bad("image", f"{image!r} is not an image reference")
    network = get("network_mode") or "none"
    if not _NETWORK.match(network) or network.startswith("container:"):
        raise _bad("network_mode", f"{network!r} is not a network name")
    env: dict[str, str] = {}
    for name, value in (raw.get("env") or {}).items():
        if not _ENV_NAME.match(name) or name.startswith("TETHER_"):
            raise _bad(f"env.{name}", "not an allowed variable name (TETHER_* are reserved)")
        env[name] = _fill(str(value), parameters)
    cpus, memory, pids = get("cpus"), get("memory"), get("pids")
    return DockerConfig(
        image=image,
        nano_cpus=parse_cpus(cpus) if cpus else None,
        memory_bytes=parse_memory(memory) if memory else None,
        pids_limit=parse_pids(pids) if pids else None,
        env=env,
        network_mode=network,
    )
