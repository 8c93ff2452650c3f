"""The one-shot side of ``tether chat``: commands that do one request and print its
answer — ``list``, ``show``, ``label``, ``compact`` / ``clear`` (also sent as ``/compact`` and
``/clear``), ``interrupt``, ``retitle`` and ``threshold``."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import typer

from tether.cli.chat_stream import new_renderer
from tether.cli.chatref import ChatRef, resolve_chat
from tether.cli.common import JsonOpt, run
from tether.cli.output import Output
from tether.sdk import TetherClient
from tether.sdk.chats import Chat, ChatsAPI

LabelOpt = Annotated[
    list[str] | None, typer.Option("--label", "-l", help="A label KEY=VALUE (repeatable).")
]


def parse_labels(raw: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in raw or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{item!r}: use KEY=VALUE", param_hint="--label")
        out[key] = value
    return out


def label_chat(
    ctx: typer.Context,
    chat: ChatRef,
    labels: Annotated[
        list[str] | None, typer.Argument(help="KEY=VALUE pairs: the chat's new labels.")
    ] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove every label.")] = False,
    json_mode: JsonOpt = False,
) -> None:
    """Replace a chat's labels (or remove them with --clear)."""
    if bool(labels) == clear:
        raise typer.BadParameter("give KEY=VALUE pairs, or --clear")
    new = parse_labels(labels)

    async def body(client: TetherClient, out: Output) -> int:
        chats = ChatsAPI(client)
        target = await resolve_chat(chats, chat)
        result = await chats.update(target.id, labels=new)
        shown = ", ".join(f"{k}={v}" for k, v in result.labels.items()) or "(none)"
        out.emit(result, f"chat {result.id} labels: {shown}")
        return 0

    run(ctx, json_mode, body)


def list_chats(
    ctx: typer.Context,
    all_statuses: Annotated[
        bool, typer.Option("--all-statuses", help="Archived chats too.")
    ] = False,
    status: Annotated[str | None, typer.Option(help="Only chats in this status.")] = None,
    search: Annotated[
        str | None, typer.Option("--search", "-s", help="Titles containing this (any case).")
    ] = None,
    label: LabelOpt = None,
    json_mode: JsonOpt = False,
) -> None:
    """List your chats (most recently updated first)."""
    labels = parse_labels(label)

    async def body(client: TetherClient, out: Output) -> int:
        chats = ChatsAPI(client)
        items = await chats.list(status=status, search=search, labels=labels)
        if all_statuses:
            items += await chats.list(archived=True, status=status, search=search, labels=labels)
        if out.json_mode:
            out.json(items)
        elif not items:
            out.line('no chats: start one with `tether chat "what to do"`')
        else:
            out.table(
                ["ID", "STATUS", "TITLE", "WORKSPACE", "UPDATED"],
                [
                    (
                        str(c.id)[:8],
                        c.status + (" (archived)" if c.archived else ""),
                        c.title,
                        str(c.workspace_id)[:8] if c.workspace_id else "-",
                        c.updated_at.isoformat(timespec="seconds"),
                    )
                    for c in items
                ],
            )
        return 0

    run(ctx, json_mode, body)


def show(ctx: typer.Context, chat: ChatRef, json_mode: JsonOpt = False) -> None:
    """Show a chat: status, workspace binding, last error and the conversation."""

    async def body(client: TetherClient, out: Output) -> int:
        chats = ChatsAPI(client)
        target = await resolve_chat(chats, chat)
        messages = await chats.all_messages(target.id)
        if out.json_mode:
            out.json({"chat": target, "messages": messages})
            return 0
        out.fields(_chat_fields(target))
        out.line("")
        renderer, _ = new_renderer(client, out, show_user=True)
        for m in messages:
            renderer.message(m.model_dump(mode="json"))
        renderer.end_line()
        return 0

    run(ctx, json_mode, body)


