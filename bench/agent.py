"""Agent benchmark: the workspace agent's command round trip and idle RSS, side by side with
SWE-ReX's runtime server in the same run.

What is compared, on loopback TCP, with the same client (one keep-alive ``httpx.Client``):

* **tether, unsandboxed** — ``python -m tether.agent`` as a plain child process;
* **tether, sandboxed** — the same agent inside the bubblewrap sandbox the local backend uses
  (:class:`tether.workspaces.backends.sandbox.Sandbox`; network shared so the port is
  reachable); skipped with a note when bwrap cannot run here;
* **SWE-ReX** — ``python -m swerex.server`` (``pip install swe-rex``: a bench-only
  dependency, not tether's), never sandboxed.

Each tether agent holds a live session to a stub session endpoint in this process (hello →
manifest, pings both ways), like an agent started by the backend. The command is ``true``
for both: tether's ``POST /exec`` runs ``bash -c true``, SWE-ReX's ``POST /execute`` with
``shell: true`` runs ``/bin/sh -c true`` (dash on Debian, ~0.4 ms cheaper to start than
bash); ``swerex_bash`` is the same SWE-ReX server running ``bash -c true``, the like-for-like
shell (``rtt_ratio_same_shell``). Calls alternate between the servers one by one, so
machine load hits all of them alike. Idle RSS is VmRSS of the server process (for the
sandbox: the agent inside bwrap) after start-up and a settle pause, before any command.

    .venv/bin/python -m bench.agent [--calls 300] [--no-sandbox]

The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
from websockets.asyncio.server import ServerConnection, serve

from bench.benchlib import loadavg, pct
from tether.demo import free_port
from tether.workspaces.backends.sandbox import Sandbox

SETTLE_S = 2.0  # idle: start-up done, a ping or two exchanged
START_S = 30.0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate ``proc``; killed when it has not exited 10 s later. Whatever runs below it
    is killed too: a bwrap sandbox's PID-namespace init (``--new-session``, no
    ``--die-with-parent``) outlives the outer bwrap, and the agent with it."""
    below = _descendants(proc.pid)
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    for pid in below:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


class StubSession:
    """A minimal agent session endpoint on a thread: answers hello with a manifest, pings."""

    def __init__(self) -> None:
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    async def _handler(self, ws: ServerConnection) -> None:
        await ws.recv()  # hello
        manifest = {
            "type": "manifest",
            "agent_id": str(uuid.uuid4()),
            "name": "main",
            "workspace_id": str(uuid.uuid4()),
            "ping_interval_s": 1.0,
            "silence_timeout_s": 10.0,
        }
        await ws.send(json.dumps(manifest))

        async def pinger() -> None:
            while True:
                await asyncio.sleep(1.0)
                await ws.send('{"type":"ping"}')

        task = asyncio.create_task(pinger())
        try:
            async for _ in ws:
                pass
        finally:
            task.cancel()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        async with serve(self._handler, "127.0.0.1", self.port):
            self._ready.set()
            await self._stop.wait()

    def _run(self) -> None:
        self._loop.run_until_complete(self._main())

    def __enter__(self) -> StubSession:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(5)


class Target:
    def __init__(self, name: str, url: str, path: str, body: dict[str, object], headers: dict):
        self.name = name
        self.url = url
        self.path = path
        self.body = body
        self.headers = headers
        self.pid = 0
        self.rss_idle = 0.0
        self.rtts: list[float] = []


def _wait_http(client: httpx.Client, url: str, headers: dict[str, str], path: str) -> None:
    deadline = time.monotonic() + START_S
    while True:
        with contextlib.suppress(httpx.TransportError):
            if client.get(url + path, headers=headers).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer in {START_S:g}s")
        time.sleep(0.02)


def _agent_pid_in(parent: int) -> int:
    """The Python agent process below a bwrap (or setpriv) process tree."""
    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline:
        for pid in _descendants(parent):
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"tether.agent" in argv and os.path.basename(argv[0]) not in (
                b"bwrap",
                b"setpriv",
            ):
                return pid
        time.sleep(0.02)
    raise RuntimeError("no agent process inside the sandbox")


def _descendants(pid: int) -> list[int]:
    out: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            kids = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        out += [int(k) for k in kids]
        todo += [int(k) for k in kids]
    return out


@contextlib.contextmanager
def tether_agent(
    tmp: Path, session_port: int, *, sandboxed: bool
) -> Iterator[tuple[str, str, subprocess.Popen[bytes]]]:
    secret = secrets.token_urlsafe(24)
    home = tmp / ("home-sandbox" if sandboxed else "home")
    home.mkdir(mode=0o755)

    argv = [sys.executable, "-m", "tether.agent"]
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "TETHER_AGENT_URL": f"http://127.0.0.1:{session_port}",
        "TETHER_AGENT_TOKEN": "bench",
        "TETHER_AGENT_DIAL_SECRET": secret,
    }
    if sandboxed:
        box = Sandbox()
        box.check()
        box.own(home, recursive=True)
        argv = box.command(argv, writable=[home], ro_extra=[], network=True, chdir=home)
    proc = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=home
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        address = json.loads(line)["address"]
        yield f"http://{address}", secret, proc
    finally:
        _stop(proc)


