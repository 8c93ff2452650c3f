"""A throwaway PostgreSQL cluster for tests, started from the machine's binaries.

The cluster lives in a temporary directory, listens on 127.0.0.1 at a free port (plus a
private unix socket directory), trusts every local connection, and runs with fsync off.
When we are root, initdb/pg_ctl run as user ``postgres`` (PostgreSQL refuses root).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

START_TIMEOUT_S = 30


class PgUnavailable(RuntimeError):
    """The throwaway cluster could not be started; the message carries the tool output."""


@dataclass
class PgCluster:
    base_dir: Path
    bin_dir: Path
    port: int
    run_as: str | None

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        """Stop the server immediately and delete its files."""
        _run(
            self,
            [str(self.bin_dir / "pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "immediate"],
            check=False,
        )
        shutil.rmtree(self.base_dir, ignore_errors=True)


def find_bin_dir() -> Path | None:
    """The bin directory of the highest installed PostgreSQL version, if any."""
    candidates = []
    for path in Path("/usr/lib/postgresql").glob("*/bin"):
        version = path.parent.name
        if re.fullmatch(r"\d+(\.\d+)?", version) and (path / "initdb").exists():
            candidates.append((tuple(int(p) for p in version.split(".")), path))
    return max(candidates)[1] if candidates else None


def _scratch_root() -> str | None:
    """Prefer tmpfs: ext4 slows down sharply when a test run creates and drops hundreds of
    databases (inode allocation skips recently deleted inodes), and tmpfs costs no disk I/O."""
    shm = Path("/dev/shm")
    try:
        stat = os.statvfs(shm)
    except OSError:
        return None
    if os.access(shm, os.W_OK) and stat.f_bavail * stat.f_frsize > 1 << 30:
        return str(shm)
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(
    cluster: PgCluster, argv: list[str], *, check: bool = True, timeout: float = START_TIMEOUT_S
) -> str:
    if cluster.run_as:
        argv = ["runuser", "-u", cluster.run_as, "--", *argv]
    proc = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cluster.base_dir,
        check=False,
    )
    output = f"$ {' '.join(argv)}\n{proc.stdout}{proc.stderr}"
    if check and proc.returncode != 0:
        raise PgUnavailable(output)
    return output


def start_cluster() -> PgCluster:
    """Create and start a fresh cluster; raise :class:`PgUnavailable` with the output."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise PgUnavailable("no PostgreSQL binaries under /usr/lib/postgresql/*/bin")
    run_as = "postgres" if os.geteuid() == 0 else None
    base_dir = Path(tempfile.mkdtemp(prefix="tether-pg-", dir=_scratch_root()))
    try:
        if run_as:
            shutil.chown(base_dir, user=run_as, group=None)
            os.chmod(base_dir, 0o700)
        (base_dir / "sock").mkdir()
        if run_as:
            shutil.chown(base_dir / "sock", user=run_as)
        cluster = PgCluster(base_dir=base_dir, bin_dir=bin_dir, port=0, run_as=run_as)
        _run(
            cluster,
            [
                str(bin_dir / "initdb"),
                "-D",
                str(cluster.data_dir),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        )
        last_error = ""
        for _attempt in range(3):  # the free port can be taken between probing and binding
            cluster.port = _free_port()
            options = " ".join(
                [
                    f"-p {cluster.port}",
                    f"-k {base_dir / 'sock'}",
                    "-c listen_addresses=127.0.0.1",
                    "-c fsync=off",
                    "-c synchronous_commit=off",
                    "-c full_page_writes=off",
                    "-c max_connections=200",
                ]
            )
            argv = [
                str(bin_dir / "pg_ctl"),
                "start",
                "-D",
                str(cluster.data_dir),
                "-w",
                "-t",
                str(START_TIMEOUT_S),
                "-l",
                str(base_dir / "server.log"),
                "-o",
                options,
            ]
            try:
                _run(cluster, argv, timeout=START_TIMEOUT_S + 5)
                return cluster
            except PgUnavailable as exc:
                log = base_dir / "server.log"
                last_error = f"{exc}\n--- server.log ---\n{log.read_text() if log.exists() else ''}"
        raise PgUnavailable(last_error)
    except BaseException:
        shutil.rmtree(base_dir, ignore_errors=True)
        raise


def database_dsn(admin_dsn: str, database: str) -> str:
    """``admin_dsn`` pointing at ``database`` instead, as an asyncpg SQLAlchemy URL."""
    url = make_url(admin_dsn).set(drivername="postgresql+asyncpg", database=database)
    return url.render_as_string(hide_password=False)


def _asyncpg_dsn(admin_dsn: str) -> str:
    return make_url(admin_dsn).set(drivername="postgresql").render_as_string(hide_password=False)


async def create_database(admin_dsn: str, template: str = "template0") -> str:
    """Create a database ``t_<random>`` as a copy of ``template`` (default: empty) and return
    its name. The template must have no open connections."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    conn = await asyncpg.connect(_asyncpg_dsn(admin_dsn), timeout=10)
    try:
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"', timeout=30)
    finally:
        await conn.close()
    return name


async def drop_database(admin_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(_asyncpg_dsn(admin_dsn), timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', timeout=30)
    finally:
        await conn.close()
