"""What every client command shares: the connection (flags > env > config file), running
the async body at the sync edge, and turning errors into ``error: …`` plus an exit code."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from tether.cli.config import ConfigError, config_path, load_config
from tether.cli.output import Output
from tether.sdk import ApiError, TetherClient

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]

Body = Callable[[TetherClient, Output], Awaitable[int | None]]


class CliError(Exception):
    """A failure the CLI reports as ``error: message`` with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = 1, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.code = code


@dataclass(frozen=True)
class Globals:
    """Global flags (``tether --url … --token …``); ``None`` → env, then the config file."""

    url: str | None = None
    token: str | None = None


def globals_of(ctx: typer.Context) -> Globals:
    root = ctx.find_root()
    obj = root.obj
    return obj if isinstance(obj, Globals) else Globals()


def connection(ctx: typer.Context) -> tuple[str, str]:
    flags = globals_of(ctx)
    saved = load_config()
    url = flags.url or saved.url
    token = flags.token or saved.token
    if not url or not token:
        raise CliError(
            f"not logged in: no server URL/token in {config_path()} — run "
            "`tether login --url URL --token TOKEN` (the first `tether server` start writes it "
            "for the admin), or pass --url/--token (env TETHER_URL/TETHER_TOKEN)"
        )
    return url, token


def run(ctx: typer.Context, json_mode: bool, body: Body) -> None:
    """Run ``body(client, output)`` and exit with its code (default 0). API errors, an
    unreachable server and :class:`CliError` become ``error: …`` on stderr, exit 1."""
    out = Output(json_mode)

    async def main() -> int | None:
        url, token = connection(ctx)
        async with TetherClient(url, token) as client:
            return await body(client, out)

    raise typer.Exit(guarded(out, main))


def guarded(out: Output, main: Callable[[], Coroutine[Any, Any, int | None]]) -> int:
    """``asyncio.run(main())`` with the CLI's error reporting; returns the exit code."""
    try:
        return asyncio.run(main()) or 0
    except ApiError as exc:
        message = exc.message
        if exc.field and exc.field not in message:
            message = f"{message} (field: {exc.field})"
        out.error(message, exc.code, exc.details)
        return 1
    except CliError as exc:
        out.error(exc.message, exc.code)
        return exc.exit_code
    except ConfigError as exc:
        out.error(str(exc), "invalid_config")
        return 1
    except KeyboardInterrupt:
        out.error("interrupted")
        return 130
