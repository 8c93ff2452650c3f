"""Secrets at rest (issue #8 §4): a 0700 data dir with 0600 files, dial secrets derived from
the server key and never stored, and no secret in logs, API responses, errors or build logs.
Real server, real agents; every test attempts the attack."""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import stat
import uuid
from pathlib import Path
from typing import Any

import pytest

from support.server import fast_settings, running_server
from tether.agentconn.dial import dial
from tether.db.agents import AgentStore
from tether.db.engine import create_engine
from tether.errors import AgentRequestFailed, Conflict
from tether.serverkey import ServerKey, load_server_key
from tether.testing.clock import FakeClock
from tether.wiring import build_graph

pytestmark = pytest.mark.integration

TEMPLATE = "name: plain\nstartup_script: echo started\n"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _dump_sqlite(path: Path) -> str:
    """Every value of every table of a (copied) SQLite database, as text."""
    out = []
    with sqlite3.connect(path) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            cols = [r[1] for r in conn.execute(f'PRAGMA table_info("{table}")')]
            out.append(f"{table}: {cols}")
            out.extend(repr(row) for row in conn.execute(f'SELECT * FROM "{table}"'))
    return "\n".join(out)


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def test_server_key_file_is_0600_stable_and_never_printed(tmp_path: Path) -> None:
    path = tmp_path / "data" / "server.key"
    key = load_server_key(key_text=None, key_file=path)
    assert _mode(path) == 0o600
    agent = uuid.uuid4()
    again = load_server_key(key_text=None, key_file=path)
    assert again.dial_secret(agent) == key.dial_secret(agent)  # a restart dials the same
    assert key.dial_secret(agent) != key.dial_secret(uuid.uuid4())  # one secret per agent
    other = load_server_key(key_text=None, key_file=tmp_path / "other.key")
    assert other.dial_secret(agent) != key.dial_secret(agent)
    assert path.read_text().strip() not in repr(key) + str(key)


async def test_data_dir_0700_and_database_wal_shm_key_cli_config_0600(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path, data_dir=tmp_path / "data")
    async with running_server(settings) as srv:
        r = await srv.client.post("/api/v1/templates", json={"source": TEMPLATE})
        assert r.status_code in (200, 201), r.text  # a write: the WAL and SHM exist now
        data = settings.data_dir
        assert _mode(data) == 0o700
        for name in ("tether.db", "tether.db-wal", "tether.db-shm", "server.key"):
            assert (data / name).exists(), name
            assert _mode(data / name) == 0o600, name
        assert _mode(settings.cli_config) == 0o600


