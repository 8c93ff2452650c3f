"""The bubblewrap command line: what is bound, how, and which uid runs inside."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tether.workspaces.backends.sandbox import Sandbox


def _pairs(args: list[str], flag: str) -> list[tuple[str, str]]:
    return [(args[i + 1], args[i + 2]) for i, a in enumerate(args) if a == flag]


def _command(sandbox: Sandbox, tmp_path: Path, *, network: bool = True) -> list[str]:
    home, run = tmp_path / "ws" / "home", tmp_path / "run"
    return sandbox.command(
        ["/bin/true"], writable=[home, run], ro_extra=[], network=network, chdir=home
    )


def test_namespaces_binds_and_nothing_else_of_the_host(tmp_path: Path) -> None:
    args = _command(Sandbox(), tmp_path)
    for flag in ("--unshare-pid", "--unshare-ipc", "--unshare-uts", "--new-session"):
        assert flag in args
    assert "--unshare-net" not in args  # network stays usable by default
    assert "--die-with-parent" not in args  # agents survive a server restart
    rw = _pairs(args, "--bind")
    assert rw == [(str(tmp_path / "ws" / "home"),) * 2, (str(tmp_path / "run"),) * 2]
    ro = {src for src, _ in _pairs(args, "--ro-bind") + _pairs(args, "--ro-bind-try")}
    assert "/" not in ro and "/etc" not in ro and "/home" not in ro and "/root" not in ro
    assert not any(p.startswith(("/etc/shadow", "/etc/gshadow", "/etc/sudoers")) for p in ro)
    assert sys.base_prefix in ro or any(sys.base_prefix.startswith(p + "/") for p in ro)
    assert ("1777", "--tmpfs") == (args[args.index("/tmp") - 2], args[args.index("/tmp") - 1])


def test_no_network_template(tmp_path: Path) -> None:
    assert "--unshare-net" in _command(Sandbox(), tmp_path, network=False)


def test_root_server_drops_to_an_unprivileged_host_uid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 0)
    args = _command(Sandbox(host_uid=12345), tmp_path)
    tail = args[args.index("--") + 1 :]
    assert tail[0] == "setpriv" and "--reuid=12345" in tail and "--regid=12345" in tail
    assert "--bounding-set=-all" in tail and "--inh-caps=-all" in tail
    assert "--unshare-user" not in args


def test_normal_user_server_maps_its_own_uid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    monkeypatch.setattr("os.getegid", lambda: 1000)
    args = _command(Sandbox(host_uid=12345), tmp_path)
    assert "--unshare-user" in args
    assert args[args.index("--uid") + 1] == "1000"
    assert "setpriv" not in args
