"""What the agent knows about its workspace: home, working directory, lifecycle, environment.

One :class:`AgentState` is built at start and shared by the HTTP API, the process manager and
the session. The manifest from the server may change the working directory and add
environment variables; everything else reads them through this object.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Mapping
from pathlib import Path

from tether.agent.lifecycle import LifecycleState
from tether.agent.wire import EXEC_ENV
from tether.clock import Clock
from tether.errors import InvalidInput

# Never handed to commands: a command could otherwise impersonate the agent.
_PRIVATE_ENV = (
    "TETHER_AGENT_TOKEN",
    "TETHER_AGENT_DIAL_SECRET",
    "TETHER_AGENT_CREDENTIALS_FD",
    "TETHER_AGENT_LISTEN",
)


def with_login_shell(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` with ``SHELL`` set to the user's login shell when it has none.

    Every command is ``bash -c``; a bash started without ``SHELL`` looks the user up itself
    (the nscd socket, /etc/nsswitch.conf, /etc/passwd) to set it — on every command, ~0.15
    ms of its start-up (issue #12). Backends start agents with a clean environment without
    ``SHELL``, so the agent looks it up once, as bash would: the passwd entry's shell, or
    ``/bin/sh`` for a user without one. Commands see it exported (as under a login shell).
    """
    out = dict(env)
    if "SHELL" not in out:
        try:
            shell = pwd.getpwuid(os.getuid()).pw_shell
        except KeyError:
            shell = "/bin/sh"  # bash's own fallback for a uid with no passwd entry
        if shell:
            out["SHELL"] = shell
    return out


def resolve_directory(home: Path, directory: str | None) -> Path:
    """The working directory for a manifest ``directory``: None → home, relative → under home."""
    if not directory:
        return home
    path = Path(directory).expanduser()
    return path if path.is_absolute() else home / path


def resolve_path(home: Path, directory: Path, path: str) -> Path:
    """A request path: absolute, ``~``-relative, or relative to the working directory."""
    if "\x00" in path:
        raise InvalidInput("path contains a NUL byte", field="path")
    if path == "~" or path.startswith("~/"):
        candidate = home / path[2:]
    else:
        candidate = Path(path)
    if not candidate.is_absolute():
        candidate = directory / candidate
    return Path(os.path.normpath(candidate))


class AgentState:
    """Mutable facts about the running agent; owned by the agent's main task."""

    def __init__(
        self,
        *,
        home: Path,
        directory: Path,
        clock: Clock,
        base_env: Mapping[str, str],
        lifecycle: LifecycleState = LifecycleState.CREATED,
    ) -> None:
        self.home = home
        self.directory = directory
        self.clock = clock
        self.extra_env: dict[str, str] = {}
        self._base_env = {k: v for k, v in base_env.items() if k not in _PRIVATE_ENV}
        self._lifecycle = lifecycle
        self._started = clock.monotonic()

    @property
    def lifecycle(self) -> LifecycleState:
        return self._lifecycle

    def set_lifecycle(self, state: LifecycleState) -> None:
        self._lifecycle = state

    def uptime_s(self) -> float:
        return self.clock.monotonic() - self._started

    def command_env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """A command's environment: agent env, manifest env, non-interactive, ``extra``."""
        env = dict(self._base_env)
        env.update(self.extra_env)
        env.update(EXEC_ENV)
        if extra:
            env.update(extra)
        env["TETHER_CHAT_AGENT"] = "true"
        return env

    def resolve(self, path: str) -> Path:
        """A request path: absolute, ``~``-relative, or relative to the working directory."""
        return resolve_path(self.home, self.directory, path)
