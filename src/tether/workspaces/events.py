"""Event channel names and payloads for the workspace system (published on the bus).

Events are wake-up hints: subscribers re-read the database for the truth."""

from __future__ import annotations

import uuid
from typing import Any

BUILDS = "builds"  # every build transition/status change: {"workspace_id", "build_id", ...}
JOBS = "jobs"  # a job was queued: wakes provisioners


def job_channel(job_id: uuid.UUID) -> str:
    """Per-job channel: log lines and the final status (for live log streaming)."""
    return f"job:{job_id}"


def agent_channel(agent_id: uuid.UUID) -> str:
    """Per-agent channel: lifecycle changes, connects and disconnects."""
    return f"agent:{agent_id}"


def build_event(
    *,
    workspace_id: uuid.UUID,
    build_id: uuid.UUID,
    transition: str,
    status: str,
) -> dict[str, Any]:
    return {
        "type": "build",
        "workspace_id": str(workspace_id),
        "build_id": str(build_id),
        "transition": transition,
        "status": status,
    }
