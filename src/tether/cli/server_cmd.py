"""``tether server`` (api + chat workers + provisioner) and ``tether agent`` (in-workspace)."""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Annotated, Any

import typer


def server(
    data_dir: Annotated[
        Path | None, typer.Option(help="Where the SQLite file and workspaces live.")
    ] = None,
    db: Annotated[
        str | None, typer.Option(help="Database URL (e.g. postgresql+asyncpg://…).")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    no_provisioner: Annotated[
        bool, typer.Option("--no-provisioner", help="Do not run build jobs here.")
    ] = False,
    no_chatd: Annotated[bool, typer.Option("--no-chatd", help="Do not run chat workers.")] = False,
    no_api: Annotated[bool, typer.Option("--no-api", help="Do not serve the API.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log at INFO.")] = False,
    unsandboxed: Annotated[
        bool,
        typer.Option(
            "--unsandboxed",
            help="DEVELOPMENT ONLY, UNSAFE: run workspace agents without the bubblewrap "
            "sandbox, with access to the server's files and other workspaces.",
        ),
    ] = False,
) -> None:
    """Run the tether server (settings also come from TETHER_* environment variables)."""
    from pydantic import ValidationError

    from tether.errors import TetherError
    from tether.eventloop import run
    from tether.observability.logs import configure_logging
    from tether.server import serve
    from tether.settings import Settings

    overrides: dict[str, Any] = {}
    if data_dir is not None:
        overrides["data_dir"] = data_dir.expanduser().resolve()
    if db is not None:
        overrides["db_url"] = db
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    if no_provisioner:
        overrides["run_provisioner"] = False
    if no_chatd:
        overrides["run_chatd"] = False
    if no_api:
        overrides["run_api"] = False
    if unsandboxed:
        overrides["unsandboxed"] = True
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        typer.echo(f"error: invalid settings: {exc}", err=True)
        raise typer.Exit(2) from None
    configure_logging(settings.log_format, level=logging.INFO if verbose else logging.WARNING)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    _check_sandbox(settings)
    typer.echo(f"tether server on {settings.server_url()} (data in {settings.data_dir})", err=True)
    try:
        run(serve(settings, announce=functools.partial(typer.echo, err=True)), settings.event_loop)
    except KeyboardInterrupt:
        pass
    except TetherError as exc:
        typer.echo(f"error: {exc.message} [{exc.code}]", err=True)
        raise typer.Exit(1) from None
    except OSError as exc:  # e.g. the port is taken
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def _check_sandbox(settings: Any) -> None:
    """Refuse to run workspaces unsandboxed by accident: say why and how to fix it."""
    from tether.errors import BackendError
    from tether.workspaces.backends.sandbox import UNSANDBOXED_WARNING, Sandbox

    if not settings.run_provisioner:
        return  # this process starts no workspace
    if settings.unsandboxed:
        typer.echo(f"WARNING: {UNSANDBOXED_WARNING}", err=True)
        return
    try:
        Sandbox(host_uid=settings.sandbox_uid, bwrap=settings.sandbox_bwrap).check()
    except BackendError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None


def agent() -> None:
    """Run the in-workspace agent (started by the workspace backend, configured by env)."""
    from tether.agent.main import run

    run()
