"""Kill -9 the server while it summarises a chat (issue #16 §6): after a restart the
previous history is in force, no compaction was recorded, and the chat answers. A real
``tether server`` process; its model hangs only when asked to summarise."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from tether.demo import LocalServer

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _wait_idle(client: httpx.Client, chat_id: str, ceiling_s: float = 30) -> dict[str, object]:
    deadline = time.monotonic() + ceiling_s
    while True:
        chat: dict[str, object] = client.get(f"/api/v1/chats/{chat_id}").json()
        if chat["status"] in ("waiting", "error"):
            return chat
        assert time.monotonic() < deadline, chat
        time.sleep(0.05)


def test_kill_9_during_summarisation_then_the_chat_recovers(tmp_path: Path) -> None:
    marker = tmp_path / "summarising"
    env = {
        "TETHER_MODEL": "python:summary_hang_model:model",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(FIXTURES), os.environ.get("PYTHONPATH")])),
        "HANG_MARKER": str(marker),
    }
    data_dir = tmp_path / "data"
    server = LocalServer(data_dir, env=env)
    server.start(health_timeout=30)
    try:
        token = json.loads((data_dir / "cli.json").read_text())["token"]
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
            chat = client.post("/api/v1/chats", json={"content": "the goal"}).json()
            for turn in range(3):
                if turn:
                    client.post(
                        f"/api/v1/chats/{chat['id']}/messages", json={"content": f"t{turn}"}
                    )
                assert _wait_idle(client, chat["id"])["status"] == "waiting"
            with httpx.Client(base_url=server.url, headers=headers, timeout=60) as hanging:

                def compact() -> None:
                    with contextlib.suppress(httpx.HTTPError):  # the server dies under it
                        hanging.post(f"/api/v1/chats/{chat['id']}/compact")

                pending = threading.Thread(target=compact, daemon=True)
                pending.start()
                deadline = time.monotonic() + 30
                while not marker.exists():
                    assert time.monotonic() < deadline, server.log_tail()
                    time.sleep(0.05)
                proc = server._proc
                assert proc is not None
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        server.start(health_timeout=30)
        with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
            assert client.get(f"/api/v1/chats/{chat['id']}/compactions").json() == []
            sent = client.post(f"/api/v1/chats/{chat['id']}/messages", json={"content": "again"})
            assert sent.status_code == 200, sent.text
            done = _wait_idle(client, chat["id"])
            assert (done["status"], done["last_error"]) == ("waiting", None)
            page = client.get(f"/api/v1/chats/{chat['id']}/messages").json()["messages"]
            assert page[-1]["role"] == "assistant" and not any(m["compacted"] for m in page)
    finally:
        server.stop()
