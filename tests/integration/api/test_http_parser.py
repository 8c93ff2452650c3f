"""Malformed HTTP gets uvicorn's 400 and a closed connection, never a 500 or a hang, under
both HTTP parsers the server can run (issue #12; src/tether/httpparser.py): h11 and
httptools. A real server (uvicorn on loopback) and a raw socket: garbage request lines,
smuggling heads, a head that never ends (refused once more than 16 KiB of it arrived
incomplete: h11's bound, which the httptools protocol adds); and what must still work — a
long head, pipelined requests. As under h11, a complete head that arrives in one read is
parsed whatever its size."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from support.rawhttp import endless_head, exchange
from support.server import RunningServer, fast_settings, running_server
from tether.httpparser import MAX_HEAD_BYTES

PARSERS = ("h11", "httptools")


@pytest.fixture(params=PARSERS)
async def srv(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[RunningServer]:
    settings = fast_settings(
        tmp_path, http_parser=request.param, run_chatd=False, run_provisioner=False
    )
    async with running_server(settings) as server:
        yield server


GARBAGE = {
    "not http": b"\x00\x01\x02 hello\r\n\r\n",
    "bad version": b"GET / HTTP/9.9.9\r\nHost: x\r\n\r\n",
    "space in a header name": b"GET /api/v1/health HTTP/1.1\r\nHo st: x\r\n\r\n",
    "content-length and chunked": (
        b"POST /api/v1/chats HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    ),
    "negative content-length": (
        b"POST /api/v1/chats HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"
    ),
    "bad chunk size": (
        b"POST /api/v1/chats HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"zz\r\nabc\r\n0\r\n\r\n"
    ),
}


@pytest.mark.parametrize("raw", GARBAGE.values(), ids=GARBAGE.keys())
async def test_malformed_request_gets_a_4xx_and_a_closed_connection(
    srv: RunningServer, raw: bytes
) -> None:
    """A 4xx (400 from the parser; h11 reads a chunked body despite a Content-Length and
    the route answers 401) and the connection closed: never a 5xx, never a hang."""
    answer = await exchange(srv.url, raw)
    assert answer.closed, answer.data[:200]
    assert len(answer.statuses) == 1 and 400 <= answer.statuses[0] < 500, answer.data[:200]


async def test_a_head_that_never_ends_is_refused_and_closed(srv: RunningServer) -> None:
    """The attack on a parser without a head bound: one header that keeps coming. The
    server must answer 400 and close long before the 4 MiB the client would send."""
    answer = await endless_head(srv.url)
    assert answer.closed, "the server kept reading an endless head"
    assert answer.refused, answer.data[:200]


async def test_a_long_head_is_served(srv: RunningServer) -> None:
    raw = b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\nConnection: close\r\n\r\n" % (
        b"a" * (MAX_HEAD_BYTES // 2)
    )
    answer = await exchange(srv.url, raw)
    assert answer.statuses == [200], answer.data[:200]


async def test_pipelined_requests_in_one_write_are_all_answered(srv: RunningServer) -> None:
    """Many small requests in one segment: each is answered (the head bound counts one
    request's head, not the whole write)."""
    one = b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nX-Pad: %s\r\n\r\n" % (b"p" * 1000)
    raw = one * 40  # ≈ 41 KiB in one write, over the bound in total
    answer = await exchange(srv.url, raw, until_responses=40)
    assert answer.statuses == [200] * 40, answer.data[:300]
