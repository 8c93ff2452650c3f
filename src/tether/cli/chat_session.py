"""The streaming side of ``tether chat``: ``new``, ``send`` and ``watch`` print the
assistant's text as it arrives and one line per tool call and result, and return when the
chat is idle again (exit 1 when the turn ended in ``error``). ``--json`` prints every stream
event as one JSON object per line, then a ``summary`` object. Ctrl-C while a turn runs asks
whether to interrupt it (interrupts directly without a terminal), then exits 130."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

import typer

from tether.cli.chat_commands import SLASH_COMMANDS, LabelOpt, parse_labels, slash
from tether.cli.chat_parity import ImageOpt, content_of
from tether.cli.chat_render import ChatRenderer
from tether.cli.chat_stream import (
    BUSY,
    IDLE,
    StreamOutcome,
    ndjson,
    new_renderer,
    stream_chat,
)
from tether.cli.chatref import ChatRef, resolve_chat
from tether.cli.common import JsonOpt, connection, guarded
from tether.cli.output import Output
from tether.sdk import TetherClient
from tether.sdk.chats import Chat, ChatsAPI

INTERRUPT_WAIT_S = 10.0
EXIT_INTERRUPTED = 130

Message = Annotated[str, typer.Argument(help="What to ask.")]


@dataclass
class Session:
    """What the Ctrl-C handler needs to know about the streaming command."""

    chat_id: uuid.UUID | None = None
    renderer: ChatRenderer | None = None


StreamBody = Callable[[TetherClient, Output, Session], Awaitable[int]]


def run_streaming(ctx: typer.Context, json_mode: bool, body: StreamBody) -> None:
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


async def follow(
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
    labels = parse_labels(label)
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
        return await follow(client, out, session, chat.id, resume=None, show_user=False)

    run_streaming(ctx, json_mode, body)


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
            return await slash(chats, out, target.id, message.strip())
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
        return await follow(client, out, session, target.id, resume=resume, show_user=True)

    run_streaming(ctx, json_mode, body)


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
        return await follow(
            client, out, session, target.id, resume=resume, show_user=True, until_idle=until_idle
        )

    run_streaming(ctx, json_mode, body)