def _chat_fields(chat: Chat) -> list[tuple[str, Any]]:
    error = chat.last_error or "-"
    if chat.last_error and chat.last_error_code:
        error = f"{chat.last_error} [{chat.last_error_code}]"
    return [
        ("id", chat.id),
        ("title", chat.title),
        ("status", chat.status + (" (archived)" if chat.archived else "")),
        ("workspace", chat.workspace_id or "-"),
        ("build", chat.build_id or "-"),
        ("agent", chat.agent_id or "-"),
        ("model", chat.model or "(server default)"),
        ("plan mode", "on" if chat.plan_mode else "off"),
        ("labels", ", ".join(f"{k}={v}" for k, v in chat.labels.items()) or "-"),
        ("queued", chat.queued),
        ("last error", error),
    ]


SLASH_COMMANDS = ("/compact", "/clear")


async def slash(chats: ChatsAPI, out: Output, chat_id: uuid.UUID, command: str) -> int:
    if command == "/clear":
        record = await chats.clear(chat_id)
        out.emit(record, f"chat {chat_id}: context cleared (history kept, not sent again)")
    else:
        record = await chats.compact(chat_id)
        out.emit(
            record,
            f"chat {chat_id}: compacted through message #{record.through_seq} "
            f"(~{record.tokens_before or 0} tokens before)",
        )
    return 0


def _run_slash(ctx: typer.Context, json_mode: bool, chat: str, command: str) -> None:
    async def body(client: TetherClient, out: Output) -> int:
        chats = ChatsAPI(client)
        target = await resolve_chat(chats, chat)
        return await slash(chats, out, target.id, command)

    run(ctx, json_mode, body)


def compact(ctx: typer.Context, chat: ChatRef, json_mode: JsonOpt = False) -> None:
    """Summarise the chat's older messages for the model (same as sending /compact)."""
    _run_slash(ctx, json_mode, chat, "/compact")


def clear(ctx: typer.Context, chat: ChatRef, json_mode: JsonOpt = False) -> None:
    """Give the chat a fresh context; its history stays (same as sending /clear)."""
    _run_slash(ctx, json_mode, chat, "/clear")


def interrupt(ctx: typer.Context, chat: ChatRef, json_mode: JsonOpt = False) -> None:
    """Interrupt the chat's running turn (what was streamed so far is kept)."""

    async def body(client: TetherClient, out: Output) -> int:
        chats = ChatsAPI(client)
        target = await resolve_chat(chats, chat)
        result = await chats.interrupt(target.id)
        out.emit(result, f"chat {result.id} is {result.status}")
        return 0

    run(ctx, json_mode, body)


def retitle(ctx: typer.Context, chat: ChatRef, json_mode: JsonOpt = False) -> None:
    """Ask the chat's model for a new title."""

    async def body(client: TetherClient, out: Output) -> int:
        chats = ChatsAPI(client)
        target = await resolve_chat(chats, chat)
        result = await chats.regenerate_title(target.id)
        out.emit(result, f"chat {result.id}: {result.title}")
        return 0

    run(ctx, json_mode, body)


def threshold(
    ctx: typer.Context,
    value: Annotated[
        float | None,
        typer.Argument(help="Share of a model's context window, 0.1–0.95; omit to show it."),
    ] = None,
    unset: Annotated[bool, typer.Option("--unset", help="Drop your own threshold.")] = False,
    json_mode: JsonOpt = False,
) -> None:
    """Show or set your compaction threshold: your chats are compacted when a request
    would fill this share of the model's window (only where it is below the model's)."""
    if unset and value is not None:
        raise typer.BadParameter("give a value or --unset, not both")

    async def body(client: TetherClient, out: Output) -> int:
        chats = ChatsAPI(client)
        if unset or value is not None:
            current = await chats.set_compaction_threshold(None if unset else value)
        else:
            current = await chats.compaction_threshold()
        text = (
            f"compaction threshold: {current:.0%} of each model's context window"
            if current is not None
            else "compaction threshold: not set (each model's own applies)"
        )
        out.emit({"compaction_threshold": current}, text)
        return 0

    run(ctx, json_mode, body)
