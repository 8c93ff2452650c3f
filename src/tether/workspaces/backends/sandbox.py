"""The bubblewrap sandbox around every local workspace (docs/architecture.md §5).

Each agent runs as ``bwrap … -- [setpriv …] <agent command>`` with its own mount, PID, IPC
and UTS namespaces and a new session. The filesystem is built from nothing: system
directories read-only (``/usr`` and the ``/lib``/``/bin`` links, an allowlist of ``/etc``
files — never ``/etc/shadow`` and friends), the Python interpreter, its environment and the
``tether`` package read-only, the workspace home and its private runtime directory
read-write (both at their host paths, so paths mean the same inside and out), a private
``/tmp`` and a ``/proc`` that shows only the sandbox's own processes. The server's data dir,
database, logs, config, other workspaces and other users' files are simply not mounted.

The uid inside is never root:

* server running as root (production, CI): bwrap runs privileged and the agent drops to the
  unprivileged host uid ``host_uid`` (default 65534) with ``setpriv`` before it starts, with
  no capabilities left; home and runtime dir are chowned to that uid. A process inside is a
  plain unprivileged user on the host too, so even a file it reaches by some other path
  only grants what "other" may read.
* server running as a normal user (``make demo`` on a laptop): bwrap runs unprivileged in a
  user namespace that maps the server's own uid; it sees nothing of the server because
  nothing of the server is mounted.

``check()`` proves the sandbox can start on this machine once (about 10 ms) and otherwise
raises :class:`~tether.errors.BackendError` saying why and how to fix it. All functions here
are blocking; callers run them in a thread.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

import tether
from tether.errors import BackendError

DEFAULT_HOST_UID = 65534  # "nobody": owns no file of the server
_CHECK_TIMEOUT_S = 10.0

# Top-level system paths: bound read-only, or recreated as the same symlink (merged /usr).
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# What programs need from /etc; everything else there (shadow, gshadow, sudoers, ssh keys,
# the server's own config) stays out.
_ETC_FILES = (
    "alternatives",
    "bash.bashrc",
    "ca-certificates",
    "ca-certificates.conf",
    "debian_version",
    "gai.conf",
    "group",
    "host.conf",
    "hostname",
    "hosts",
    "inputrc",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "mime.types",
    "nsswitch.conf",
    "os-release",
    "passwd",
    "profile",
    "profile.d",
    "protocols",
    "resolv.conf",
    "services",
    "ssl",
    "timezone",
)

UNSANDBOXED_WARNING = (
    "UNSANDBOXED: workspace agents run as plain processes of the server's user, with access "
    "to its data dir, database and other workspaces. Development only, never with "
    "untrusted members."
)

FIX_HINT = (
    "install bubblewrap (`make sysdeps`, or `apt-get install bubblewrap`) and make sure it "
    "may create namespaces (as a normal user: kernel.unprivileged_userns_clone=1 / "
    "user.max_user_namespaces > 0; inside a container: run it with CAP_SYS_ADMIN or "
    "--security-opt seccomp=unconfined); for development only, start the server with "
    "--unsandboxed (TETHER_UNSANDBOXED=1)"
)


def _python_paths() -> list[Path]:
    """The interpreter, its environment and the tether package (editable installs live
    outside the environment)."""
    paths = [Path(sys.base_prefix), Path(sys.prefix), Path(tether.__file__).resolve().parent]
    exe = Path(sys.executable)
    paths.append(exe.resolve().parent)
    return paths


class Sandbox:
    """Builds bubblewrap command lines for agents; one instance per backend."""

    def __init__(
        self,
        *,
        host_uid: int | None = None,
        bwrap: str = "bwrap",
        setpriv: str = "setpriv",
        extra_ro_paths: Sequence[Path] = (),
    ) -> None:
        self.privileged = os.geteuid() == 0
        self.host_uid = (
            (DEFAULT_HOST_UID if host_uid is None else host_uid)
            if self.privileged
            else os.geteuid()
        )
        self.host_gid = self.host_uid if self.privileged else os.getegid()
        self._bwrap = bwrap
        self._setpriv = setpriv
        self._extra_ro = [Path(p) for p in extra_ro_paths]
        self._checked = False
        self._check_lock = threading.Lock()

    # -- preflight -------------------------------------------------------------------------

    def check(self) -> None:
        """Raise :class:`BackendError` (why + how to fix) unless a sandbox can start here."""
        with self._check_lock:
            if self._checked:
                return
            if self.host_uid == 0:
                raise BackendError(
                    "cannot sandbox workspaces as root: set TETHER_SANDBOX_UID to an "
                    "unprivileged uid (default 65534)"
                )
            bwrap = shutil.which(self._bwrap)
            if bwrap is None:
                raise BackendError(f"cannot sandbox workspaces: bwrap not found; {FIX_HINT}")
            if self.privileged and shutil.which(self._setpriv) is None:
                raise BackendError(
                    f"cannot sandbox workspaces: setpriv (util-linux) not found; {FIX_HINT}"
                )
            argv = self.command(["/bin/true"], writable=[], ro_extra=[], network=True)
            try:
                done = subprocess.run(
                    argv,
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    timeout=_CHECK_TIMEOUT_S,
                    cwd="/",
                    env={"PATH": "/usr/bin:/bin"},
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise BackendError(f"cannot sandbox workspaces: {exc}; {FIX_HINT}") from exc
            if done.returncode != 0:
                why = done.stderr.decode(errors="replace").strip() or f"exit {done.returncode}"
                raise BackendError(f"cannot sandbox workspaces: bwrap failed: {why}; {FIX_HINT}")
            self._checked = True

    # -- ownership -------------------------------------------------------------------------

    def own(self, path: Path, *, recursive: bool) -> None:
        """Give ``path`` (and, if asked, everything below it) to the sandbox uid."""
        if not self.privileged:
            return
        uid, gid = self.host_uid, self.host_gid
        st = path.lstat()
        if st.st_uid == uid and not recursive:
            return
        os.chown(path, uid, gid, follow_symlinks=False)
        if recursive:
            for root, dirs, files in os.walk(path):
                for name in (*dirs, *files):
                    os.chown(os.path.join(root, name), uid, gid, follow_symlinks=False)

    # -- the command line ------------------------------------------------------------------

    def command(
        self,
        argv: Sequence[str],
        *,
        writable: Sequence[Path],
        ro_extra: Sequence[Path],
        network: bool,
        chdir: Path | None = None,
        info_fd: int | None = None,
    ) -> list[str]:
        """``bwrap`` arguments running ``argv`` with ``writable`` bound read-write and
        ``ro_extra`` read-only, each at its own path."""
        args = [self._bwrap, "--unshare-pid", "--unshare-ipc", "--unshare-uts"]
        args += ["--unshare-cgroup-try", "--new-session", "--hostname", "workspace"]
        if not network:
            args.append("--unshare-net")
        if self.privileged:
            args += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
        else:
            args += ["--unshare-user", "--uid", str(self.host_uid), "--gid", str(self.host_gid)]
        made: set[str] = {"/"}  # directories that exist in the sandbox
        system: set[str] = set()  # mounted system paths: anything below is visible already
        for top in _SYSTEM_DIRS:
            path = Path(top)
            if path.is_symlink():
                args += ["--symlink", os.readlink(path), top]
            elif path.is_dir():
                args += ["--ro-bind", top, top]
                system.add(top)
            made.add(top)
        args += ["--perms", "0755", "--dir", "/etc"]
        made.add("/etc")
        for name in _ETC_FILES:
            args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
        args += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/tmp"]
        made.update(("/proc", "/dev", "/tmp"))
        ro = _outermost([*_python_paths(), *self._extra_ro, *ro_extra])
        for path in ro:
            if path.exists() and not _under(path.resolve(), system):
                args += _parents(path, made)
                args += ["--ro-bind", str(path), str(path)]
        for path in writable:
            args += _parents(path, made)
            args += ["--bind", str(path), str(path)]
        if chdir is not None:
            args += ["--chdir", str(chdir)]
        if info_fd is not None:
            args += ["--info-fd", str(info_fd)]
        args.append("--")
        if self.privileged:
            uid, gid = str(self.host_uid), str(self.host_gid)
            args += [self._setpriv, f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]
            args += ["--inh-caps=-all", "--bounding-set=-all", "--"]
        args += list(argv)
        return args


def _under(path: Path, made: Iterable[str]) -> bool:
    return any(m != "/" and (str(path) == m or str(path).startswith(m + "/")) for m in made)


def _outermost(paths: Iterable[Path]) -> list[Path]:
    """Absolute, de-duplicated, and without paths inside another listed path."""
    unique = sorted({Path(os.path.abspath(p)) for p in paths}, key=lambda p: len(p.parts))
    kept: list[Path] = []
    for path in unique:
        if not any(path == k or k in path.parents for k in kept):
            kept.append(path)
    return kept


def _parents(path: Path, made: set[str]) -> list[str]:
    """``--dir`` arguments (mode 0755) for the ancestors of ``path`` not created yet, so that
    an unprivileged uid can walk to the bind mount."""
    out: list[str] = []
    for parent in reversed(path.parents):
        key = str(parent)
        if key in made:
            continue
        made.add(key)
        out += ["--perms", "0755", "--dir", key]
    made.add(str(path))
    return out


def absolute_paths(argv: Sequence[str]) -> list[Path]:
    """Existing absolute paths among a command's arguments (a script the agent command
    names must be visible inside the sandbox)."""
    return [Path(a) for a in argv if a.startswith("/") and Path(a).exists()]
