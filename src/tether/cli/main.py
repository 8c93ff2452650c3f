"""The ``tether`` command line (Typer). Sync at the edge: each command runs its SDK calls
with ``asyncio.run``; client commands share ``--json`` and the global ``--url``/``--token``.

Exit codes: 0 ok, 1 error (``error: …`` on stderr), 2 usage error, ``tether exec`` passes the
command's exit code through (124 when it timed out).
"""

from __future__ import annotations

from typing import Annotated

import typer

from tether.cli import (
    chat,
    chat_config,
    exec_cmd,
    images,
    models,
    server_cmd,
    templates,
    ui_cmd,
    users,
    workspaces,
)
from tether.cli.common import Globals


def _root(
    ctx: typer.Context,
    url: Annotated[
        str | None, typer.Option(envvar="TETHER_URL", help="Server URL (overrides the config).")
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="TETHER_TOKEN", help="API token (overrides the config).", show_default=False
        ),
    ] = None,
) -> None:
    """tether: chat with an LLM coding agent that works inside your workspaces."""
    ctx.obj = Globals(url=url, token=token)


def build_app() -> typer.Typer:
    app = typer.Typer(
        name="tether",
        no_args_is_help=True,
        pretty_exceptions_show_locals=False,  # locals can hold tokens
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.callback()(_root)
    app.command("server")(server_cmd.server)
    app.command("agent")(server_cmd.agent)
    app.command("login")(users.login)
    app.command("whoami")(users.whoami)
    app.command("exec")(exec_cmd.exec_command)
    app.command("ui")(ui_cmd.ui)
    app.add_typer(users.app, name="users")
    app.add_typer(users.tokens_app, name="tokens")
    app.add_typer(templates.app, name="templates")
    app.add_typer(workspaces.app, name="workspaces")
    app.add_typer(workspaces.app, name="ws", help="Alias of `workspaces`.")
    app.add_typer(chat.app, name="chat")
    app.add_typer(models.app, name="models")
    app.add_typer(images.app, name="images")
    app.add_typer(chat_config.app, name="chat-config")
    return app


def main() -> None:
    build_app()()


if __name__ == "__main__":
    main()
