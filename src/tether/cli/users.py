"""``tether login``, ``tether whoami``, ``tether users …``."""

from __future__ import annotations

from typing import Annotated

import typer

from tether.cli.common import JsonOpt, globals_of, guarded, run
from tether.cli.config import CliConfig, save_config
from tether.cli.output import Output
from tether.sdk import TetherClient

app = typer.Typer(help="Manage users (admins only).", no_args_is_help=True)


def login(
    ctx: typer.Context,
    url: Annotated[str | None, typer.Option(help="Server URL, e.g. http://127.0.0.1:7080.")] = None,
    token: Annotated[str | None, typer.Option(help="API token.")] = None,
    json_mode: JsonOpt = False,
) -> None:
    """Check a server URL and token, then save them in the CLI config."""
    flags = globals_of(ctx)
    url, token = url or flags.url, token or flags.token
    if not url or not token:
        raise typer.BadParameter("both --url and --token are required")
    out = Output(json_mode)

    async def main() -> int:
        async with TetherClient(url, token) as client:
            user = await client.me()
        path = save_config(CliConfig(url=url.rstrip("/"), token=token))
        if out.json_mode:
            out.json({"user": user, "url": url, "config": str(path)})
        else:
            out.line(f"logged in to {url} as {user.name} ({user.role}); saved to {path}")
        return 0

    raise typer.Exit(guarded(out, main))


def whoami(ctx: typer.Context, json_mode: JsonOpt = False) -> None:
    """Show the user of the current token."""

    async def body(client: TetherClient, out: Output) -> int:
        user = await client.me()
        if out.json_mode:
            out.json({"user": user, "url": client.url})
        else:
            out.line(f"{user.name} ({user.role}) at {client.url}")
        return 0

    run(ctx, json_mode, body)


@app.command("create")
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="User name.")],
    role: Annotated[str, typer.Option(help="admin or member.")] = "member",
    json_mode: JsonOpt = False,
) -> None:
    """Create a user and print its API token (shown once)."""
    if role not in ("admin", "member"):
        raise typer.BadParameter("must be admin or member", param_hint="'--role'")

    async def body(client: TetherClient, out: Output) -> int:
        created = await client.create_user(name, role)
        if out.json_mode:
            out.json(created)
        else:
            out.line(f"created {created.user.role} {created.user.name} ({created.user.id})")
            out.line(f"token: {created.token}")
        return 0

    run(ctx, json_mode, body)


@app.command("list")
def list_users(ctx: typer.Context, json_mode: JsonOpt = False) -> None:
    """List users."""

    async def body(client: TetherClient, out: Output) -> int:
        users = await client.list_users()
        if out.json_mode:
            out.json(users)
        else:
            out.table(["NAME", "ROLE", "ID"], [(u.name, u.role, u.id) for u in users])
        return 0

    run(ctx, json_mode, body)
