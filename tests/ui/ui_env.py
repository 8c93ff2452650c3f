"""Helpers of the web UI tests: the browser check, the shared server and browser handle."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from support.server import RunningServer

CHROMIUM = "/usr/bin/chromium"
XSS_TEMPLATE = """\
name: xss-demo
display_name: XSS demo
description: 'Tool output test <img src=x onerror="window.__xss=3"> [t](javascript:window.__xss=4)'
backend: local
agents:
  - name: main
    chat: true
"""

try:
    from playwright.async_api import (  # noqa: F401 (re-exported for conftest)
        Browser,
        BrowserContext,
        Page,
        async_playwright,
    )
except ImportError:  # pragma: no cover - the dev extra installs it
    async_playwright = None


def require_browser() -> None:
    problem = None
    if async_playwright is None:
        problem = "playwright is not installed (pip install -e '.[dev]')"
    elif not (os.access(CHROMIUM, os.X_OK) or shutil.which("chromium")):
        problem = f"{CHROMIUM} is missing: run `make sysdeps` (installs Debian's chromium)"
    if problem:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(problem, pytrace=False)
        pytest.skip(problem)


@dataclass
class UI:
    server: RunningServer
    browser: Any
    shots: Path

    @property
    def url(self) -> str:
        return self.server.url

    async def token_for(self, name: str, role: str = "member") -> str:
        users = self.server.graph.users
        try:
            user = await users.get_user_by_name(name)
        except Exception:
            user = await users.create_user(name, role)
        token, _ = await users.create_token(user.id, "ui-test")
        return token

    async def signed_in(
        self, token: str | None = None, *, base_url: str | None = None
    ) -> tuple[BrowserContext, Page]:
        context = await self.browser.new_context(viewport={"width": 1280, "height": 860})
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("dialog", lambda d: errors.append(f"dialog: {d.message}"))
        # a CSP violation (inline script or style, another origin) is a bug of the UI
        page.on(
            "console",
            lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None,
        )
        page.js_errors = errors  # type: ignore[attr-defined]
        await page.goto((base_url or self.url) + "/ui/")
        await page.fill("#token", token or self.server.token)
        await page.click("button[type=submit]")
        await page.wait_for_selector(".topbar nav")
        return context, page

    async def wait_idle(self, chat_id: str) -> None:
        """Until the chat's turn has ended (``waiting`` or ``error``), at most 15 s."""
        for _ in range(300):
            chat = (await self.server.client.get(f"/api/v1/chats/{chat_id}")).json()
            if chat["status"] in ("waiting", "error"):
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"chat {chat_id} did not end its turn")

    async def shot(self, page: Page, name: str) -> None:
        await page.screenshot(path=str(self.shots / f"{name}.png"), full_page=False)


class CuttableProxy:
    """A loopback TCP proxy in front of the server whose open connections the test can cut
    (a real connection loss, which the browser's offline emulation does not cause for an
    open stream)."""

    def __init__(self, target_port: int) -> None:
        self._target = target_port
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target)
        self._writers |= {writer, up_writer}
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            self._writers -= {writer, up_writer}

    def cut(self) -> int:
        """Abort every open connection; returns how many there were."""
        writers = list(self._writers)
        for w in writers:
            w.transport.abort()
        return len(writers)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[CuttableProxy]:
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            server.close()
            self.cut()
            await server.wait_closed()
