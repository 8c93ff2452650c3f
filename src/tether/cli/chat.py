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

from typing import Any

import typer
from typer.core import TyperGroup

from tether.cli import chat_commands, chat_session
from tether.cli.chat_parity import register

NEW = "new"


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

# streaming (cli/chat_session.py)
app.command(NEW)(chat_session.new)
app.command("send")(chat_session.send)
app.command("watch")(chat_session.watch)
# one request each (cli/chat_commands.py)
app.command("label")(chat_commands.label_chat)
app.command("list")(chat_commands.list_chats)
app.command("show")(chat_commands.show)
app.command("compact")(chat_commands.compact)
app.command("clear")(chat_commands.clear)
app.command("interrupt")(chat_commands.interrupt)
app.command("retitle")(chat_commands.retitle)
app.command("threshold")(chat_commands.threshold)
# edit, usage (cli/chat_parity.py)
register(app, chat_session.follow, chat_session.run_streaming)
