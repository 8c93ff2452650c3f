"""The context a command runs in. It leads its own process group and never reaches a terminal
— whether the agent was started as backends start it (a new session, no terminal: commands get
a new process group in the agent's session) or from a terminal (commands get a new session,
shedding it). It has ``SHELL`` even when the agent's environment (a backend's) has none."""

from __future__ import annotations

import os
import pwd
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from support.agent_procs import RunningAgent, start_agent, stop_agent
from tether.agentconn import AgentClient

pytestmark = pytest.mark.integration

# Prints "<pid> <pgrp> <session>" of the command's shell, then tries the terminal.
PROBE = (
    'stat=$(cat /proc/$$/stat); set -- ${stat##*) }; echo "$$ $3 $4"; '
    "if exec 3<>/dev/tty; then echo TTY-REACHED; fi"
)


def _stat_fields(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


async def _start(tmp_path: Path, tty_slave: int | None) -> RunningAgent:
    # As a backend starts it: no SHELL (tether/workspaces/backends/local.py's allowlist).
    return await start_agent(tmp_path, without={"SHELL"}, tty_slave=tty_slave)


async def _probe(agent: RunningAgent) -> tuple[int, int, int, str]:
    client: AgentClient = agent.client()
    try:
        result = await client.exec(PROBE)
    finally:
        await client.aclose()
    first, _, rest = result.output.partition("\n")
    pid, pgrp, session = (int(x) for x in first.split())
    return pid, pgrp, session, rest


@pytest.fixture
async def pty_pair() -> AsyncIterator[tuple[int, int]]:
    master, slave = os.openpty()
    try:
        yield master, slave
    finally:
        os.close(master)
        os.close(slave)


async def test_agent_without_a_terminal_commands_lead_a_group_and_reach_no_tty(
    tmp_path: Path,
) -> None:
    agent = await _start(tmp_path, None)
    try:
        assert _stat_fields(agent.proc.pid)[4] == "0"  # tty_nr: the agent has no terminal
        pid, pgrp, session, rest = await _probe(agent)
        assert pgrp == pid  # its own group: a group kill reaches all it started, nothing else
        assert pgrp != os.getpgid(agent.proc.pid)
        assert session == os.getsid(agent.proc.pid)  # no new session (see processes.py)
        assert "TTY-REACHED" not in rest
    finally:
        await stop_agent(agent.proc)


async def test_agent_with_a_terminal_commands_get_a_new_session_and_reach_no_tty(
    tmp_path: Path, pty_pair: tuple[int, int]
) -> None:
    _, slave = pty_pair
    agent = await _start(tmp_path, slave)
    try:
        assert _stat_fields(agent.proc.pid)[4] != "0"  # the pty is the agent's terminal
        pid, pgrp, session, rest = await _probe(agent)
        assert pgrp == pid
        assert session == pid  # a new session: the agent's terminal is not the command's
        assert "TTY-REACHED" not in rest
    finally:
        await stop_agent(agent.proc)


async def test_commands_get_the_login_shell_when_the_agent_env_has_none(tmp_path: Path) -> None:
    """Without SHELL, bash would look the user up (nsswitch.conf, /etc/passwd) on every start:
    the agent does it once and exports the same value bash would have set."""
    agent = await _start(tmp_path, None)
    client = agent.client()
    try:
        result = await client.exec('printf "%s\\n" "$SHELL"; env | grep -c "^SHELL="')
    finally:
        await client.aclose()
        await stop_agent(agent.proc)
    shell, exported = result.output.split()
    assert shell == pwd.getpwuid(os.getuid()).pw_shell
    assert exported == "1"
