"""The server's event loop and HTTP parser choices (issue #12; src/tether/eventloop.py,
src/tether/httpparser.py): ``auto`` is uvloop / httptools when importable, the fallback
when not, and a forced choice that is not installed is a configuration error."""

from __future__ import annotations

import asyncio
import sys

import pytest

from tether.errors import TetherError
from tether.eventloop import loop_choice, run, running_loop_name
from tether.httpparser import bounded_httptools_protocol, parser_choice, uvicorn_http
from tether.settings import Settings


def test_defaults_are_auto() -> None:
    settings = Settings()
    assert (settings.event_loop, settings.http_parser) == ("auto", "auto")


def test_auto_picks_the_fast_ones_when_installed() -> None:
    assert loop_choice("auto") == "uvloop"
    assert parser_choice("auto") == "httptools"
    assert uvicorn_http("auto") is bounded_httptools_protocol()


def test_forced_fallbacks() -> None:
    assert loop_choice("asyncio") == "asyncio"
    assert parser_choice("h11") == "h11"
    assert uvicorn_http("h11") == "h11"


def test_auto_falls_back_when_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop → ImportError
    monkeypatch.setitem(sys.modules, "httptools", None)
    assert loop_choice("auto") == "asyncio"
    assert parser_choice("auto") == "h11"
    with pytest.raises(TetherError, match="uvloop is not installed"):
        loop_choice("uvloop")
    with pytest.raises(TetherError, match="httptools is not installed"):
        parser_choice("httptools")


def test_run_uses_the_chosen_loop() -> None:
    async def name() -> str:
        return running_loop_name()

    assert run(name(), "auto") == "uvloop"
    assert run(name(), "asyncio") == "asyncio"


def test_run_with_a_missing_loop_raises_before_starting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)
    started = False

    async def main() -> None:
        nonlocal started
        started = True

    coro = main()
    with pytest.raises(TetherError):
        run(coro, "uvloop")
    assert not started
    assert coro.cr_frame is None  # closed: no "never awaited" warning


def test_pytest_loop_is_asyncio() -> None:
    """The test suite's in-process servers run in pytest's loop (asyncio); the real
    ``tether server`` processes of tests/acceptance run on uvloop (test_cli.py)."""

    async def name() -> str:
        return running_loop_name()

    assert asyncio.run(name()) == "asyncio"
