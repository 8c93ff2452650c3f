"""``tether ui``: print a one-time sign-in link to the web UI."""

from __future__ import annotations

import typer

from tether.cli.common import JsonOpt, run
from tether.cli.output import Output
from tether.sdk import TetherClient


def ui(ctx: typer.Context, json_mode: JsonOpt = False) -> None:
    """Print a one-time link that signs this user in to the web UI (valid a few minutes)."""

    async def body(client: TetherClient, out: Output) -> int:
        link = await client.signin_link()
        if out.json_mode:
            out.json({"url": link})
        else:
            out.line("Open this link to sign in to the web UI (it works once, for a few minutes):")
            out.line(link)
        return 0

    run(ctx, json_mode, body)
