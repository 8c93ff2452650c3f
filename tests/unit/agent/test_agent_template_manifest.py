"""What the session manifest carries from the template and build: the MCP config file the
agent writes (only when absent) and the env with ``TETHER_PARAM_<NAME>``."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from tether.agent.mcpconfig import CONFIG_FILE_NAME, parse_config, write_template_config
from tether.agent.protocol import Manifest, encode_frame, parse_server_frame
from tether.api.agent_session import manifest_env

SERVERS = {"echo": {"command": "python3", "args": ["echo.py"]}}


def test_writes_the_template_config_when_absent(tmp_path: Path) -> None:
    assert write_template_config(tmp_path, {"mcpServers": SERVERS}) is True
    text = (tmp_path / CONFIG_FILE_NAME).read_text()
    assert json.loads(text) == {"mcpServers": SERVERS}
    [spec] = parse_config(text)
    assert (spec.name, spec.command, spec.args) == ("echo", "python3", ("echo.py",))
    assert [p.name for p in tmp_path.iterdir()] == [CONFIG_FILE_NAME]  # no temp file left


def test_a_bare_server_map_is_wrapped(tmp_path: Path) -> None:
    assert write_template_config(tmp_path, SERVERS) is True
    assert json.loads((tmp_path / CONFIG_FILE_NAME).read_text()) == {"mcpServers": SERVERS}


def test_keeps_an_existing_file(tmp_path: Path) -> None:
    mine = '{"mcpServers": {}}  // the user\'s own'
    (tmp_path / CONFIG_FILE_NAME).write_text(mine)
    assert write_template_config(tmp_path, {"mcpServers": SERVERS}) is False
    assert (tmp_path / CONFIG_FILE_NAME).read_text() == mine
    assert [p.name for p in tmp_path.iterdir()] == [CONFIG_FILE_NAME]


def test_manifest_env_adds_parameters_over_the_template_env() -> None:
    env = manifest_env(
        {"A": "1", "TETHER_PARAM_REGION": "template"}, {"region": "eu", "python_version": "3.12"}
    )
    assert env == {"A": "1", "TETHER_PARAM_REGION": "eu", "TETHER_PARAM_PYTHON_VERSION": "3.12"}


def test_manifest_round_trips_mcp() -> None:
    manifest = Manifest(
        agent_id=uuid.uuid4(),
        name="main",
        workspace_id=uuid.uuid4(),
        mcp={"mcpServers": SERVERS},
    )
    parsed = parse_server_frame(encode_frame(manifest))
    assert isinstance(parsed, Manifest)
    assert parsed.mcp == {"mcpServers": SERVERS}
    without = Manifest(agent_id=uuid.uuid4(), name="main", workspace_id=uuid.uuid4())
    assert parse_server_frame(encode_frame(without)).mcp is None  # type: ignore[union-attr]
