"""``bench/streamopen.py`` end to end as its documented command (small parameters), and
``bench/openloop.py``'s statement count: what a stream open costs in statements is a bench
figure: the stream guard's first token check, the chat and the catch-up read (the request's
own token check is served by the token cache)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]


def run_bench(*args: str, timeout: float = 100.0) -> tuple[dict[str, Any], str]:
    out = subprocess.run(
        [sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )
    assert out.returncode == 0, out.stderr[-3000:] + out.stdout[-2000:]
    return dict(json.loads(out.stdout.strip().splitlines()[-1])), out.stdout


def test_streamopen_counts_three_statements_per_stream_open(tmp_path: Path) -> None:
    prof = tmp_path / "open.prof"
    result, out = run_bench(
        "bench.streamopen",
        *("--streams", "20", "--events", "50", "--statements", "--profile", str(prof)),
    )
    assert result["streams"] == 20 and result["stream_open_cpu_ms"] > 0
    # the guard's token check, the chat, the catch-up read (the request's token: cached)
    assert result["stream_open_statements"] == 3.0, out
    assert out.count("FROM api_tokens") == 1, out
    assert prof.stat().st_size > 0
    assert isinstance(result["stream_event_cpu_us"], float)  # the 50 events all arrived


def test_openloop_reports_statements_and_the_idle_server() -> None:
    result, out = run_bench(
        "bench.openloop",
        *("--chats", "4", "--workspaces", "1", "--clients", "1"),
        *("--rates", "4", "--duration", "2", "--warmup", "0.5", "--statements"),
    )
    (row,) = result["open_loop"]
    assert row["errors"] == 0 and row["db_statements_per_turn"] > 0
    assert result["idle_cpu_ms_per_s"] > 0 and result["idle_statements_per_s"] >= 0
    assert "INSERT INTO chat_messages" in out  # the statements by text
