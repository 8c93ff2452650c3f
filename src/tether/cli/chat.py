"""``tether chat …``: talk to the coding agent from a terminal.

    tether chat [--workspace W] [--model M] [--plan] "message"    new chat, reply streamed live
    tether chat send CHAT "message" [--interrupt] [--no-follow] [--plan | --no-plan]
    tether chat list [--all-statuses] | show CHAT | interrupt CHAT | watch CHAT [--from-start]
    tether chat retitle CHAT                             new title from the chat's model
    tether chat label CHAT KEY=VALUE… | --clear          replace its labels
    tether chat list [--search TEXT] [--label KEY=VALUE]…
    tether chat threshold [VALUE | --unset]              your compaction threshold
    tether chat edit CHAT MESSAGE "new text" | usage [CHAT]   (cli/chat_parity.py)
    new / send take --image FILE (repeatable) for models that accept images

Streaming commands print the assistant's text as it arrives and one line per tool call and
result; they return when the chat is idle again (exit 1 when the turn ended in ``error``).
``--json`` prints every stream event as one JSON object per line, then a ``summary`` object.
Ctrl-C while a turn runs asks whether to interrupt it (interrupts directly without a
terminal), then exits 130. ``CHAT`` is a chat id, a unique id prefix or an exact title.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from tether.cli.chat_parity import ImageOpt, content_of, register
from tether.cli.chat_render import ChatRenderer
from tether.cli.chat_stream import (
    BUSY,
    IDLE,
    StreamOutcome,
    ndjson,
    new_renderer,
    stream_chat,
)
from tether.cli.chatref import resolve_chat
from tether.cli.common import JsonOpt, connection, guarded, run
from tether.cli.output import Output
from tether.sdk import TetherClient
from tether.sdk.chats import Chat, ChatsAPI

NEW = "new"
INTERRUPT_WAIT_S = 10.0
EXIT_INTERRUPTED = 130


class ChatGroup(TyperGroup):
    """``tether chat "message"`` is ``tether chat new "message"``: anything that is not a
    subcommand name starts a new chat."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = [NEW, *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=ChatGroup,
    help='Chat with the coding agent: `tether chat "message"` starts a chat.',
    no_args_is_help=True,
)

ChatRef = Annotated[str, typer.Argument(help="Chat id, unique id prefix or exact title.")]
Message = Annotated[str, typer.Argument(help="What to ask.")]


@dataclass
class Session:
    """What the Ctrl-C handler needs to know about the streaming command."""

    chat_id: uuid.UUID | None = None
    renderer: ChatRenderer | None = None


StreamBody = Callable[[TetherClient, Output, Session], Awaitable[int]]


def _run_streaming(ctx: typer.Context, json_mode: bool, body: StreamBody) -> None:
    """Like :func:`tether.cli.common.run`, plus the Ctrl-C handling of streaming commands:
    ``asyncio.run`` cancels the main task on SIGINT; we catch that here, ask, interrupt the
    turn and return 130 (returning normally means no KeyboardInterrupt traceback)."""
    out = Output(json_mode, json_lines=True)
    session = Session()

    async def main() -> int:
        url, token = connection(ctx)
        async with TetherClient(url, token) as client:
            try:
                return await body(client, out, session)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is None or task.uncancel() > 0:
                    raise
                return await _on_ctrl_c(client, out, session)

    raise typer.Exit(guarded(out, main))


async def _on_ctrl_c(client: TetherClient, out: Output, session: Session) -> int:
    if session.renderer is not None:
        session.renderer.end_line()
    if session.chat_id is None:
        out.note("interrupted")
        return EXIT_INTERRUPTED
    chats = ChatsAPI(client)
    chat = await chats.get(session.chat_id)
    if chat.status not in BUSY:
        out.note(f"stopped following chat {chat.id} ({chat.status})")
        return EXIT_INTERRUPTED
    if sys.stdin.isatty():
        try:
            wanted = typer.confirm("Interrupt the running turn?", default=False)
        except (typer.Abort, KeyboardInterrupt, EOFError):
            wanted = False
        if not wanted:
            out.note(
                f"the turn keeps running; follow it with `tether chat watch {chat.id}`",
                style="yellow",
            )
            return EXIT_INTERRUPTED
    await chats.interrupt(chat.id)
    chat = await _wait_idle(chats, chat.id, INTERRUPT_WAIT_S)
    if out.json_mode:
        print(ndjson({"event": "summary", "chat": chat, "interrupted": True}), flush=True)
    out.note(
        f"interrupted: chat {chat.id} is {chat.status}; what was streamed so far is kept — "
        f'continue with `tether chat send {chat.id} "…"`',
        style="yellow",
    )
    return EXIT_INTERRUPTED


