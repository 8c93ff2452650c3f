"""A real ``tether server`` process for the acceptance tests (one per module), driven
through the real CLI. Every workspace still running at teardown is stopped, and the server
log is printed when the server does not come up."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from tether.demo import LocalServer


def start_server(
    data_dir: Path, *, env: Mapping[str, str] | None = None, health_timeout: float = 30.0
) -> LocalServer:
    """A started server; when it does not come up, its log is printed and it is stopped."""
    srv = LocalServer(data_dir, env=env)
    try:
        srv.start(health_timeout=health_timeout)
    except BaseException:
        print(srv.log_tail())
        srv.stop()
        raise
    return srv


@contextlib.contextmanager
def running_server(
    data_dir: Path, *, env: Mapping[str, str] | None = None, health_timeout: float = 30.0
) -> Iterator[LocalServer]:
    srv = start_server(data_dir, env=env, health_timeout=health_timeout)
    try:
        yield srv
    finally:
        srv.stop_workspaces()
        srv.stop()


def run_json(server: LocalServer, *args: str, env: dict[str, str] | None = None) -> Any:
    """``tether … --json`` that must succeed; its parsed output."""
    result = server.cli(*args, "--json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)
