"""The benchmarks that time turns run their HTTP client in processes of their own
(``bench/client.py``) and read each turn's end off the chat's SSE stream. Smoke runs with
small parameters: each bench runs end to end as its documented command, its last line is its
JSON, and every turn the client reports is matched to the turn the server ran (the model and
tool time measured in the server process land on it: ``bench.benchlib.ChatTimers.take``
refuses times that belong to no turn of the chat)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tether.settings import Settings

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]


def run_bench(*args: str, timeout: float = 100.0) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert out.returncode == 0, out.stderr[-3000:] + out.stdout[-2000:]
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def test_turns_client_process_times_each_turn_off_the_stream() -> None:
    result = run_bench("bench.turns", "--chats", "2", "--turns", "3")
    assert result["turns"] == 6
    # every turn runs one `execute true` in the workspace: its time reached the turn the
    # client timed (a client that read an earlier turn's status would match no turn)
    assert 0 < result["tool_ms_p50"] < result["wall_ms_p50"]
    assert result["cpu_ms_per_turn"] > 0
    assert result["client_cpu_ms_per_turn"] > 0  # measured in the client's own process
    for key in ("db_statements_per_turn", "turns_per_s"):
        assert result[key] > 0
    assert result["sqlite_thread_hops_per_turn"] == 0  # SQLite runs on the event loop


def test_openloop_with_two_client_processes() -> None:
    result = run_bench(
        "bench.openloop",
        *("--chats", "6", "--workspaces", "2", "--clients", "2"),
        *("--rates", "4", "--duration", "2", "--warmup", "0.5"),
    )
    assert result["clients"] == 2
    (row,) = result["open_loop"]
    assert row["errors"] == 0
    assert row["turns"] > 0
    assert row["cpu_ms_per_turn"] > 0 and row["client_cpu_ms_per_turn"] > 0
    assert row["send_lateness_ms_p99"] >= 0


# the benches' in-process server runs with the collector tuning of `tether server`
# (src/tether/gctune.py, through the same function); --gc reports the turn phase's collections
def test_turns_gc_flag_reports_collections_of_a_tuned_server() -> None:
    result = run_bench("bench.turns", "--chats", "1", "--turns", "2", "--gc")
    assert result["turns"] == 2
    assert result["gc_freeze_count"] > 10_000  # start-up objects frozen in the bench's server
    settings = Settings()
    assert result["gc_threshold"] == [settings.gc_gen0_threshold, settings.gc_gen1_threshold, 10]
    assert len(result["gc_collections_per_turn"]) == 3
    assert result["gc_ms_per_turn"] >= 0 and result["gc_max_pause_ms"] >= 0
