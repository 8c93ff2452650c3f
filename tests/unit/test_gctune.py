"""The server's garbage-collector tuning (``src/tether/gctune.py``, issue #12): start-up
objects frozen out of the full collections and the young threshold raised — in a real
``tether server`` process after start-up, and not at all when switched off."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tether.gctune import tune_collector
from tether.settings import Settings
from tether.testing.harness import free_port

SERVER_START_DEADLINE_S = 60.0  # a start takes a few seconds; a hang fails the test

# Runs `tether server` through its CLI entry in this process, with a thread that waits until
# the server accepts connections, then prints the collector's state and stops the server.
PROBE = """
import gc, json, os, signal, socket, sys, threading, time
from tether.cli.main import build_app

port = int(sys.argv[1])

def probe():
    deadline = time.monotonic() + float(sys.argv[3])
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            time.sleep(0.05)
            continue
        names = [type(cb).__name__ for cb in gc.callbacks]
        freezers = [name for name in names if name == "SurvivorFreezer"]
        state = {
            "frozen": gc.get_freeze_count(),
            "threshold": list(gc.get_threshold()),
            "freezers": freezers,
        }
        print("GCSTATE " + json.dumps(state), flush=True)
        os.kill(os.getpid(), signal.SIGINT)
        return
    os.kill(os.getpid(), signal.SIGINT)

threading.Thread(target=probe, daemon=True).start()
build_app()(
    ["server", "--data-dir", sys.argv[2], "--port", str(port), "--no-provisioner"],
    standalone_mode=False,
)
"""


def _server_gc_state(tmp_path: Path, **env: str) -> dict[str, object]:
    port = free_port()
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(port), str(tmp_path / "data"), "30"],
        env={**os.environ, "TETHER_CLI_CONFIG": str(tmp_path / "cli.json"), **env},
        capture_output=True,
        text=True,
        timeout=SERVER_START_DEADLINE_S,
    )
    lines = [ln for ln in result.stdout.splitlines() if ln.startswith("GCSTATE ")]
    assert lines, f"server never accepted connections: {result.stdout}\n{result.stderr}"
    state: dict[str, object] = json.loads(lines[0].removeprefix("GCSTATE "))
    return state


def test_a_started_server_has_frozen_its_startup_objects(tmp_path: Path) -> None:
    state = _server_gc_state(tmp_path)
    assert isinstance(state["frozen"], int) and state["frozen"] > 10_000
    settings = Settings()
    assert state["threshold"] == [settings.gc_gen0_threshold, settings.gc_gen1_threshold, 10]
    assert state["freezers"] == ["SurvivorFreezer"]  # survivors of full collections frozen


def test_a_server_with_freeze_survivors_off_installs_no_freezer(tmp_path: Path) -> None:
    state = _server_gc_state(tmp_path, TETHER_GC_FREEZE_SURVIVORS="false")
    assert isinstance(state["frozen"], int) and state["frozen"] > 10_000
    assert state["freezers"] == []


def test_a_server_with_gc_tune_off_keeps_the_interpreters_collector(tmp_path: Path) -> None:
    state = _server_gc_state(tmp_path, TETHER_GC_TUNE="false")
    assert state["frozen"] == 0
    assert state["threshold"] == [700, 10, 10]
    assert state["freezers"] == []


@pytest.mark.usefixtures("restored_gc")
def test_tune_collector_freezes_and_sets_the_threshold(tmp_path: Path) -> None:
    freezer = tune_collector(
        Settings(data_dir=tmp_path, gc_gen0_threshold=12_345, gc_gen1_threshold=4)
    )
    if freezer is not None:
        freezer.uninstall()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (12_345, 4, 10)


@pytest.mark.usefixtures("restored_gc")
def test_tune_collector_off_changes_nothing(tmp_path: Path) -> None:
    gc.unfreeze()
    before = gc.get_threshold()
    tune_collector(Settings(data_dir=tmp_path, gc_tune=False, gc_gen0_threshold=12_345))
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == before


def test_the_threshold_is_bounded(tmp_path: Path) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        Settings(data_dir=tmp_path, gc_gen0_threshold=10)
    with pytest.raises(ValidationError):
        Settings(data_dir=tmp_path, gc_gen1_threshold=0)
