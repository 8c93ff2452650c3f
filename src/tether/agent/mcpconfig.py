"""Parsing the workspace's ``.mcp.json``.

Format (the common one)::

    {"mcpServers": {
        "name": {"command": "...", "args": ["..."], "env": {"K": "V"}},   # stdio
        "other": {"url": "http://...", "headers": {"K": "V"}}            # streamable HTTP
    }}

A malformed file is one error; a malformed entry is an error for that server only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONFIG_FILE_NAME = ".mcp.json"


@dataclass(frozen=True)
class ServerSpec:
    """One configured MCP server; exactly one of ``command`` / ``url`` is set unless ``error``."""

    name: str
    command: str | None = None
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    url: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    error: str | None = None


class ConfigError(ValueError):
    """The config file as a whole is unusable."""


def _str_map(value: Any, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ValueError(f"{what} must be an object of strings")
    return {k: str(v) for k, v in value.items()}


def _parse_entry(name: str, raw: Any) -> ServerSpec:
    try:
        if not isinstance(raw, dict):
            raise ValueError("entry must be an object")
        command, url = raw.get("command"), raw.get("url")
        if command is not None and url is not None:
            raise ValueError("set either command or url, not both")
        if isinstance(command, str) and command:
            args = raw.get("args") or []
            if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
                raise ValueError("args must be a list of strings")
            return ServerSpec(
                name=name, command=command, args=tuple(args), env=_str_map(raw.get("env"), "env")
            )
        if isinstance(url, str) and url.startswith(("http://", "https://")):
            return ServerSpec(name=name, url=url, headers=_str_map(raw.get("headers"), "headers"))
        raise ValueError("needs a command (stdio) or an http(s) url")
    except ValueError as exc:
        return ServerSpec(name=name, error=f"invalid server entry: {exc}")


def parse_config(text: str) -> list[ServerSpec]:
    """The servers of a config file, in file order; raises :class:`ConfigError`."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"invalid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError("top level must be an object")
    servers = data.get("mcpServers")
    if servers is None:
        return []
    if not isinstance(servers, dict):
        raise ConfigError("mcpServers must be an object")
    return [_parse_entry(str(name), raw) for name, raw in servers.items()]


def write_template_config(directory: Path, mcp: Mapping[str, Any]) -> bool:
    """Write a template's MCP config as ``directory/.mcp.json`` unless that file exists.

    ``mcp`` is the file's content (``{"mcpServers": {...}}``); a bare map of servers is
    wrapped. A file already there (the user's, or an earlier start's) is kept: returns False.
    The file appears atomically, never half-written. Raises ``OSError`` on disk errors.
    """
    data = dict(mcp) if "mcpServers" in mcp else {"mcpServers": dict(mcp)}
    target = directory / CONFIG_FILE_NAME
    if target.exists():
        return False
    import tempfile  # only here: most agents never write a config (start-up imports)

    fd, tmp = tempfile.mkstemp(prefix=".mcp.json.", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2)
            fh.write("\n")
        try:
            os.link(tmp, target)  # unlike rename, never replaces a file created meanwhile
        except FileExistsError:
            return False
    finally:
        os.unlink(tmp)
    return True
