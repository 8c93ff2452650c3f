"""Signing in to the web UI in a real browser: token form, one-time link, sign out."""

from __future__ import annotations

import pytest
from ui_env import UI

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_sign_in_with_token_then_sign_out_ends_the_session(ui: UI) -> None:
    context, page = await ui.signed_in()
    await page.wait_for_selector("text=New chat")
    await ui.shot(page, "chats-empty")
    cookies = {c["name"]: c for c in await context.cookies()}
    session = cookies["tether_session"]
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    # scripts cannot read the session
    assert "tether_session" not in await page.evaluate("document.cookie")
    await page.click("text=Sign out")
    await page.wait_for_selector("#token")
    # the old cookie value no longer authenticates: the session ended server-side
    r = await ui.server.client.get(
        "/api/v1/users/me",
        headers={"Authorization": "", "Cookie": f"tether_session={session['value']}"},
    )
    assert r.status_code == 401
    assert page.js_errors == []  # type: ignore[attr-defined]
    await context.close()


async def test_one_time_link_signs_in_once(ui: UI) -> None:
    r = await ui.server.client.post("/api/v1/session/links")
    assert r.status_code == 201
    link = ui.url + r.json()["path"]
    context = await ui.browser.new_context()
    page = await context.new_page()
    await page.goto(link)
    await page.wait_for_selector(".topbar nav")
    assert "token=" not in page.url  # the secret left the address bar
    await context.close()
    # the second use is refused
    other = await ui.browser.new_context()
    page = await other.new_page()
    await page.goto(link)
    await page.wait_for_selector(".alert-error")
    assert await page.is_visible("#token")
    await other.close()
