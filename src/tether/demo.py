"""``python -m tether.demo`` (``make demo``): run tether end to end as a user would.

In a temporary data dir it starts ``tether server`` as a subprocess on a free port, waits for
it to be healthy, then runs the CLI step by step (each command is printed before it runs and
its output shown live): push the python template, create a workspace, run a command in it,
show it, stop it; then ``tether chat`` asks the coding agent for a hello world — with the
scripted offline demo model, so no LLM provider is contacted — streaming its tool calls and
answer live, and the workspace the chat created is stopped. It then stops the server (SIGTERM,
bounded wait) and exits 0; on any failure it says which step failed and exits 1. Server and
workspace processes are always cleaned up.

:class:`LocalServer` is also what the acceptance tests use to run the server like a user.
Sync on purpose: this is the outermost edge, driving processes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]
PYTHON_TEMPLATE = REPO_ROOT / "examples" / "templates" / "python.yaml"
CLI = (sys.executable, "-m", "tether.cli.main")
DEMO_MODEL = "python:tether.llm.scripted:demo_model"
DEMO_MODEL_LABEL = "scripted offline demo model — no LLM provider is contacted"
# Scaled-down timings so the demo and the acceptance tests take seconds, not minutes.
FAST_TIMINGS = {
    "TETHER_AGENT_PING_INTERVAL_S": "0.5",
    "TETHER_AGENT_INACTIVE_DISCONNECT_S": "3",
    "TETHER_PROVISIONER_POLL_S": "0.2",
    "TETHER_BUILD_POLL_S": "0.2",
    "TETHER_AGENT_STOP_GRACE_S": "2",
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LocalServer:
    """A ``tether server`` subprocess with its own data dir, port and CLI config."""

    def __init__(self, data_dir: Path, *, env: Mapping[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir / "server.log"
        # Our own TETHER_* only: a user's TETHER_URL/TETHER_TOKEN/TETHER_DB_URL must not leak in.
        base = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
        self.env = {
            **base,
            **FAST_TIMINGS,
            "TETHER_CLI_CONFIG": str(data_dir / "cli.json"),
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, *, health_timeout: float = 30.0) -> None:
        """Start the server and wait until ``/api/v1/health`` answers (bounded)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                [*CLI, "server", "--data-dir", str(self.data_dir), "--port", str(self.port)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + health_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"tether server exited with {self._proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/api/v1/health", timeout=1.0).status_code == 200:
                    if (self.data_dir / "cli.json").exists():
                        return
            time.sleep(0.1)
        raise RuntimeError(f"tether server not healthy after {health_timeout:g}s")

    def cli(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        capture: bool = True,
        timeout: float = 60.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``tether ARGS`` against this server (its CLI config); never raises on a
        non-zero exit code."""
        return subprocess.run(
            [*CLI, *args],
            env={**self.env, **(env or {})},
            capture_output=capture,
            text=True,
            timeout=timeout,
            check=False,
        )

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop_workspaces(self) -> None:
        """Stop every running workspace through the CLI (best effort, bounded)."""
        with contextlib.suppress(subprocess.TimeoutExpired, ValueError):
            listed = self.cli("workspaces", "list", "--all", "--json", timeout=20)
            if listed.returncode != 0:
                return
            for ws in json.loads(listed.stdout):
                if ws.get("state") in ("running", "starting"):
                    self.cli("workspaces", "stop", ws["id"], "--json", timeout=30)

    def stop(self, *, timeout: float = 10.0) -> None:
        """SIGTERM, wait (bounded), SIGKILL; then kill any workspace process left behind."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        kill_workspace_processes(self.data_dir)


def kill_workspace_processes(data_dir: Path) -> int:
    """SIGKILL the processes of every local workspace under ``data_dir`` (found by their
    recorded pids and their ``TETHER_WORKSPACE_ID``); returns how many were signalled."""
    from tether.workspaces.backends import procs

    root = data_dir / "workspaces"
    if not root.is_dir():
        return 0
    count = 0
    for wdir in root.iterdir():
        try:
            workspace_id = uuid.UUID(wdir.name)
        except ValueError:
            continue
        recorded = []
        for pidfile in (wdir / "agents").glob("*.pid"):
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                data = json.loads(pidfile.read_text())
                recorded.append(procs.Proc(int(data["pid"]), int(data["start_ticks"])))
        for proc in procs.workspace_processes(workspace_id, recorded):
            procs.send(proc, signal.SIGKILL)
            count += 1
    return count


class StepFailed(Exception):
    pass


def shell_words(args: Sequence[str]) -> str:
    """How a user would type ``args``: double quotes for words with single quotes in them."""
    words = []
    for arg in args:
        if "'" in arg and not any(c in arg for c in '"$`\\'):
            words.append(f'"{arg}"')
        else:
            words.append(shlex.quote(arg))
    return " ".join(words)


def _step(server: LocalServer, args: Sequence[str], *, timeout: float = 60.0) -> None:
    command = f"tether {shell_words(args)}"
    print(f"\n$ {command}", flush=True)
    try:
        result = server.cli(*args, capture=False, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise StepFailed(f"`{command}` took longer than {timeout:g}s") from None
    if result.returncode != 0:
        raise StepFailed(f"`{command}` exited with {result.returncode}")


def _chat_steps(server: LocalServer) -> None:
    """Ask the coding agent for a hello world (it creates its own workspace), then stop
    the workspace the chat created."""
    print(
        f"\n# chat with the coding agent — {DEMO_MODEL_LABEL}\n# (TETHER_MODEL={DEMO_MODEL})",
        flush=True,
    )
    _step(server, ["chat", "build me a hello world in python"], timeout=60)
    listed = server.cli("chat", "list", "--json", timeout=20)
    if listed.returncode != 0:
        raise StepFailed(f"`tether chat list --json` exited with {listed.returncode}")
    bound = [c["workspace_id"] for c in json.loads(listed.stdout) if c.get("workspace_id")]
    if not bound:
        raise StepFailed("the chat did not create a workspace")
    _step(server, ["workspaces", "stop", bound[0]])


def run_demo(data_dir: Path) -> int:
    server = LocalServer(data_dir, env={"TETHER_MODEL": DEMO_MODEL})
    print(f"$ tether server --data-dir {data_dir} --port {server.port}", flush=True)
    try:
        server.start()
        print(f"server healthy at {server.url}", flush=True)
        _step(server, ["templates", "push", str(PYTHON_TEMPLATE)])
        _step(server, ["workspaces", "create", "demo", "--template", "python"])
        _step(server, ["exec", "demo", "--", "python3", "-c", "print('hello from the workspace')"])
        _step(server, ["workspaces", "show", "demo"])
        _step(server, ["workspaces", "stop", "demo"])
        _chat_steps(server)
        print(f"\n# the web UI: {server.url}/ui/ — a one-time sign-in link:", flush=True)
        _step(server, ["ui"])
    except (StepFailed, RuntimeError, OSError) as exc:
        print(f"\ndemo failed: {exc}", file=sys.stderr, flush=True)
        tail = server.log_tail()
        if tail:
            print(f"--- server log (last lines) ---\n{tail}", file=sys.stderr, flush=True)
        server.stop_workspaces()
        server.stop()
        return 1
    except BaseException:
        server.stop_workspaces()
        server.stop()
        raise
    print("\nstopping the server", flush=True)
    server.stop()
    print("demo finished", flush=True)
    return 0


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="tether-demo-") as tmp:
        code = run_demo(Path(tmp))
    sys.exit(code)


if __name__ == "__main__":
    main()
