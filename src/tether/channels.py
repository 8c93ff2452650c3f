"""Every event-bus channel name, defined once (see :mod:`tether.db.pubsub` for the bus).

Events are wake-up hints: subscribers re-read the database for the truth. On PostgreSQL a
channel name becomes a ``LISTEN`` channel (:func:`tether.db.pubsub.pg_channel`), so names
stay short and lower-case.
"""

from __future__ import annotations

import uuid

BUILDS = "builds"
"""Every build transition or status change: ``{"workspace_id", "build_id", ...}``."""

JOBS = "jobs"
"""A provisioner job was queued: wakes the provisioners."""

CHATS = "chats"
"""A chat has work (pending, released, created): wakes the chat workers."""

IDENTITY = "identity"
"""A token was revoked or a user disabled: open streams re-check their credentials."""

CHAT_CONFIG = "chat_config"
"""An admin chat setting changed (``{"changed": key}``): workers drop their cached copy."""

AGENT_LIVENESS = "agent_liveness"
"""``{"type": "down" | "up", "agent_id": "<uuid>", "reason": "..."}``."""


def job_channel(job_id: uuid.UUID) -> str:
    """Per-job channel: log lines and the final status (for live log streaming)."""
    return f"job:{job_id}"


def agent_channel(agent_id: uuid.UUID) -> str:
    """Per-agent channel: lifecycle changes, connects and disconnects."""
    return f"agent:{agent_id}"


def chat_channel(chat_id: uuid.UUID) -> str:
    """Per-chat channel: control events (interrupt) and status changes."""
    return f"chat:{chat_id}"
