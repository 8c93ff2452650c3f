"""``tether login``, ``tether whoami``, ``tether users …`` and ``tether tokens …``."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from tether.cli.common import JsonOpt, globals_of, guarded, run
from tether.cli.config import CliConfig, save_config
from tether.cli.output import Output
from tether.cli.parse import parse_duration_ms
from tether.sdk import TetherClient

app = typer.Typer(help="Manage users (admins only).", no_args_is_help=True)
tokens_app = typer.Typer(
    help="Your API tokens (admins: anyone's, with --user).", no_args_is_help=True
)

UserOpt = Annotated[str, typer.Option("--user", help="Whose tokens (admins only; default: yours).")]


class DataChoice(StrEnum):
    keep = "keep"
    remove = "remove"


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
            rows = [(u.name, u.role, "disabled" if u.disabled else "active", u.id) for u in users]
            out.table(["NAME", "ROLE", "STATUS", "ID"], rows)
        return 0

    run(ctx, json_mode, body)


def _set_disabled(ctx: typer.Context, user: str, disabled: bool, json_mode: bool) -> None:
    async def body(client: TetherClient, out: Output) -> int:
        changed = await (client.disable_user(user) if disabled else client.enable_user(user))
        state = "disabled (its tokens no longer work)" if changed.disabled else "enabled"
        out.emit(changed, f"{changed.name} {state}")
        return 0

    run(ctx, json_mode, body)


@app.command("disable")
def disable(
    ctx: typer.Context,
    user: Annotated[str, typer.Argument(help="User name or id.")],
    json_mode: JsonOpt = False,
) -> None:
    """Disable a user: every token of theirs is refused at once."""
    _set_disabled(ctx, user, True, json_mode)


@app.command("enable")
def enable(
    ctx: typer.Context,
    user: Annotated[str, typer.Argument(help="User name or id.")],
    json_mode: JsonOpt = False,
) -> None:
    """Enable a disabled user again."""
    _set_disabled(ctx, user, False, json_mode)


@app.command("delete")
def delete(
    ctx: typer.Context,
    user: Annotated[str, typer.Argument(help="User name or id.")],
    data: Annotated[
        DataChoice,
        typer.Option(
            "--data",
            help="keep: stop their workspaces and keep workspaces and chats; "
            "remove: delete their workspaces (files too) and chats. Required.",
        ),
    ],
    json_mode: JsonOpt = False,
) -> None:
    """Delete a user (their tokens stop working at once)."""

    async def body(client: TetherClient, out: Output) -> int:
        report = await client.delete_user(user, data=data.value)
        if out.json_mode:
            out.json(report)
            return 0
        out.line(f"deleted {report.user.name} (data: {report.data})")
        for name, action in report.workspaces.items():
            out.line(f"  workspace {name}: {action}")
        if report.chats_interrupted:
            out.line(f"  chats interrupted: {report.chats_interrupted}")
        if report.chats_deleted:
            out.line(f"  chats deleted: {report.chats_deleted}")
        return 0

    run(ctx, json_mode, body)


@tokens_app.command("list")
def list_tokens(ctx: typer.Context, user: UserOpt = "me", json_mode: JsonOpt = False) -> None:
    """List API tokens (never their secrets)."""

    async def body(client: TetherClient, out: Output) -> int:
        tokens = await client.list_tokens(user)
        if out.json_mode:
            out.json(tokens)
            return 0

        def when(value: object) -> str:
            return "-" if value is None else str(value)

        rows = [
            (t.name, t.id, t.created_at, when(t.expires_at), when(t.last_used_at)) for t in tokens
        ]
        out.table(["NAME", "ID", "CREATED", "EXPIRES", "LAST USED"], rows)
        return 0

    run(ctx, json_mode, body)


@tokens_app.command("create")
def create_token(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A name to recognise the token by.")],
    expires: Annotated[
        str | None, typer.Option(help="Lifetime, e.g. 30d, 12h, 90m (default: never expires).")
    ] = None,
    user: UserOpt = "me",
    json_mode: JsonOpt = False,
) -> None:
    """Create an API token and print it (shown once)."""
    expires_in_s = parse_duration_ms(expires) / 1000 if expires else None
    if expires_in_s is not None and expires_in_s <= 0:
        raise typer.BadParameter("must be positive", param_hint="'--expires'")

    async def body(client: TetherClient, out: Output) -> int:
        created = await client.create_token(name, expires_in_s=expires_in_s, user=user)
        if out.json_mode:
            out.json(created)
        else:
            expiry = created.token.expires_at or "never"
            out.line(f"created token {created.token.name} ({created.token.id}), expires: {expiry}")
            out.line(f"token: {created.secret}")
        return 0

    run(ctx, json_mode, body)


@tokens_app.command("revoke")
def revoke_token(
    ctx: typer.Context,
    token_id: Annotated[str, typer.Argument(help="Token id (see `tether tokens list`).")],
    user: UserOpt = "me",
    json_mode: JsonOpt = False,
) -> None:
    """Revoke an API token: it is refused at once and its open streams end."""

    async def body(client: TetherClient, out: Output) -> int:
        await client.revoke_token(token_id, user=user)
        out.emit({"revoked": token_id}, f"revoked token {token_id}")
        return 0

    run(ctx, json_mode, body)
