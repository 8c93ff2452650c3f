"""How the agent receives its token and listen address from the backend."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tether.agent.config import AgentConfig
from tether.errors import InvalidInput

BASE = {"TETHER_AGENT_URL": "http://127.0.0.1:9", "HOME": "/tmp"}


def test_credentials_from_an_inherited_pipe_which_is_then_closed() -> None:
    r, w = os.pipe()
    os.write(w, b"secret-token\ndial-secret\n")
    os.close(w)
    config = AgentConfig.from_env({**BASE, "TETHER_AGENT_CREDENTIALS_FD": str(r)})
    assert config.token == "secret-token"
    assert config.dial_secret == "dial-secret"
    with pytest.raises(OSError):
        os.fstat(r)  # closed: no command the agent starts can inherit it


def test_a_bad_token_fd_is_refused() -> None:
    with pytest.raises(InvalidInput):
        AgentConfig.from_env({**BASE, "TETHER_AGENT_CREDENTIALS_FD": "not-a-number"})


@pytest.mark.parametrize("value", ["127.0.0.1:80", "unix:relative.sock", "tcp:/x"])
def test_listen_must_be_an_absolute_unix_socket(value: str) -> None:
    with pytest.raises(InvalidInput) as info:
        AgentConfig.from_env({**BASE, "TETHER_AGENT_TOKEN": "t", "TETHER_AGENT_LISTEN": value})
    assert info.value.field == "TETHER_AGENT_LISTEN"


def test_listen_and_server_socket() -> None:
    config = AgentConfig.from_env(
        {
            **BASE,
            "TETHER_AGENT_TOKEN": "t",
            "TETHER_AGENT_LISTEN": "unix:/run/a.sock",
            "TETHER_AGENT_SERVER_SOCKET": "/run/server.sock",
        }
    )
    assert config.listen == "unix:/run/a.sock"
    assert config.server_socket == "/run/server.sock"


def test_credentials_from_a_file_which_is_then_deleted(tmp_path: Path) -> None:
    path = tmp_path / "agent.cred"
    path.write_text("file-token\nfile-dial-secret")
    config = AgentConfig.from_env({**BASE, "TETHER_AGENT_CREDENTIALS_FILE": str(path)})
    assert (config.token, config.dial_secret) == ("file-token", "file-dial-secret")
    assert not path.exists()  # nothing in the workspace can read it afterwards


def test_a_credentials_symlink_is_refused(tmp_path: Path) -> None:
    """A link planted where the file should be (pointing at another file) is not followed."""
    target = tmp_path / "other"
    target.write_text("not-a-credential\n")
    (tmp_path / "agent.cred").symlink_to(target)
    with pytest.raises(InvalidInput):
        AgentConfig.from_env(
            {**BASE, "TETHER_AGENT_CREDENTIALS_FILE": str(tmp_path / "agent.cred")}
        )
    assert target.read_text() == "not-a-credential\n"


def test_a_missing_credentials_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as info:
        AgentConfig.from_env({**BASE, "TETHER_AGENT_CREDENTIALS_FILE": str(tmp_path / "none")})
    assert "credentials file" in info.value.message