async def test_existing_wide_modes_are_tightened_on_start(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    (data / "tether.db").touch(mode=0o644)
    os.chmod(data, 0o755)
    os.chmod(data / "tether.db", 0o644)
    settings = fast_settings(tmp_path, data_dir=data)
    graph = await build_graph(settings)
    await graph.aclose()
    assert _mode(data) == 0o700 and _mode(data / "tether.db") == 0o600


async def test_replica_with_another_server_key_is_refused(tmp_path: Path) -> None:
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    first = await build_graph(fast_settings(tmp_path / "a", db_url=db_url, run_chatd=False))
    await first.aclose()
    with pytest.raises(Conflict, match="different server key"):
        await build_graph(fast_settings(tmp_path / "b", db_url=db_url, run_chatd=False))
    # the same key through the environment setting is accepted
    key_text = (tmp_path / "a" / "data" / "server.key").read_text().strip()
    same = await build_graph(
        fast_settings(tmp_path / "c", db_url=db_url, run_chatd=False, server_key=key_text)
    )
    await same.aclose()


async def test_copied_database_cannot_dial_and_no_secret_leaks(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = fast_settings(tmp_path)
    async with running_server(settings) as srv:
        await srv.push_template(TEMPLATE)
        # Record what the backend launches: the agent token exists nowhere else in clear.
        backend = srv.graph.backends["local"]
        launches: list[Any] = []
        start = backend.start

        async def recording_start(ws: Any, agents: Any, log: Any) -> None:
            launches.extend(agents)
            await start(ws, agents, log)

        backend.start = recording_start  # type: ignore[method-assign]
        r = await srv.client.post("/api/v1/workspaces", json={"template": "plain", "name": "w"})
        assert r.status_code == 201, r.text
        responses: list[str] = [r.text]
        view = await srv.wait_ready("w")
        agent = view["agents"][0]
        agent_id = uuid.UUID(agent["id"])
        stored = await srv.graph.agents.get(agent_id)
        address = stored.dial_address
        assert address
        assert srv.graph.server_key is not None
        dial_secret = srv.graph.server_key.dial_secret(agent_id)

        # The server dials with the derived secret: the agent got exactly that one.
        r = await srv.client.post("/api/v1/workspaces/w/exec", json={"command": "env"})
        assert r.status_code == 200, r.text
        responses.append(r.text)
        runtime = await srv.graph.backends["local"].inspect(_ref(view))
        # The credentials came through a pipe: no environment holds them, the agent's
        # included, and commands in the workspace never see either secret.
        env = _environ(runtime.agent_pids[agent_id])
        assert "TETHER_AGENT_DIAL_SECRET" not in env and "TETHER_AGENT_TOKEN" not in env
        assert dial_secret not in "\0".join(env.values())
        (agent_token,) = [launch.token for launch in launches]
        assert agent_token not in "\0".join(env.values())
        assert dial_secret not in r.text and agent_token not in r.text

        for path in ("/api/v1/workspaces/w", "/api/v1/workspaces/w/builds", "/api/v1/users/me"):
            got = await srv.client.get(path)
            assert got.status_code == 200, got.text
            responses.append(got.text)
        got = await srv.client.get("/api/v1/workspaces/w/logs")
        responses.append(got.text)  # the build log
        got = await srv.client.get(f"/api/v1/workspaces/w/agents/{agent_id}/logs")
        responses.append(got.text)
        # an error about a bad token does not echo it back
        bogus = "tt_" + "x" * 43
        got = await srv.client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {bogus}"})
        assert got.status_code == 401 and bogus not in got.text

        # Steal the database: copy the file and its WAL as they are on disk.
        stolen = tmp_path / "stolen"
        stolen.mkdir()
        for suffix in ("", "-wal"):
            src = settings.data_dir / f"tether.db{suffix}"
            if src.exists():
                shutil.copy(src, stolen / f"tether.db{suffix}")
        dump = _dump_sqlite(stolen / "tether.db")
        assert "dial_secret" not in dump  # no column of that name at all
        assert str(agent_id) in dump.replace("-", "") or agent_id.hex in dump
        for secret in (dial_secret, agent_token, srv.token):
            assert secret not in dump

        # Attack 1: every string stored with the agent row as the bearer secret.
        row_values = _agent_row_values(stolen / "tether.db", agent_id)
        assert row_values
        for value in row_values:
            with pytest.raises(AgentRequestFailed) as info:
                await dial(address, value, connect_timeout=2, request_timeout=5)
            assert info.value.status == 401
        # Attack 2: run tether on the copy with a key of one's own.
        engine = create_engine(f"sqlite+aiosqlite:///{stolen / 'tether.db'}")
        try:
            own_key = ServerKey(os.urandom(32))
            forged = AgentStore(engine, FakeClock(), dial_secrets=own_key.dial_secret)
            guess = (await forged.get(agent_id)).dial_secret
            assert guess and guess != dial_secret
            with pytest.raises(AgentRequestFailed) as info:
                await dial(address, guess, connect_timeout=2, request_timeout=5)
            assert info.value.status == 401
        finally:
            await engine.dispose()

        # No secret in logs: the server's, the build log, the agent's own log file.
        agent_log = (srv.graph.backends["local"].workspace_dir(_ws_id(view))) / "agent-main.log"
        texts = [caplog.text, agent_log.read_text(errors="replace"), *responses]
        for secret in (dial_secret, agent_token, srv.token):
            for text in texts:
                assert secret not in text


def _ws_id(view: dict[str, Any]) -> uuid.UUID:
    return uuid.UUID(view["id"])


def _ref(view: dict[str, Any]) -> Any:
    from tether.workspaces.backends.base import WorkspaceRef

    return WorkspaceRef(_ws_id(view), "", view["name"], "")


def _agent_row_values(db: Path, agent_id: uuid.UUID) -> list[str]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute("SELECT * FROM workspace_agents").fetchall()
    values: list[str] = []
    for row in rows:
        if str(row["id"]).replace("-", "") != agent_id.hex:
            continue
        values.extend(str(v) for v in dict(row).values() if isinstance(v, str) and v)
    return values
