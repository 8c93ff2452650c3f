"""A real server (uvicorn, SQLite, local backend, real agents) with a chat worker whose
models are scripted per chat, plus helpers to drive chats and workspaces.

The provisioner runs as a task the test can pause and resume (to hold a build in
``pending`` deterministically). Every workspace is stopped at teardown (``running_server``).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from chatd_env import PYTHON_TEMPLATE, Chatd, CountingDialer

from support.server import fast_settings, running_server
from tether.chatd.binding import AgentDialer
from tether.domain.user import Role, User


@pytest.fixture
async def chatd(tmp_path: Path, db_url: str) -> AsyncIterator[Chatd]:
    """Once per dialect: SQLite and PostgreSQL (``db_url``)."""
    settings = fast_settings(
        tmp_path,
        db_url=db_url,
        run_chatd=False,
        run_provisioner=False,
        provider_retry_base_s=0.01,
        agent_ready_retry_s=0.1,
        heartbeat_s=0.2,
        stale_after_s=5.0,
    )
    async with running_server(settings) as server:
        graph = server.graph
        db_owner = await graph.users.get_user_by_name("admin")
        owner = User(
            id=db_owner.id, name=db_owner.name, role=Role.MEMBER, created_at=db_owner.created_at
        )
        dialer = CountingDialer(AgentDialer(clients=graph.agent_clients))
        holder = Chatd(server=server, owner=owner, template_id=uuid.UUID(int=0), dialer=dialer)
        holder.template_id = await holder.push_template(PYTHON_TEMPLATE.read_text())
        holder.resume_provisioner()
        try:
            yield holder
        finally:
            await holder.stop_worker()
            holder.resume_provisioner()  # the teardown's backend stops need no provisioner
            await holder.pause_provisioner()
