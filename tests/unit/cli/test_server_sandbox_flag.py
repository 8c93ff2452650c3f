"""``tether server`` refuses to run workspaces without a working sandbox, says why and how to
fix it, and ``--unsandboxed`` is the loud, explicit way out (development only)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tether.cli.main import build_app


def test_server_refuses_without_bubblewrap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TETHER_SANDBOX_BWRAP", str(tmp_path / "no-such-bwrap"))
    result = CliRunner().invoke(build_app(), ["server", "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 1
    assert "cannot sandbox workspaces: bwrap not found" in result.output
    assert "make sysdeps" in result.output and "--unsandboxed" in result.output


def test_unsandboxed_is_loud(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from tether.cli.server_cmd import _check_sandbox
    from tether.settings import Settings

    _check_sandbox(Settings(data_dir=tmp_path, unsandboxed=True, sandbox_bwrap="/nonexistent"))
    err = capsys.readouterr().err
    assert "WARNING: UNSANDBOXED" in err and "Development only" in err


def test_a_sandbox_uid_of_root_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TETHER_SANDBOX_UID", "0")
    monkeypatch.setattr("os.geteuid", lambda: 0)
    result = CliRunner().invoke(build_app(), ["server", "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 1
    assert "TETHER_SANDBOX_UID" in result.output
