"""``tether models list|add|edit|remove``: the models a chat can name (editing: admins)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from tether.cli.common import JsonOpt, run
from tether.cli.output import Output
from tether.sdk import ModelInfo, TetherClient

app = typer.Typer(
    help="Models a chat can use (add/edit/remove: admins only).", no_args_is_help=True
)

BaseUrl = Annotated[str | None, typer.Option(help="Server URL (openai-compatible: required).")]
KeyEnv = Annotated[
    str | None,
    typer.Option(help="Server environment variable holding the key (must end in _API_KEY)."),
]
Timeout = Annotated[float | None, typer.Option(help="Request timeout, seconds.")]
Connect = Annotated[float | None, typer.Option(help="Connect timeout, seconds.")]
Retries = Annotated[int | None, typer.Option(help="Retries of a failed provider request.")]
Stream = Annotated[
    bool | None, typer.Option("--stream/--no-stream", help="Stream replies (default: stream).")
]
Window = Annotated[int | None, typer.Option(help="Context window, tokens (enables compaction).")]
Threshold = Annotated[
    float | None, typer.Option(help="Compact above this share of the window (default 0.7).")
]


def _options(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _settings(
    base_url: str | None,
    api_key_env: str | None,
    request_timeout: float | None,
    connect_timeout: float | None,
    max_retries: int | None,
    stream: bool | None,
    context_window: int | None,
    compaction_threshold: float | None,
) -> dict[str, Any]:
    """The settings ``add`` and ``edit`` share, keyed as the API names them (unset: left out)."""
    return _options(
        base_url=base_url,
        api_key_env=api_key_env,
        request_timeout_s=request_timeout,
        connect_timeout_s=connect_timeout,
        max_retries=max_retries,
        stream=stream,
        context_window=context_window,
        compaction_threshold=compaction_threshold,
    )


def _show(out: Output, m: ModelInfo) -> None:
    if out.json_mode:
        out.json(m)
    else:
        out.line(f"{m.name}: {m.provider} {m.model}" + (" (default)" if m.default else ""))


@app.command("list")
def list_models(ctx: typer.Context, json_mode: JsonOpt = False) -> None:
    """List the configured models."""

    async def body(client: TetherClient, out: Output) -> int:
        models = await client.list_models()
        if out.json_mode:
            out.json(models)
        else:
            out.table(
                ["NAME", "PROVIDER", "MODEL", "DEFAULT", "SOURCE", "STREAM", "TIMEOUT"],
                [
                    (
                        m.name,
                        m.provider,
                        m.model,
                        "yes" if m.default else "",
                        m.source,
                        "yes" if m.stream else "no",
                        f"{m.request_timeout_s:g}s" if m.request_timeout_s else "",
                    )
                    for m in models
                ],
            )
        return 0

    run(ctx, json_mode, body)


@app.command("add")
def add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Name chats use.")],
    provider: Annotated[str, typer.Option(help="openai, anthropic, openai-compatible, scripted.")],
    model: Annotated[str, typer.Option(help="The provider's model id.")],
    base_url: BaseUrl = None,
    api_key_env: KeyEnv = None,
    request_timeout: Timeout = None,
    connect_timeout: Connect = None,
    max_retries: Retries = None,
    stream: Stream = None,
    context_window: Window = None,
    compaction_threshold: Threshold = None,
    json_mode: JsonOpt = False,
) -> None:
    """Add a model (admins)."""
    options = _settings(
        base_url,
        api_key_env,
        request_timeout,
        connect_timeout,
        max_retries,
        stream,
        context_window,
        compaction_threshold,
    )

    async def body(client: TetherClient, out: Output) -> int:
        _show(out, await client.add_model(name, provider, model, **options))
        return 0

    run(ctx, json_mode, body)


@app.command("edit")
def edit(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The model to change.")],
    provider: Annotated[str | None, typer.Option(help="New provider.")] = None,
    model: Annotated[str | None, typer.Option(help="New model id.")] = None,
    base_url: BaseUrl = None,
    api_key_env: KeyEnv = None,
    request_timeout: Timeout = None,
    connect_timeout: Connect = None,
    max_retries: Retries = None,
    stream: Stream = None,
    context_window: Window = None,
    compaction_threshold: Threshold = None,
    json_mode: JsonOpt = False,
) -> None:
    """Change an admin model (admins)."""
    changes = _options(provider=provider, model=model) | _settings(
        base_url,
        api_key_env,
        request_timeout,
        connect_timeout,
        max_retries,
        stream,
        context_window,
        compaction_threshold,
    )

    async def body(client: TetherClient, out: Output) -> int:
        _show(out, await client.edit_model(name, **changes))
        return 0

    run(ctx, json_mode, body)


@app.command("remove")
def remove(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The model to remove.")],
    json_mode: JsonOpt = False,
) -> None:
    """Remove an admin model (admins)."""

    async def body(client: TetherClient, out: Output) -> int:
        await client.remove_model(name)
        if out.json_mode:
            out.json({"removed": name})
        else:
            out.line(f"removed model {name}")
        return 0

    run(ctx, json_mode, body)
