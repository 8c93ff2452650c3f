"""Start-up reconciliation never takes the provisioner down: an engine that does not answer
is logged and skipped (the docker tests cover removal on a real engine:
``test_docker_restart_removes_the_leftovers_of_unknown_workspaces``)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tether.clock import SystemClock
from tether.db.workspaces import WorkspaceStore
from tether.testing.fake_backend import FakeBackend
from tether.workspaces.backends.docker import DockerBackend
from tether.workspaces.reconcile import reconcile_backends


async def test_an_unreachable_engine_is_logged_not_raised(
    sqlite_engine: AsyncEngine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = WorkspaceStore(sqlite_engine, SystemClock())
    docker = DockerBackend(tmp_path, "http://127.0.0.1:9", docker_host=f"unix://{tmp_path}/no.sock")
    with caplog.at_level(logging.INFO, logger="tether.reconcile"):
        await reconcile_backends(store, {"docker": docker, "fake": FakeBackend()})
    assert "docker backend not reconciled: docker engine" in caplog.text
