"""``tether chat-config …``: the admin chat settings (admins only).

tether chat-config show
tether chat-config templates [T …] | --all       limit the templates chats see (CW-24)
tether chat-config system-prompt TEXT | --file F | --clear
tether chat-config user-prompt TEXT | --file F | --clear
tether chat-config usage-limits [--default N|none] [--user U=N|none]… [--reset-users]
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated

import typer

from tether.cli.common import CliError, JsonOpt, run
from tether.cli.output import Output
from tether.sdk import ChatConfig, TetherClient

app = typer.Typer(help="Chat settings for every chat (admins only).", no_args_is_help=True)

PromptText = Annotated[str | None, typer.Argument(help="The prompt text.")]
PromptFile = Annotated[
    Path | None, typer.Option("--file", "-f", help="Read the prompt from this file.")
]
Clear = Annotated[bool, typer.Option("--clear", help="Remove the prompt.")]


def _show(out: Output, c: ChatConfig) -> None:
    if out.json_mode:
        out.json(c)
        return
    allow = ", ".join(str(t) for t in c.template_allowlist) or "(every template)"
    out.line(f"template allowlist: {allow}")
    out.line(f"system prompt: {c.system_prompt or '(none)'}")
    out.line(f"user prompt: {c.user_prompt or '(none)'}")


def _prompt(text: str | None, file: Path | None, clear: bool) -> str:
    given = [x for x in (text is not None, file is not None, clear) if x]
    if len(given) != 1:
        raise CliError("give exactly one of TEXT, --file or --clear")
    if clear:
        return ""
    if file is not None:
        try:
            return file.read_text()
        except OSError as exc:
            raise CliError(f"cannot read {file}: {exc}") from exc
    return text or ""


def _set_prompt(
    ctx: typer.Context,
    json_mode: bool,
    setter: Callable[[TetherClient, str], Awaitable[ChatConfig]],
    text: str | None,
    file: Path | None,
    clear: bool,
) -> None:
    """Store the prompt (exactly one of text, file or clear) through ``setter``."""

    async def body(client: TetherClient, out: Output) -> int:
        _show(out, await setter(client, _prompt(text, file, clear)))
        return 0

    run(ctx, json_mode, body)


@app.command("show")
def show(ctx: typer.Context, json_mode: JsonOpt = False) -> None:
    """Show the chat settings."""

    async def body(client: TetherClient, out: Output) -> int:
        _show(out, await client.chat_config())
        return 0

    run(ctx, json_mode, body)


@app.command("templates")
def templates(
    ctx: typer.Context,
    refs: Annotated[list[str] | None, typer.Argument(help="Template names or ids.")] = None,
    all_templates: Annotated[
        bool, typer.Option("--all", help="Clear the allowlist: chats see every template.")
    ] = False,
    json_mode: JsonOpt = False,
) -> None:
    """Limit the templates chats can list, read and create workspaces from."""
    if bool(refs) == all_templates:
        raise typer.BadParameter("give template names/ids, or --all")

    async def body(client: TetherClient, out: Output) -> int:
        ids = [(await client.get_template(ref)).id for ref in refs or []]
        _show(out, await client.set_template_allowlist(ids))
        return 0

    run(ctx, json_mode, body)


@app.command("system-prompt")
def system_prompt(
    ctx: typer.Context,
    text: PromptText = None,
    file: PromptFile = None,
    clear: Clear = False,
    json_mode: JsonOpt = False,
) -> None:
    """Set the text added to every chat's system prompt."""
    _set_prompt(ctx, json_mode, TetherClient.set_system_prompt, text, file, clear)


@app.command("user-prompt")
def user_prompt(
    ctx: typer.Context,
    text: PromptText = None,
    file: PromptFile = None,
    clear: Clear = False,
    json_mode: JsonOpt = False,
) -> None:
    """Set the instructions every chat gets as the user's (<user-instructions>)."""
    _set_prompt(ctx, json_mode, TetherClient.set_user_prompt, text, file, clear)


def _tokens(raw: str, what: str) -> int | None:
    if raw.strip().lower() in ("none", "unlimited"):
        return None
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        raise CliError(f"{what}: {raw!r} is not a number of tokens or 'none'") from None
    if value < 0:
        raise CliError(f"{what}: a limit cannot be negative")
    return value


@app.command("usage-limits")
def usage_limits(
    ctx: typer.Context,
    default: Annotated[
        str | None,
        typer.Option("--default", help="Tokens per user per month (UTC) for everyone, or none."),
    ] = None,
    user: Annotated[
        list[str] | None,
        typer.Option("--user", help="USER=TOKENS (or USER=none: no limit); repeatable."),
    ] = None,
    reset_users: Annotated[
        bool, typer.Option("--reset-users", help="Drop every per-user override.")
    ] = False,
    json_mode: JsonOpt = False,
) -> None:
    """Show or change the per-user token limits (input + output tokens per calendar month,
    UTC). Options change what they name and keep the rest."""

    async def body(client: TetherClient, out: Output) -> int:
        limits = await client.usage_limits()
        if default is not None or user or reset_users:
            overrides: dict[str | uuid.UUID, int | None] = (
                {} if reset_users else {str(k): v for k, v in limits.users.items()}
            )
            for item in user or []:
                name, sep, raw = item.partition("=")
                if not sep or not name:
                    raise CliError(f"--user {item!r}: use USER=TOKENS or USER=none")
                overrides[str((await client.get_user(name)).id)] = _tokens(raw, f"--user {name}")
            base = _tokens(default, "--default") if default is not None else limits.default_tokens
            limits = await client.set_usage_limits(base, overrides)
        if out.json_mode:
            out.json(limits)
            return 0
        base_text = "none" if limits.default_tokens is None else str(limits.default_tokens)
        out.line(f"default: {base_text} tokens per user per month (UTC)")
        for user_id, tokens in limits.users.items():
            out.line(f"  {user_id}: {'none' if tokens is None else tokens}")
        return 0

    run(ctx, json_mode, body)
