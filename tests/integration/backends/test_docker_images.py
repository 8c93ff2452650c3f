"""``tether images build`` against the test engine (``docker_host`` fixture, which has built
the image once for the run): a second build is a quick check, the image carries its cache
key, and a build that cannot run mmdebstrap says why."""

from __future__ import annotations

import time
from pathlib import Path

import aiodocker
import pytest
from typer.testing import CliRunner

from tether.cli.main import build_app
from tether.errors import BackendError
from tether.workspaces import images

pytestmark = [pytest.mark.integration, pytest.mark.docker]

WARM_CEILING_S = 5.0  # a rebuild from scratch takes a minute; an import alone ~10 s


def test_a_warm_build_only_checks_the_image(docker_host: str) -> None:
    started = time.monotonic()
    result = CliRunner().invoke(build_app(), ["images", "build", "--docker-host", docker_host])
    assert result.exit_code == 0, result.output
    assert "tether-workspace:bookworm: up to date" in result.output
    assert time.monotonic() - started < WARM_CEILING_S


async def test_the_image_carries_its_cache_key(docker_host: str) -> None:
    async with aiodocker.Docker(url=docker_host) as docker:
        info = await docker.images.inspect(images.DEFAULT_TAG)
    assert info["Config"]["Labels"][images.KEY_LABEL] == images.image_key()


async def test_without_mmdebstrap_the_build_says_so(
    docker_host: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing to run: mmdebstrap is "missing"
    lines: list[str] = []

    async def say(line: str) -> None:
        lines.append(line)

    with pytest.raises(BackendError) as info:
        await images.build_image(
            docker_host=docker_host, cache_dir=tmp_path, say=say, tag="tether-test-absent:1"
        )
    assert "mmdebstrap is not installed" in info.value.message
