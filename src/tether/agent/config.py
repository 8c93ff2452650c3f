"""The agent's configuration, read from its environment (the only place the agent reads it).

TETHER_AGENT_URL                 server URL (session mode)
TETHER_AGENT_TOKEN               agent token for the session (never passed to commands)
TETHER_AGENT_DIAL_SECRET         the secret the server dials with (derived by the server from
                                 its key; never passed to commands, never printed). Unset: a
                                 random one (standalone use only: nobody else knows it)
TETHER_AGENT_CREDENTIALS_FD      instead of both: an inherited pipe carrying the token, a
                                 newline and the dial secret (read, then closed: no command
                                 inherits it and no environment holds it)
TETHER_AGENT_CREDENTIALS_FILE    the same as a file (container backends mount it): read, then
                                 deleted, so nothing in the workspace can read it later
TETHER_AGENT_SERVER_SOCKET       reach the server through this unix socket (a relay; for
                                 sandboxes without network) instead of TETHER_AGENT_URL's host
TETHER_AGENT_LISTEN              ``unix:<path>``: serve the API on this unix socket (the
                                 backend decides it); default a free 127.0.0.1 port
TETHER_AGENT_NO_SESSION=1        standalone: no session, lifecycle ``ready`` at once
TETHER_AGENT_DIRECTORY           working directory before a manifest (relative to HOME)
TETHER_AGENT_RECONNECT_MAX_S     reconnect backoff cap (default 2)
TETHER_AGENT_AUTH_RETRY_S        retry gap after the server rejected the token (default 5)
TETHER_AGENT_MCP_CONNECT_TIMEOUT_S   per MCP server connect bound (default 30)
TETHER_AGENT_KILL_GRACE_S        TERM → KILL grace at shutdown (default 2)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tether.errors import InvalidInput


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise InvalidInput(f"{name} must be a number, got {raw!r}", field=name) from None
    if value <= 0:
        raise InvalidInput(f"{name} must be positive", field=name)
    return value


@dataclass(frozen=True)
class AgentConfig:
    server_url: str | None
    token: str | None
    no_session: bool
    home: Path
    directory: str | None
    reconnect_max_s: float = 2.0
    auth_retry_s: float = 5.0
    mcp_connect_timeout_s: float = 30.0
    kill_grace_s: float = 2.0
    dial_secret: str | None = field(default=None, repr=False)
    listen: str | None = None
    server_socket: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AgentConfig:
        no_session = env.get("TETHER_AGENT_NO_SESSION", "").lower() in ("1", "true", "yes")
        url = env.get("TETHER_AGENT_URL") or None
        token = env.get("TETHER_AGENT_TOKEN") or None
        dial_secret = env.get("TETHER_AGENT_DIAL_SECRET") or None
        if env.get("TETHER_AGENT_CREDENTIALS_FD"):
            token, dial_secret = read_credentials_fd(env["TETHER_AGENT_CREDENTIALS_FD"])
        elif env.get("TETHER_AGENT_CREDENTIALS_FILE"):
            token, dial_secret = read_credentials_file(env["TETHER_AGENT_CREDENTIALS_FILE"])
        listen = env.get("TETHER_AGENT_LISTEN") or None
        if listen is not None and not listen.startswith("unix:/"):
            raise InvalidInput(
                "TETHER_AGENT_LISTEN must be unix:<absolute path>", field="TETHER_AGENT_LISTEN"
            )
        if not no_session and (url is None or token is None):
            raise InvalidInput(
                "TETHER_AGENT_URL and TETHER_AGENT_TOKEN are required "
                "(or set TETHER_AGENT_NO_SESSION=1)"
            )
        return cls(
            server_url=url,
            token=token,
            no_session=no_session,
            home=Path(env.get("HOME") or Path.home()),
            directory=env.get("TETHER_AGENT_DIRECTORY") or None,
            reconnect_max_s=_float(env, "TETHER_AGENT_RECONNECT_MAX_S", 2.0),
            auth_retry_s=_float(env, "TETHER_AGENT_AUTH_RETRY_S", 5.0),
            mcp_connect_timeout_s=_float(env, "TETHER_AGENT_MCP_CONNECT_TIMEOUT_S", 30.0),
            kill_grace_s=_float(env, "TETHER_AGENT_KILL_GRACE_S", 2.0),
            dial_secret=dial_secret,
            listen=listen,
            server_socket=env.get("TETHER_AGENT_SERVER_SOCKET") or None,
        )


def read_credentials_file(path: str) -> tuple[str | None, str | None]:
    """Read ``token\ndial_secret`` from a file and delete it (the container backends' variant
    of the pipe: no environment holds the credentials and the file is gone once read)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise InvalidInput(f"cannot read the agent credentials file {path}: {exc}") from None
    try:
        os.unlink(path)
    except OSError as exc:
        os.close(fd)
        raise InvalidInput(f"cannot delete the agent credentials file {path}: {exc}") from None
    return read_credentials_fd(str(fd))


def read_credentials_fd(raw: str) -> tuple[str | None, str | None]:
    """Read ``token\\ndial_secret`` from an inherited pipe and close it, so no command
    inherits it."""
    try:
        fd = int(raw)
    except ValueError:
        raise InvalidInput("TETHER_AGENT_CREDENTIALS_FD must be a file descriptor number") from None
    try:
        chunks = []
        while chunk := os.read(fd, 4096):
            chunks.append(chunk)
    except OSError as exc:
        raise InvalidInput(f"cannot read the agent credentials from fd {fd}: {exc}") from None
    finally:
        try:
            os.close(fd)
        except OSError:
            pass
    token, _, secret = b"".join(chunks).decode().strip().partition("\n")
    return token.strip() or None, secret.strip() or None
