"""The CLI config file: JSON ``{"url": ..., "token": ...}`` at ``Settings().cli_config``
(default ``~/.tether/cli.json``, env ``TETHER_CLI_CONFIG``). ``tether server`` writes it for the
first admin on first start; ``tether login`` writes it. It holds a token, so it is created
with mode 0600 and never widened."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from tether.settings import Settings


@dataclass(frozen=True)
class CliConfig:
    url: str | None = None
    token: str | None = None


class ConfigError(Exception):
    """The settings environment (TETHER_*) is invalid, so the config path is unknown."""


def config_path() -> Path:
    try:
        return Settings().cli_config
    except ValidationError as exc:
        raise ConfigError(f"invalid TETHER_* environment: {exc}") from None


def load_config(path: Path | None = None) -> CliConfig:
    """The saved config; an empty one when the file does not exist or is unreadable JSON."""
    path = path or config_path()
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return CliConfig()
    if not isinstance(data, dict):
        return CliConfig()
    url, token = data.get("url"), data.get("token")
    return CliConfig(
        url=url if isinstance(url, str) else None,
        token=token if isinstance(token, str) else None,
    )


def save_config(config: CliConfig, path: Path | None = None) -> Path:
    """Write the config with mode 0600 (set at creation: the token is never world-readable)."""
    path = path or config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"url": config.url, "token": config.token}, fh)
    os.chmod(path, 0o600)
    return path
