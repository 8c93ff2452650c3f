"""Typed wiring (issue #13): routes get the services they use through
:mod:`tether.api.deps`, never the graph from ``app.state``; a test can replace any service
with ``app.dependency_overrides``."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import httpx

import tether
from tether.api import deps
from tether.api.app import create_app
from tether.settings import Settings
from tether.wiring import graph_context

SRC = Path(tether.__file__).resolve().parent
# the app factory puts the graph on app.state; deps.py is the one reader
ALLOWED = {SRC / "api" / "app.py", SRC / "api" / "deps.py"}


def _reads_app_state(path: Path) -> list[int]:
    lines = []
    for node in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(node, ast.Attribute)
            and node.attr == "state"
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "app"
        ):
            lines.append(node.lineno)
    return lines


def test_no_route_reads_the_graph_from_app_state() -> None:
    offenders = {
        str(path.relative_to(SRC)): found
        for package in ("api", "observability")
        for path in sorted((SRC / package).rglob("*.py"))
        if path not in ALLOWED and (found := _reads_app_state(path))
    }
    assert offenders == {}


class _Models:
    """A stand-in registry: what a test plugs in instead of the real one."""

    async def list(self) -> list[Any]:
        return []


async def test_a_service_can_be_overridden(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        cli_config=tmp_path / "cli.json",
        run_chatd=False,
        run_provisioner=False,
    )
    async with graph_context(settings) as graph:
        admin = await graph.users.create_user("root", "admin")
        token, _ = await graph.users.create_token(admin.id, "t")
        app = create_app(graph)
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://t", headers=headers
        ) as client:
            real = await client.get("/api/v1/models")
            assert real.status_code == 200 and real.json() != []  # the operator's default
            app.dependency_overrides[deps.models] = _Models
            assert (await client.get("/api/v1/models")).json() == []
            # the override does not bypass authentication
            anonymous = await client.get("/api/v1/models", headers={"Authorization": ""})
            assert anonymous.status_code == 401