async def _wait_idle(chats: ChatsAPI, chat_id: uuid.UUID, timeout: float) -> Chat:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        chat = await chats.get(chat_id)
        if chat.status in IDLE or loop.time() >= deadline:
            return chat
        await asyncio.sleep(0.2)


async def _follow(
    client: TetherClient,
    out: Output,
    session: Session,
    chat_id: uuid.UUID,
    *,
    resume: str | None,
    show_user: bool,
    until_idle: bool = True,
) -> int:
    renderer, activity = new_renderer(client, out, show_user=show_user)
    session.chat_id, session.renderer = chat_id, renderer
    outcome = await stream_chat(
        client, out, chat_id, renderer, activity, resume=resume, until_idle=until_idle
    )
    return _report(out, outcome)


def _report(out: Output, outcome: StreamOutcome) -> int:
    chat = outcome.chat
    code = 1 if chat.status == "error" else 0
    if out.json_mode:
        print(ndjson({**outcome.summary(), "exit_code": code}), flush=True)
    if chat.status == "error":
        suffix = f" [{chat.last_error_code}]" if chat.last_error_code else ""
        out.err.print(f"error: {chat.last_error or 'the turn failed'}{suffix}", style="red")
    return code


LabelOpt = Annotated[
    list[str] | None, typer.Option("--label", "-l", help="A label KEY=VALUE (repeatable).")
]


def _labels(raw: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in raw or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{item!r}: use KEY=VALUE", param_hint="--label")
        out[key] = value
    return out


@app.command(NEW)
def new(
    ctx: typer.Context,
    message: Message,
    workspace: Annotated[
        str | None, typer.Option("--workspace", "-w", help="Bind to this workspace (name or id).")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", "-m", help="Model name (see `tether models list`; default: the server's)."
        ),
    ] = None,
    plan: Annotated[
        bool,
        typer.Option("--plan", help="Plan mode: read-only tools; the plan goes to a plan file."),
    ] = False,
    label: LabelOpt = None,
    image: ImageOpt = None,
    json_mode: JsonOpt = False,
) -> None:
    """Start a chat and stream the reply (this is what `tether chat "message"` runs)."""
    labels = _labels(label)
    content = content_of(message, image)

    async def body(client: TetherClient, out: Output, session: Session) -> int:
        workspace_id = (await client.get_workspace(workspace)).id if workspace else None
        chat = await ChatsAPI(client).create(
            content, workspace_id=workspace_id, model=model, plan_mode=plan, labels=labels
        )
        session.chat_id = chat.id
        if out.json_mode:
            print(ndjson({"event": "chat", "data": chat}), flush=True)
        else:
            out.line(f"chat {chat.id} · {chat.title}", style="dim")
        return await _follow(client, out, session, chat.id, resume=None, show_user=False)

    _run_streaming(ctx, json_mode, body)


@app.command("send")
def send(
    ctx: typer.Context,
    chat: ChatRef,
    message: Message,
    interrupt: Annotated[
        bool, typer.Option("--interrupt", help="Interrupt a running turn instead of queueing.")
    ] = False,
    no_follow: Annotated[
        bool, typer.Option("--no-follow", help="Return once the message is accepted.")
    ] = False,
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="Switch the chat to this configured model."),
    ] = None,
    plan: Annotated[
        bool | None,
        typer.Option("--plan/--no-plan", help="Turn plan mode on or off from this message on."),
    ] = None,
    image: ImageOpt = None,
    json_mode: JsonOpt = False,
) -> None:
    """Send a message to a chat (queued while a turn runs) and stream the reply."""
    content = content_of(message, image)

    async def body(client: TetherClient, out: Output, session: Session) -> int:
        chats = ChatsAPI(client)
        target = await resolve_chat(chats, chat)
        session.chat_id = target.id
        if message.strip() in SLASH_COMMANDS:  # /compact, /clear
            return await _slash(chats, out, target.id, message.strip())
        result = await chats.send(
            target.id,
            content,
            busy="interrupt" if interrupt else "queue",
            model=model,
            plan_mode=plan,
        )
        if no_follow:
            state = "queued" if result.queued else result.chat.status
            out.emit(result, f"chat {target.id}: message {state}")
            return 0
        if result.message is not None:
            resume: str | None = f"{result.message.seq}.0"
        else:  # queued behind a running turn: show the rest of it too
            history = await chats.all_messages(target.id)
            resume = f"{history[-1].seq}.0" if history else None
            out.note(f"chat {target.id} is busy; your message is queued", style="yellow")
        return await _follow(client, out, session, target.id, resume=resume, show_user=True)

    _run_streaming(ctx, json_mode, body)


