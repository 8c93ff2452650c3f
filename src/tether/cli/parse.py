"""Parsing of command-line values (durations, ``key=value`` parameters)."""

from __future__ import annotations

import typer

from tether.durations import parse_duration


def parse_duration_ms(text: str) -> int:
    """``90s``, ``30m``, ``2h``, ``1h30m``, ``1d`` (a bare number means seconds) → ms."""
    try:
        seconds = parse_duration(text, positive=False)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a duration (e.g. 90s, 30m, 2h, 1h30m)") from None
    return round(seconds * 1000)


def parse_params(items: list[str] | None) -> dict[str, str]:
    """``["k=v", ...]`` → ``{"k": "v"}`` (the value may contain ``=``)."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{item!r} is not key=value", param_hint="'-p'")
        out[key.strip()] = value
    return out
