"""The agent's lifecycle states (docs/behaviour.md §4.1), shared by the agent and the server."""

from __future__ import annotations

from enum import StrEnum


class LifecycleState(StrEnum):
    """What the agent reports about its startup and shutdown (docs/behaviour.md §4.1)."""

    CREATED = "created"
    STARTING = "starting"
    READY = "ready"
    START_ERROR = "start_error"
    START_TIMEOUT = "start_timeout"
    SHUTTING_DOWN = "shutting_down"
    OFF = "off"
