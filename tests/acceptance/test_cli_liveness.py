"""``tether workspaces start`` means running (issue #9 §5), as a user runs it: the agent of a
running workspace is killed (-9); ``start`` rebuilds it (stop + start) and says so, instead
of "already started". A real server process and the real CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest

from support.agents import agent_pid_on_disk
from support.cli_server import running_server
from tether.demo import PYTHON_TEMPLATE, LocalServer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    with running_server(tmp_path_factory.mktemp("tether-liveness")) as srv:
        yield srv


def ok(server: LocalServer, *args: str) -> subprocess.CompletedProcess[str]:
    result = server.cli(*args, timeout=90)
    assert result.returncode == 0, f"tether {' '.join(args)}\n{result.stdout}\n{result.stderr}"
    return result


def show(server: LocalServer, name: str) -> dict[str, object]:
    return dict(json.loads(ok(server, "ws", "show", name, "--json").stdout))


def test_start_after_kill_9_rebuilds_and_says_so(server: LocalServer) -> None:
    ok(server, "templates", "push", str(PYTHON_TEMPLATE))
    ok(server, "ws", "create", "live", "--template", "python")
    before = show(server, "live")
    [old_agent] = before["agents"]  # type: ignore[misc]
    pid = agent_pid_on_disk(server.data_dir, uuid.UUID(str(before["id"])))
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 15
    while show(server, "live")["agents"][0]["status"] != "disconnected":  # type: ignore[index]
        assert time.monotonic() < deadline, "the server did not notice the dead agent"
        time.sleep(0.1)
    started = time.monotonic()
    result = ok(server, "ws", "start", "live")
    assert time.monotonic() - started < 60  # the old path: 120 s, then "already started"
    assert "already started" not in result.stderr
    assert "rebuilt" in result.stderr and "dead" in result.stderr, result.stderr
    after = show(server, "live")
    [new_agent] = after["agents"]  # type: ignore[misc]
    assert after["state"] == "running"
    assert (new_agent["status"], new_agent["lifecycle_state"]) == ("connected", "ready")
    assert new_agent["id"] != old_agent["id"]
    assert ok(server, "exec", "live", "--", "echo", "hi").stdout == "hi\n"
    # and a start on a healthy workspace stays a no-op that says so
    again = ok(server, "ws", "start", "live")
    assert "already running" in again.stderr
