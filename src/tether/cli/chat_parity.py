"""``tether chat edit`` and ``tether chat usage``, and ``--image`` for new/send (issue #14).

    tether chat edit CHAT MESSAGE "new text" [--image F]… [--no-follow]
    tether chat usage [CHAT] [--turns N]     a chat's tokens per turn; without CHAT: yours

``MESSAGE`` is a message id or a unique id prefix of the chat's current history (``tether
chat show CHAT --json`` lists them). Registered on the ``tether chat`` app by
:mod:`tether.cli.chat`.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Annotated, Any

import typer

from tether.cli.chatref import ChatRef, resolve_chat
from tether.cli.common import CliError, JsonOpt, run
from tether.cli.output import Output
from tether.sdk import TetherClient
from tether.sdk.chats import ChatMessage, ChatsAPI, image_part

IMAGE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp"}

ImageOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--image",
        "-i",
        help="Attach an image (png, jpeg, gif, webp; repeatable). The model must accept images.",
    ),
]


def content_of(text: str, images: list[Path] | None) -> str | list[dict[str, Any]]:
    """The message content: the text alone, or a text part and the images' parts."""
    if not images:
        return text
    parts: list[dict[str, Any]] = [{"type": "text", "text": text}] if text.strip() else []
    for path in images:
        media_type = mimetypes.guess_type(path.name)[0]
        if media_type not in IMAGE_TYPES:
            raise CliError(f"{path}: not a png, jpeg, gif or webp file (by its name)")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise CliError(f"cannot read {path}: {exc}") from exc
        parts.append(image_part(data, media_type))
    return parts


async def resolve_message(chats: ChatsAPI, chat_id: Any, ref: str) -> ChatMessage:
    history = await chats.all_messages(chat_id)
    found = [m for m in history if str(m.id) == ref] or [
        m for m in history if str(m.id).startswith(ref.lower())
    ]
    if len(found) != 1:
        what = "no" if not found else "more than one"
        raise CliError(f"{what} message of chat {chat_id} matches {ref!r}")
    return found[0]


def register(app: typer.Typer, follow: Any, run_streaming: Any) -> None:
    """Add the commands to ``tether chat`` (kept out of cli/chat_session.py)."""

    @app.command("edit")
    def edit(
        ctx: typer.Context,
        chat: ChatRef,
        message: Annotated[str, typer.Argument(help="The user message's id or id prefix.")],
        text: Annotated[str, typer.Argument(help="Its new text.")],
        image: ImageOpt = None,
        no_follow: Annotated[
            bool, typer.Option("--no-follow", help="Return once the edit is accepted.")
        ] = False,
        json_mode: JsonOpt = False,
    ) -> None:
        """Replace a user message and run the chat again from it: the later messages are
        dropped from the history (the chat must be idle — interrupt it first)."""
        content = content_of(text, image)

        async def body(client: TetherClient, out: Output, session: Any) -> int:
            chats = ChatsAPI(client)
            target = await resolve_chat(chats, chat)
            session.chat_id = target.id
            old = await resolve_message(chats, target.id, message)
            done = await chats.edit(target.id, old.id, content)
            if no_follow:
                out.emit(
                    done,
                    f"chat {target.id}: message edited; messages from #{done.superseded_from_seq} "
                    "replaced, the chat runs again",
                )
                return 0
            out.note(f"chat {target.id}: edited; running again", style="dim")
            return int(
                await follow(
                    client,
                    out,
                    session,
                    target.id,
                    resume=f"{done.message.seq}.0",
                    show_user=True,
                )
            )

        run_streaming(ctx, json_mode, body)

    @app.command("usage")
    def usage(
        ctx: typer.Context,
        chat: Annotated[
            str | None, typer.Argument(help="Chat id, prefix or title (none: your month).")
        ] = None,
        turns: Annotated[int, typer.Option("--turns", min=1, max=500)] = 20,
        json_mode: JsonOpt = False,
    ) -> None:
        """Tokens the model provider reported: a chat's, per turn; without CHAT, yours
        this month and your limit."""

        async def body(client: TetherClient, out: Output) -> int:
            if chat is None:
                mine = await client.my_usage()
                if out.json_mode:
                    out.json(mine)
                    return 0
                limit = "none" if mine.limit_tokens is None else f"{mine.limit_tokens}"
                out.fields(
                    [
                        ("period", f"{mine.period_start:%Y-%m} (UTC)"),
                        ("input tokens", mine.input_tokens),
                        ("output tokens", mine.output_tokens),
                        ("requests", mine.requests),
                        ("limit", limit),
                        (
                            "remaining",
                            "-" if mine.remaining_tokens is None else mine.remaining_tokens,
                        ),
                        ("resets at", mine.resets_at.isoformat()),
                    ]
                )
                return 0
            chats = ChatsAPI(client)
            target = await resolve_chat(chats, chat)
            result = await chats.usage(target.id, limit=turns)
            if out.json_mode:
                out.json(result)
                return 0
            out.fields(
                [
                    ("chat", target.id),
                    ("input tokens", result.input_tokens),
                    ("output tokens", result.output_tokens),
                    ("requests", result.requests),
                ]
            )
            out.table(
                ["MESSAGE", "INPUT", "OUTPUT", "REQUESTS"],
                [
                    (str(t.message_id or "-")[:8], t.input_tokens, t.output_tokens, t.requests)
                    for t in result.turns
                ],
            )
            return 0

        run(ctx, json_mode, body)
