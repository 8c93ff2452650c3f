"""The command a docker workspace's container runs (``backends/docker.py``): check that the
image's Python is the server's minor version and the agent program is there, start every agent
on its socket in the runtime dir as the agents' uid, forward SIGTERM to them, wait."""

from __future__ import annotations

import shlex
import sys

from tether.workspaces.backends.base import AgentLaunch

RUN = "/run/tether"  # the workspace's runtime dir inside the container (agent sockets)
AGENT_MARK = "tether_agent"  # ``python3 -X tether_agent=<id>``: finds the agent in ``top``


def container_script(
    agents: list[AgentLaunch], *, python: str, agent_args: list[str], agent_uid: int
) -> str:
    """The container's command: check, start every agent, forward SIGTERM, wait.

    The marker is spelled through ``$m`` so this script's own command line (visible in
    ``top``) never matches an agent."""
    lines = [
        f"command -v {shlex.quote(python)} >/dev/null || "
        f"{{ echo 'tether: {python} not found in the image' >&2; exit 127; }}",
        _preflight(python, agent_args),
        f"m={AGENT_MARK}",
        # the home volume is created root-owned; the agents own it (not recursive: what
        # is inside was made by them)
        f'[ "$(id -u)" != 0 ] || chown {agent_uid}:{agent_uid} "$HOME"',
        "pids=''",
        "trap 'kill -TERM $pids 2>/dev/null; wait; exit 0' TERM INT",
        'cd "$HOME"',
    ]
    quoted = shlex.quote(python)
    for agent in agents:
        aid = agent.agent_id
        env = {
            "TETHER_AGENT_ID": str(aid),
            "TETHER_AGENT_LISTEN": f"unix:{RUN}/{aid}.sock",
            "TETHER_AGENT_CREDENTIALS_FILE": f"{RUN}/{aid}.cred",
        }
        assigns = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        command = (
            f"{quoted} -c {shlex.quote(_drop_privileges(agent_uid))} "
            f'{quoted} -X "$m={aid}" {shlex.join(agent_args)}'
        )
        lines.append(f"env {assigns} {command} &")
        lines.append('pids="$pids $!"')
    lines.append("wait")
    return "\n".join(lines)


def _preflight(python: str, agent_args: list[str]) -> str:
    """A Python check run before the agents: the image's Python is the server's minor
    version (the mounted packages need it) and the agent program is there. A failure
    ends the container at once with the reason, which the build log shows."""
    want = f"{sys.version_info.major}.{sys.version_info.minor}"
    if agent_args[:1] == ["-m"]:
        target = f"importlib.util.find_spec({agent_args[1]!r}) is not None"
    else:
        target = f"os.access({agent_args[0]!r}, os.R_OK)"
    code = (
        "import importlib.util, os, sys\n"
        "have = '%d.%d' % sys.version_info[:2]\n"
        f"if have != {want!r}: sys.exit('tether: the image has Python ' + have + "
        f"', the agent needs {want} (the server\\'s)')\n"
        f"if not ({target}): sys.exit('tether: agent program not found: "
        f"{' '.join(agent_args)}')\n"
    )
    return f"{shlex.quote(python)} -c {shlex.quote(code)} || exit 3"


def _drop_privileges(uid: int) -> str:
    """Python that drops to the agents' uid/gid (when root) and execs its arguments: the
    image needs nothing but its Python for it."""
    return (
        "import os, sys\n"
        "if os.getuid() == 0:\n"
        f"    os.setgroups([]); os.setgid({uid}); os.setuid({uid})\n"
        "os.execvp(sys.argv[1], sys.argv[1:])\n"
    )
