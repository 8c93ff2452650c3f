"""Parsing of command-line values (durations, ``key=value`` parameters)."""

from __future__ import annotations

import re

import typer

_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration_ms(text: str) -> int:
    """``90s``, ``30m``, ``2h``, ``1h30m``, ``1d`` (a bare number means seconds) → ms."""
    value = text.strip().lower()
    if re.fullmatch(r"\d+(?:\.\d+)?", value):
        return int(float(value) * 1000)
    pos, total = 0, 0.0
    for match in _PART.finditer(value):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS_MS[match.group(2)]
        pos = match.end()
    if pos != len(value) or not value:
        raise typer.BadParameter(f"{text!r} is not a duration (e.g. 90s, 30m, 2h, 1h30m)")
    return int(total)


def parse_params(items: list[str] | None) -> dict[str, str]:
    """``["k=v", ...]`` → ``{"k": "v"}`` (the value may contain ``=``)."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{item!r} is not key=value", param_hint="'-p'")
        out[key.strip()] = value
    return out
