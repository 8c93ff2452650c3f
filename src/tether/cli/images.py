"""``tether images build``: the Debian-based workspace image for the docker backend, made from
Debian packages (mmdebstrap) and imported into the engine; no registry needed (docs/docker.md)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Annotated

import typer

from tether.errors import TetherError
from tether.settings import Settings
from tether.workspaces import images

app = typer.Typer(help="Workspace images for the docker backend.", no_args_is_help=True)


@app.command("build")
def build(
    docker_host: Annotated[
        str | None, typer.Option(help="Engine address (default: DOCKER_HOST / settings).")
    ] = None,
    tag: Annotated[
        str | None, typer.Option(help="Image tag (default: settings.docker_image).")
    ] = None,
    mirror: Annotated[str | None, typer.Option(help="Debian mirror for mmdebstrap.")] = None,
    cache_dir: Annotated[
        Path | None, typer.Option(help="Where the rootfs tarball is cached.")
    ] = None,
    force: Annotated[bool, typer.Option(help="Rebuild even when the image is up to date.")] = False,
) -> None:
    """Build (or reuse) the workspace base image: Debian with Python and common tools."""
    settings = Settings()

    async def say(line: str) -> None:
        typer.echo(line)

    started = time.monotonic()
    try:
        result = asyncio.run(
            images.build_image(
                docker_host=docker_host or settings.docker_host,
                cache_dir=cache_dir or settings.image_cache_dir,
                say=say,
                tag=tag or settings.docker_image,
                mirror=mirror,
                force=force,
            )
        )
    except TetherError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None
    state = "built" if result.built else "up to date"
    typer.echo(f"{result.tag}: {state} in {time.monotonic() - started:.1f}s")
