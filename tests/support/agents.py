"""Finding and signalling a workspace's agent process: see :mod:`tether.testing.harness`
(this module keeps the old import path of the tests)."""

from tether.testing.harness import agent_pid, agent_pid_on_disk, frozen

__all__ = ["agent_pid", "agent_pid_on_disk", "frozen"]
