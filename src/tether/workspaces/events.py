"""Event payloads for the workspace system (published on the bus; names in
:mod:`tether.channels`).

Events are wake-up hints: subscribers re-read the database for the truth."""

from __future__ import annotations

import uuid
from typing import Any

# the names live in tether.channels; re-exported for the workspace modules that use them
from tether.channels import BUILDS, JOBS, agent_channel, job_channel

__all__ = ["BUILDS", "JOBS", "agent_channel", "build_event", "job_channel"]


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
