"""``tether images build``: the workspace base image, built without a registry.

A Debian root filesystem is made with ``mmdebstrap`` from Debian packages (Python and common
tools, :data:`PACKAGES`), cached as a tarball under the cache dir, and imported into the
engine as ``FROM scratch`` + ``ADD rootfs.tar /`` through the Engine API's build endpoint.

Caching: the tarball and the image both carry a key (a hash of suite, variant and package
list). An image with the current key on the engine is reused as it is (warm: well under a
second); a cached tarball is imported without running mmdebstrap again (a fresh engine data
root: seconds); only a new key runs mmdebstrap (cold: about a minute, network to a Debian
mirror or a local one via ``--mirror``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import shutil
import tarfile
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp

from tether.errors import BackendError

SUITE = "bookworm"
VARIANT = "minbase"
PACKAGES = (
    "python3",
    "python3-venv",
    "ca-certificates",
    "git",
    "curl",
    "procps",
    "less",
    "make",
    "patch",
    "xz-utils",
)
DEFAULT_TAG = "tether-workspace:bookworm"
KEY_LABEL = "tether.image.key"

Say = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class ImageResult:
    tag: str
    key: str
    built: bool  # False: the engine already had this image
    rootfs_cached: bool  # True: mmdebstrap was not run


def image_key(mirror: str | None = None) -> str:
    raw = "\n".join([SUITE, VARIANT, *PACKAGES, mirror or ""])
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


async def _image_key_on_engine(docker: aiodocker.Docker, tag: str) -> str | None:
    try:
        info = await docker.images.inspect(tag)
    except aiodocker.DockerError as exc:
        if exc.status == 404:
            return None
        raise
    labels = (info.get("Config") or {}).get("Labels") or {}
    key = labels.get(KEY_LABEL)
    return key if isinstance(key, str) else None


async def _run_mmdebstrap(target: Path, mirror: str | None, say: Say) -> None:
    exe = shutil.which("mmdebstrap")
    if exe is None:
        raise BackendError("mmdebstrap is not installed (Debian package: mmdebstrap)")
    command = [
        exe,
        f"--variant={VARIANT}",
        f"--include={','.join(PACKAGES)}",
        "--aptopt=Acquire::Retries=3",
        "--dpkgopt=path-exclude=/usr/share/doc/*",
        "--dpkgopt=path-exclude=/usr/share/man/*",
        SUITE,
        str(target),
    ]
    if mirror:
        command.append(mirror)
    await say("$ " + " ".join(command))
    proc = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    assert proc.stdout is not None
    tail: list[str] = []
    async for raw in proc.stdout:
        line = raw.decode(errors="replace").rstrip()
        tail = [*tail[-19:], line]
        await say(line)
    if await proc.wait() != 0:
        await asyncio.to_thread(target.unlink, True)
        raise BackendError(f"mmdebstrap failed (exit {proc.returncode}): {' | '.join(tail)}")


def _context(rootfs: Path, key: str, out: Path) -> None:
    dockerfile = (
        "FROM scratch\n"
        "ADD rootfs.tar /\n"
        f'LABEL {KEY_LABEL}="{key}" org.opencontainers.image.title="tether workspace"\n'
        'ENV LANG=C.UTF-8\nCMD ["/bin/bash"]\n'
    ).encode()
    with tarfile.open(out, "w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
        tar.add(rootfs, arcname="rootfs.tar")


async def _import(docker: aiodocker.Docker, rootfs: Path, key: str, tag: str, say: Say) -> None:
    with tempfile.TemporaryDirectory(prefix="tether-image-") as tmp:
        context = Path(tmp) / "context.tar"
        await asyncio.to_thread(_context, rootfs, key, context)
        with context.open("rb") as fileobj:
            stream: Any = docker.images.build(
                fileobj=fileobj, encoding="identity", tag=tag, rm=True, stream=True
            )
            async for chunk in stream:
                if "stream" in chunk and chunk["stream"].strip():
                    await say(chunk["stream"].rstrip())
                if "error" in chunk:
                    raise BackendError(f"docker engine: {chunk['error']}")


async def build_image(
    *,
    docker_host: str | None,
    cache_dir: Path,
    say: Say,
    tag: str = DEFAULT_TAG,
    mirror: str | None = None,
    force: bool = False,
    timeout_s: float = 900.0,
) -> ImageResult:
    """Make sure the engine has the base image (see the module doc for the caching)."""
    key = image_key(mirror)
    await asyncio.to_thread(lambda: cache_dir.mkdir(parents=True, exist_ok=True))
    rootfs = cache_dir / f"rootfs-{SUITE}-{key}.tar"
    docker_host = docker_host or "unix:///var/run/docker.sock"
    docker = aiodocker.Docker(url=docker_host, timeout=aiohttp.ClientTimeout(total=timeout_s))
    try:
        if not force and await _image_key_on_engine(docker, tag) == key:
            await say(f"{tag} is up to date (key {key})")
            return ImageResult(tag, key, built=False, rootfs_cached=True)
        cached = not force and await asyncio.to_thread(rootfs.exists)
        if cached:
            await say(f"using the cached root filesystem {rootfs}")
        else:
            partial = rootfs.with_suffix(".partial.tar")
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
            await _run_mmdebstrap(partial, mirror, say)
            partial.replace(rootfs)
        await _import(docker, rootfs, key, tag, say)
        await say(f"built {tag} (key {key})")
        return ImageResult(tag, key, built=True, rootfs_cached=cached)
    except aiodocker.DockerError as exc:
        raise BackendError(f"docker engine: {exc.message}") from exc
    except (aiohttp.ClientError, OSError) as exc:
        raise BackendError(f"docker engine unreachable ({docker_host}): {exc}") from exc
    finally:
        await docker.close()
