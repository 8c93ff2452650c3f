"""``tether chat …`` — the chat commands (create, send, stream, list) will live here.

TODO: implement on top of ``tether.sdk`` (chat endpoints and the SSE stream via
``tether.sdk.sse``) once the chat API exists.
"""

from __future__ import annotations

import typer

app = typer.Typer(help="Chat with the coding agent (not available yet).", no_args_is_help=True)