@contextlib.contextmanager
def swerex_server() -> Iterator[tuple[str, str, subprocess.Popen[bytes]]]:
    token = secrets.token_urlsafe(24)
    port = free_port()
    argv = [sys.executable, "-m", "swerex.server", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(
        [*argv, "--auth-token", token],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"http://127.0.0.1:{port}", token, proc
    finally:
        _stop(proc)


def run(calls: int, sandbox: bool) -> dict[str, object]:
    try:
        import swerex  # noqa: F401
    except ImportError:
        raise SystemExit("bench/agent.py needs SWE-ReX: .venv/bin/pip install swe-rex") from None
    if sandbox and shutil.which("bwrap") is None:
        print("bwrap not found: the sandboxed agent is left out")
        sandbox = False
    targets: list[Target] = []
    with (
        tempfile.TemporaryDirectory() as tmpdir,
        StubSession() as stub,
        contextlib.ExitStack() as stack,
        httpx.Client(timeout=30.0) as client,
    ):
        tmp = Path(tmpdir)
        os.chmod(tmp, 0o755)
        url, secret, proc = stack.enter_context(tether_agent(tmp, stub.port, sandboxed=False))
        t = Target(
            "tether", url, "/exec", {"command": "true"}, {"Authorization": f"Bearer {secret}"}
        )
        t.pid = proc.pid
        targets.append(t)
        if sandbox:
            url, secret, proc = stack.enter_context(tether_agent(tmp, stub.port, sandboxed=True))
            t = Target(
                "tether_sandboxed",
                url,
                "/exec",
                {"command": "true"},
                {"Authorization": f"Bearer {secret}"},
            )
            t.pid = _agent_pid_in(proc.pid)
            targets.append(t)
        url, token, proc = stack.enter_context(swerex_server())
        t = Target(
            "swerex",
            url,
            "/execute",
            {"command": "true", "shell": True},
            {"X-API-Key": token},
        )
        t.pid = proc.pid
        targets.append(t)
        # The same server asked to run bash, as tether does: the like-for-like shell.
        bash = Target(
            "swerex_bash",
            url,
            "/execute",
            {"command": ["bash", "-c", "true"]},
            {"X-API-Key": token},
        )
        bash.pid = proc.pid
        targets.append(bash)
        for t in targets:
            probe = "/is_alive" if t.name.startswith("swerex") else "/health"
            _wait_http(client, t.url, t.headers, probe)
        time.sleep(SETTLE_S)
        for t in targets:
            t.rss_idle = rss_mb(t.pid)
        for t in targets:  # warm up each keep-alive connection and code path
            for _ in range(10):
                r = client.post(t.url + t.path, json=t.body, headers=t.headers)
                r.raise_for_status()
                assert r.json()["exit_code"] == 0, r.text
        for _ in range(calls):  # one call each in turn: load hits every server alike
            for t in targets:
                t0 = time.perf_counter()
                r = client.post(t.url + t.path, json=t.body, headers=t.headers)
                t.rtts.append((time.perf_counter() - t0) * 1000)
                r.raise_for_status()
        for t in targets:
            print(
                f"{t.name:>17}: idle RSS {t.rss_idle:.1f} MB; exec `true` x{len(t.rtts)}: "
                f"p50 {pct(t.rtts, 50):.2f} ms, p99 {pct(t.rtts, 99):.2f} ms"
            )
    by = {t.name: t for t in targets}
    mine, theirs = by["tether"], by["swerex"]
    result: dict[str, object] = {
        "agent_rss_mb_idle": round(mine.rss_idle, 1),
        "exec_rtt_ms_p50": round(pct(mine.rtts, 50), 2),
        "exec_rtt_ms_p99": round(pct(mine.rtts, 99), 2),
        "swerex_rss_mb_idle": round(theirs.rss_idle, 1),
        "swerex_exec_rtt_ms_p50": round(pct(theirs.rtts, 50), 2),
        "swerex_exec_rtt_ms_p99": round(pct(theirs.rtts, 99), 2),
        "rtt_ratio": round(pct(mine.rtts, 50) / pct(theirs.rtts, 50), 2),
        "swerex_bash_exec_rtt_ms_p50": round(pct(by["swerex_bash"].rtts, 50), 2),
        "rtt_ratio_same_shell": round(pct(mine.rtts, 50) / pct(by["swerex_bash"].rtts, 50), 2),
        "load_avg_1m": loadavg(),
    }
    if "tether_sandboxed" in by:
        boxed = by["tether_sandboxed"]
        result["sandboxed_agent_rss_mb_idle"] = round(boxed.rss_idle, 1)
        result["sandboxed_exec_rtt_ms_p50"] = round(pct(boxed.rtts, 50), 2)
        result["sandboxed_rtt_ratio"] = round(pct(boxed.rtts, 50) / pct(theirs.rtts, 50), 2)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=300, help="timed calls per server")
    parser.add_argument("--no-sandbox", action="store_true", help="leave the sandboxed agent out")
    args = parser.parse_args()
    print(json.dumps(run(args.calls, not args.no_sandbox)))
