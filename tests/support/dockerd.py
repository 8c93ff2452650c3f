"""A private Docker engine for the tests, and the workspace image built once per run.

``python tests/support/dockerd.py start|stop [DIR]`` (what ``make test`` runs): starts
``dockerd`` with its own data root, exec root, pid file and socket under DIR (default
``~/.cache/tether-test/dockerd``, so images survive across runs) and ``--bridge=none
--iptables=false --ip-masq=false``; waits for it to answer; builds the workspace image
(cached: a warm run only checks it); prints the ``DOCKER_HOST``. ``stop`` ends it by the PID
in its pid file (SIGTERM, then SIGKILL). An engine already answering on that socket is reused
and left running by the fixture (``start`` records whether it started one).

The tests read ``TETHER_TEST_DOCKER_HOST``; without it the ``docker_host`` fixture starts
(and stops) its own engine the same way. No engine: the docker tests are skipped, unless
``CI=true``, where that is a failure.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
IMAGE = "tether-workspace:bookworm"


class DockerUnavailable(RuntimeError):
    """The private engine could not be started; the message says why."""


def default_dir() -> Path:
    return Path.home() / ".cache" / "tether-test" / "dockerd"


@dataclass
class Engine:
    base: Path
    pid: int | None  # None: an engine we did not start

    @property
    def host(self) -> str:
        return f"unix://{self.base / 'docker.sock'}"


def _answers(sock: Path) -> bool:
    if not sock.exists():
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2.0)
            s.connect(str(sock))
            s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            return b"200 OK" in s.recv(256)
    except OSError:
        return False


def start(base: Path | None = None) -> Engine:
    base = base or default_dir()
    base.mkdir(parents=True, exist_ok=True)
    sock = base / "docker.sock"
    if _answers(sock):
        return Engine(base, None)
    exe = shutil.which("dockerd")
    if exe is None:
        raise DockerUnavailable("dockerd is not installed (Debian package: docker.io)")
    sock.unlink(missing_ok=True)
    (base / "dockerd.pid").unlink(missing_ok=True)
    with open(base / "dockerd.log", "ab") as out:
        proc = subprocess.Popen(
            [
                exe,
                "--data-root",
                str(base / "data"),
                "--exec-root",
                str(base / "exec"),
                "--pidfile",
                str(base / "dockerd.pid"),
                "--host",
                f"unix://{sock}",
                "--bridge=none",
                "--iptables=false",
                "--ip-masq=false",
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + START_TIMEOUT_S
    while not _answers(sock):
        if proc.poll() is not None or time.monotonic() > deadline:
            if proc.poll() is None:
                proc.kill()
            tail = (base / "dockerd.log").read_text(errors="replace")[-2000:]
            raise DockerUnavailable(f"dockerd did not start (see {base / 'dockerd.log'}):\n{tail}")
        time.sleep(0.1)
    (base / "started-by-tests").write_text(str(proc.pid))
    return Engine(base, proc.pid)


def stop(engine: Engine) -> None:
    if engine.pid is None:
        return
    try:
        os.kill(engine.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            os.kill(engine.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(engine.pid, signal.SIGKILL)
    (engine.base / "started-by-tests").unlink(missing_ok=True)


def ensure_image(host: str) -> None:
    """Build the workspace image if the engine lacks the current one (warm: a quick check)."""
    from tether.workspaces.images import build_image

    async def say(line: str) -> None:
        print(line, file=sys.stderr)

    cache = Path.home() / ".cache" / "tether" / "images"
    # In a thread of its own: callers may be inside an event loop (session fixtures).
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(
            asyncio.run, build_image(docker_host=host, cache_dir=cache, say=say, tag=IMAGE)
        ).result()


def main() -> None:
    command = sys.argv[1]
    base = Path(sys.argv[2]) if len(sys.argv) > 2 else default_dir()
    if command == "start":
        engine = start(base)
        started = time.monotonic()
        ensure_image(engine.host)
        print(f"workspace image ready in {time.monotonic() - started:.1f}s", file=sys.stderr)
        print(engine.host)
    elif command == "stop":
        marker = base / "started-by-tests"
        if marker.exists():
            stop(Engine(base, int(marker.read_text())))
    else:
        raise SystemExit(f"usage: {sys.argv[0]} start|stop [DIR]")


if __name__ == "__main__":
    main()