@app.command("watch")
def watch(
    ctx: typer.Context,
    chat: ChatRef,
    from_start: Annotated[
        bool, typer.Option("--from-start", help="Replay the whole history first.")
    ] = False,
    until_idle: Annotated[
        bool, typer.Option("--until-idle", help="Exit when the chat is waiting or in error.")
    ] = False,
    json_mode: JsonOpt = False,
) -> None:
    """Follow a chat's stream (reconnecting if the connection drops) until Ctrl-C."""

    async def body(client: TetherClient, out: Output, session: Session) -> int:
        chats = ChatsAPI(client)
        target = await resolve_chat(chats, chat)
        resume: str | None = None
        if not from_start:
            history = await chats.all_messages(target.id)
            resume = f"{history[-1].seq}.0" if history else None
        return await _follow(
            client, out, session, target.id, resume=resume, show_user=True, until_idle=until_idle
        )

    _run_streaming(ctx, json_mode, body)


@app.command("label")
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
    new = _labels(labels)

    async def body(client: TetherClient, out: Output) -> int:
        chats = ChatsAPI(client)
        target = await resolve_chat(chats, chat)
        result = await chats.update(target.id, labels=new)
        shown = ", ".join(f"{k}={v}" for k, v in result.labels.items()) or "(none)"
        out.emit(result, f"chat {result.id} labels: {shown}")
        return 0

    run(ctx, json_mode, body)


@app.command("list")
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
    labels = _labels(label)

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


@app.command("show")
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


async def _slash(chats: ChatsAPI, out: Output, chat_id: uuid.UUID, command: str) -> int:
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
        return await _slash(chats, out, target.id, command)

    run(ctx, json_mode, body)


@app.command("compact")
def compact(ctx: typer.Context, chat: ChatRef, json_mode: JsonOpt = False) -> None:
    """Summarise the chat's older messages for the model (same as sending /compact)."""
    _run_slash(ctx, json_mode, chat, "/compact")


@app.command("clear")
def clear(ctx: typer.Context, chat: ChatRef, json_mode: JsonOpt = False) -> None:
    """Give the chat a fresh context; its history stays (same as sending /clear)."""
    _run_slash(ctx, json_mode, chat, "/clear")


@app.command("interrupt")
def interrupt(ctx: typer.Context, chat: ChatRef, json_mode: JsonOpt = False) -> None:
    """Interrupt the chat's running turn (what was streamed so far is kept)."""

    async def body(client: TetherClient, out: Output) -> int:
        chats = ChatsAPI(client)
        target = await resolve_chat(chats, chat)
        result = await chats.interrupt(target.id)
        out.emit(result, f"chat {result.id} is {result.status}")
        return 0

    run(ctx, json_mode, body)


@app.command("retitle")
def retitle(ctx: typer.Context, chat: ChatRef, json_mode: JsonOpt = False) -> None:
    """Ask the chat's model for a new title."""

    async def body(client: TetherClient, out: Output) -> int:
        chats = ChatsAPI(client)
        target = await resolve_chat(chats, chat)
        result = await chats.regenerate_title(target.id)
        out.emit(result, f"chat {result.id}: {result.title}")
        return 0

    run(ctx, json_mode, body)


@app.command("threshold")
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


register(app, _follow, _run_streaming)  # edit, usage (cli/chat_parity.py)
