"""The server's HTTP/1.1 parser (issue #12): httptools (llhttp), uvicorn's own "standard"
choice, when it is importable, else h11; ``Settings.http_parser`` forces either.

h11 refuses a request head (request line and headers) over 16 KiB with a 400 and closes the
connection (``h11``'s ``max_incomplete_event_size``). uvicorn's httptools protocol has no
such bound: llhttp keeps a header that never ends in memory for as long as it keeps coming.
:class:`BoundedHttpToolsProtocol` restores h11's bound: once more than
:data:`MAX_HEAD_BYTES` of a request's head arrived without the head ending, the client gets
uvicorn's own 400 ("Invalid HTTP request received.") and the connection is closed, exactly
as under h11 (tests/integration/api/test_http_parser.py).
"""

from __future__ import annotations

import functools
from typing import Any, Literal

from tether.eventloop import fast_choice

ParserName = Literal["h11", "httptools"]

# h11's DEFAULT_MAX_INCOMPLETE_EVENT_SIZE: the head bound uvicorn's h11 protocol enforces
MAX_HEAD_BYTES = 16 * 1024


def parser_choice(setting: str) -> ParserName:
    """The parser ``setting`` (``auto``, ``h11`` or ``httptools``) selects: ``auto`` is
    httptools when it is importable. A forced ``httptools`` that is missing is a
    configuration error."""
    choice = fast_choice(setting, field="http_parser", fast="httptools", fallback="h11")
    return "httptools" if choice == "httptools" else "h11"


def uvicorn_http(setting: str) -> Any:
    """What ``uvicorn.Config(http=…)`` takes for ``setting``: ``"h11"`` or the bounded
    httptools protocol class."""
    if parser_choice(setting) == "h11":
        return "h11"
    return bounded_httptools_protocol()


@functools.cache  # built on first use: httptools is imported only when it is chosen
def bounded_httptools_protocol() -> type[Any]:
    """uvicorn's httptools protocol with h11's bound on a request's head."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class BoundedHttpToolsProtocol(HttpToolsProtocol):
        """Counts the bytes of a request's head as they arrive; over the bound → 400.

        A chunk in which a request's head is still open after the parser consumed it is
        counted whole — unless an earlier request ended in the same chunk (pipelining):
        then where the new head began is unknown and that chunk is not counted, so the
        bound is :data:`MAX_HEAD_BYTES` plus one read, never a false refusal."""

        _head_bytes = 0
        _in_head = False
        _ended_in_chunk = False

        def data_received(self, data: bytes) -> None:
            self._ended_in_chunk = False
            super().data_received(data)
            if not self._in_head or self.parser is None or self.transport.is_closing():
                return
            if not self._ended_in_chunk:
                self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._in_head = False
                msg = "Invalid HTTP request received."
                self.logger.warning(msg)
                self.send_400_response(msg)

        def on_message_begin(self) -> None:
            self._in_head, self._head_bytes = True, 0
            super().on_message_begin()

        def on_headers_complete(self) -> None:
            self._in_head = False
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._ended_in_chunk = True
            super().on_message_complete()

    return BoundedHttpToolsProtocol
