"""The CLI and server as separate processes, as a user runs them: a real ``tether server``
in a temp data dir (scaled-down timings), driven through the real CLI
(``python -m tether.cli.main``) with its own CLI config. One server per module."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.cli_server import running_server
from support.rawhttp import endless_head, exchange
from tether.demo import PYTHON_TEMPLATE, LocalServer, free_port

pytestmark = pytest.mark.integration


class Cli:
    """Runs ``tether …`` against the test server and checks its result."""

    def __init__(self, server: LocalServer) -> None:
        self.server = server

    def __call__(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        return self.server.cli(*args, env=env, timeout=timeout)

    def ok(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        result = self(*args, env=env)
        assert result.returncode == 0, (
            f"tether {' '.join(args)} → {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
        return result

    def json(self, *args: str, env: dict[str, str] | None = None) -> Any:
        return json.loads(self.ok(*args, "--json", env=env).stdout)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    with running_server(tmp_path_factory.mktemp("tether-acceptance")) as srv:
        yield srv


@pytest.fixture(scope="module")
def cli(server: LocalServer) -> Cli:
    return Cli(server)


@pytest.fixture(scope="module")
def python_template(cli: Cli) -> str:
    pushed = cli.json("templates", "push", str(PYTHON_TEMPLATE))
    assert pushed["name"] == "python"
    return "python"


@pytest.fixture(scope="module")
def workspace(cli: Cli, python_template: str) -> str:
    """A running workspace from the python template (created once per module)."""
    cli.ok("workspaces", "create", "acc", "--template", python_template)
    return "acc"


def test_create_then_exec_prints_output(cli: Cli, workspace: str) -> None:
    result = cli.ok("exec", workspace, "--", "echo", "hi")
    assert result.stdout == "hi\n"


def test_exec_propagates_exit_code(cli: Cli, workspace: str) -> None:
    result = cli("exec", workspace, "--", "sh", "-c", "echo out; exit 3")
    assert result.returncode == 3
    assert result.stdout == "out\n"


def test_exec_timeout_exits_124(cli: Cli, workspace: str) -> None:
    result = cli("exec", workspace, "--timeout", "0.5", "--", "sleep", "5")
    assert result.returncode == 124
    assert "timed out" in result.stderr


def test_show_json_has_connected_ready_agent(cli: Cli, workspace: str) -> None:
    ws = cli.json("workspaces", "show", workspace)
    assert ws["name"] == workspace and ws["state"] == "running"
    assert [(a["status"], a["lifecycle_state"]) for a in ws["agents"]] == [("connected", "ready")]
    assert ws["latest_build"]["status"] == "succeeded"


def test_json_outputs_parse(cli: Cli, workspace: str) -> None:
    assert cli.json("whoami")["user"]["role"] == "admin"
    assert "python" in [t["name"] for t in cli.json("templates", "list")]
    assert workspace in [w["name"] for w in cli.json("ws", "list")]
    assert [b["build_number"] for b in cli.json("ws", "builds", workspace)][:1] == [1]
    logs = cli.json("ws", "logs", workspace, "--build", "1")
    assert logs["build"]["build_number"] == 1 and logs["logs"]
    run = json.loads(cli.ok("exec", workspace, "--json", "--", "echo", "x").stdout)
    assert (run["exit_code"], run["output"]) == (0, "x\n")


def test_stopped_workspace_exec_fails_clearly(cli: Cli, python_template: str) -> None:
    cli.ok("ws", "create", "acc-stop", "-t", python_template, "-p", "repo_name=stopper")
    stopped = cli.json("ws", "stop", "acc-stop")
    assert stopped["state"] == "stopped"
    result = cli("exec", "acc-stop", "--", "echo", "hi")
    assert result.returncode == 1
    assert "error:" in result.stderr and "stopped" in result.stderr
    assert "Traceback" not in result.stderr
    error = json.loads(cli("exec", "acc-stop", "--json", "--", "true").stdout)["error"]
    assert error["code"] == "workspace_stopped"


def test_member_cannot_see_admins_workspace(cli: Cli, workspace: str) -> None:
    created = cli.json("users", "create", "bob", "--role", "member")
    as_bob = {"TETHER_TOKEN": created["token"]}
    assert cli.json("whoami", env=as_bob)["user"]["name"] == "bob"
    result = cli("ws", "show", workspace, env=as_bob)
    assert result.returncode == 1
    assert "not found" in result.stderr
    assert cli.json("ws", "list", env=as_bob) == []
    refused = cli("templates", "push", "nothing.yaml", env=as_bob)
    assert refused.returncode == 1


def test_bad_template_names_the_field(cli: Cli, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: broken\nagents:\n  - name: main\n    order: first\n")
    result = cli("templates", "push", str(bad))
    assert result.returncode == 1
    assert "agents[0].order" in result.stderr
    assert "Traceback" not in result.stderr


def test_usage_error_exits_2(cli: Cli) -> None:
    assert cli("ws", "create", "x").returncode == 2  # --template missing
    assert cli("ws", "create", "x", "-t", "python", "-p", "novalue").returncode == 2


def test_unreachable_server_is_a_clean_error(server: LocalServer) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = server.cli("--url", url, "--token", "x", "ws", "list")
    assert result.returncode == 1
    assert f"cannot reach the tether server at {url}" in result.stderr
    assert "Traceback" not in result.stderr


def test_login_verifies_and_saves_private_config(
    cli: Cli, server: LocalServer, tmp_path: Path
) -> None:
    token = json.loads((server.data_dir / "cli.json").read_text())["token"]
    other = {"TETHER_CLI_CONFIG": str(tmp_path / "other.json")}
    refused = cli("login", "--url", server.url, "--token", "wrong", env=other)
    assert refused.returncode == 1 and "token" in refused.stderr
    assert not (tmp_path / "other.json").exists()
    cli.ok("login", "--url", server.url, "--token", token, env=other)
    assert (tmp_path / "other.json").stat().st_mode & 0o777 == 0o600
    assert cli.json("whoami", env=other)["user"]["name"] == "admin"


def test_failing_startup_script_exits_1(cli: Cli, tmp_path: Path) -> None:
    template = tmp_path / "failing.yaml"
    template.write_text("name: failing\nstartup_script: |\n  echo about to fail\n  exit 7\n")
    cli.ok("templates", "push", str(template))
    result = cli("ws", "create", "acc-fail", "-t", "failing")
    assert result.returncode == 1
    assert "start_error" in result.stderr
    assert "about to fail" in result.stderr  # the tail of the agent's startup-script log
    cli.ok("ws", "delete", "acc-fail", "--yes")


# --- the server's event loop and HTTP parser (issue #12; src/tether/eventloop.py) ---------


def test_server_runs_on_uvloop_and_httptools(server: LocalServer) -> None:
    """A real ``tether server`` with the default settings says what it serves on: uvloop
    and the bounded httptools protocol, so every test of this module runs on them."""
    assert "event loop uvloop, HTTP parser httptools" in server.log_path.read_text()


def test_server_refuses_an_endless_head(server: LocalServer) -> None:
    """httptools in the real process: a head that never ends gets a 400 and a closed
    connection (the bound of src/tether/httpparser.py), and the server keeps serving."""
    answer = asyncio.run(endless_head(server.url))
    assert answer.closed and answer.refused, answer.data[:200]
    answer = asyncio.run(exchange(server.url, b"\x00garbage\r\n\r\n"))
    assert answer.closed and answer.statuses == [400], answer.data[:200]
    assert httpx.get(f"{server.url}/api/v1/health", timeout=10).status_code == 200


def test_server_falls_back_to_asyncio_and_h11(tmp_path: Path) -> None:
    """The operator's fallback: TETHER_EVENT_LOOP=asyncio, TETHER_HTTP_PARSER=h11."""
    env = {"TETHER_EVENT_LOOP": "asyncio", "TETHER_HTTP_PARSER": "h11"}
    with running_server(tmp_path / "fallback", env=env) as srv:
        assert "event loop asyncio, HTTP parser h11" in srv.log_path.read_text()
        answer = asyncio.run(endless_head(srv.url))
        assert answer.closed and answer.refused, answer.data[:200]
