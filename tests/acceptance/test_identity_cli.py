"""Identity as a user runs it: a real ``tether server`` process and the real CLI. Files the
server creates are private, tokens and users are managed from the CLI, a revoked or disabled
token is refused at once, and no secret reaches the server log, agent logs, build logs or
CLI output."""

from __future__ import annotations

import json
import stat
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.cli_server import running_server
from tether.demo import LocalServer
from tether.serverkey import load_server_key

pytestmark = pytest.mark.integration

TEMPLATE = "name: plain\nstartup_script: echo started\n"


class Cli:
    def __init__(self, server: LocalServer) -> None:
        self.server = server
        self.outputs: list[str] = []  # everything the CLI printed, for the leak scan

    def __call__(self, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {"TETHER_TOKEN": token} if token else None
        result = self.server.cli(*args, env=env)
        self.outputs.extend([result.stdout, result.stderr])
        return result

    def ok(self, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
        result = self(*args, token=token)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result

    def json(self, *args: str, token: str | None = None) -> Any:
        return json.loads(self.ok(*args, "--json", token=token).stdout)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    with running_server(tmp_path_factory.mktemp("tether-identity") / "data") as srv:
        yield srv


@pytest.fixture(scope="module")
def cli(server: LocalServer) -> Cli:
    return Cli(server)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_tokens_create_list_revoke(cli: Cli) -> None:
    created = cli.json("tokens", "create", "laptop", "--expires", "1h")
    secret, token_id = created["secret"], created["token"]["id"]
    assert created["token"]["expires_at"] is not None
    assert cli.json("whoami", token=secret)["user"]["name"] == "admin"
    listed = cli.json("tokens", "list")
    assert {t["name"] for t in listed} >= {"cli", "laptop"}
    assert secret not in json.dumps(listed)
    cli.ok("tokens", "revoke", token_id)
    refused = cli("whoami", token=secret)
    assert refused.returncode != 0 and "unauthorized" in refused.stderr.lower()
    assert secret not in refused.stderr


def test_users_disable_enable_delete(cli: Cli) -> None:
    bob = cli.json("users", "create", "bob")
    token = bob["token"]
    assert cli.json("whoami", token=token)["user"]["name"] == "bob"
    # a member cannot list users or disable anyone
    assert cli("users", "list", token=token).returncode != 0
    assert cli("users", "disable", "admin", token=token).returncode != 0
    assert cli.json("users", "disable", "bob")["disabled"] is True
    assert cli("whoami", token=token).returncode != 0
    rows = {u["name"]: u for u in cli.json("users", "list")}
    assert rows["bob"]["disabled"] is True
    cli.ok("users", "enable", "bob")
    assert cli.json("whoami", token=token)["user"]["name"] == "bob"
    # deleting needs an explicit choice about the data
    missing = cli("users", "delete", "bob")
    assert missing.returncode == 2 and "--data" in missing.stderr
    report = cli.json("users", "delete", "bob", "--data", "keep")
    assert report["user"]["name"] == "bob" and report["data"] == "keep"
    assert cli("whoami", token=token).returncode != 0
    assert "bob" not in {u["name"] for u in cli.json("users", "list")}


def test_files_are_private_and_no_secret_leaks(cli: Cli, server: LocalServer) -> None:
    source = server.data_dir.parent / "plain.yaml"
    source.write_text(TEMPLATE)
    cli.ok("templates", "push", str(source))
    ws = cli.json("workspaces", "create", "w", "--template", "plain")
    run = json.loads(cli.ok("exec", "w", "--json", "--", "env").stdout)
    assert run["exit_code"] == 0 and "HOME=" in run["output"]
    logs = cli.json("ws", "logs", "w", "--build", "1")

    data = server.data_dir
    assert _mode(data) == 0o700
    for name in ("tether.db", "tether.db-wal", "tether.db-shm", "server.key", "cli.json"):
        assert _mode(data / name) == 0o600, name
    agent_logs = list((data / "workspaces").glob("*/agent-*.log"))
    assert agent_logs and all(_mode(p) == 0o600 for p in agent_logs)

    key = load_server_key(key_text=None, key_file=data / "server.key")
    agent_ids = [uuid.UUID(a["id"]) for a in ws["agents"]]
    assert agent_ids
    secrets = [key.dial_secret(a) for a in agent_ids]
    secrets.append(json.loads((data / "cli.json").read_text())["token"])
    texts = [
        server.log_path.read_text(errors="replace"),
        *(p.read_text(errors="replace") for p in agent_logs),
        json.dumps(logs),
        json.dumps(ws),
        *cli.outputs,
    ]
    assert "started agent" in "".join(texts)  # the scan reads real log text
    for secret in secrets:
        for text in texts:
            assert secret not in text
