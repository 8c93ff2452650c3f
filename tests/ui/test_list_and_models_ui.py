"""The chats list follows the per-owner watch stream (no polling; another member's chats
never show), and admins add, edit and delete models in the browser (keys never shown)."""

from __future__ import annotations

import asyncio

import pytest
from playwright.async_api import Request, expect
from test_chat_view import assert_nothing_ran
from ui_env import UI

pytestmark = pytest.mark.asyncio(loop_scope="session")

XSS_TITLE = '<img src=x onerror="window.__xss=21"> [t](javascript:window.__xss=22)'


async def test_chats_list_updates_live_from_the_watch_without_polling(ui: UI) -> None:
    token = await ui.token_for("frank")
    auth = {"Authorization": f"Bearer {token}"}
    mallory = {"Authorization": f"Bearer {await ui.token_for('mallory')}"}
    context, page = await ui.signed_in(token)
    lists: list[Request] = []
    page.on("request", lambda r: lists.append(r) if "/api/v1/chats?" in r.url else None)
    await page.goto(ui.url + "/ui/#/chats")
    await expect(page.locator(".chat-list .empty")).to_be_visible()
    # a chat made elsewhere (the API, the CLI) appears, then its status and title change
    r = await ui.server.client.post(
        "/api/v1/chats", json={"content": "made elsewhere"}, headers=auth
    )
    chat_id = r.json()["id"]
    row = page.locator(f".chat-row[data-chat-id='{chat_id}']")
    await expect(row).to_contain_text("made elsewhere")
    await expect(row.locator(".badge")).to_have_text("idle")
    await ui.server.client.patch(
        f"/api/v1/chats/{chat_id}", json={"title": XSS_TITLE}, headers=auth
    )
    await expect(row.locator(".chat-row-title")).to_have_text(XSS_TITLE)
    # another member's chats never reach this list
    await ui.server.client.post(
        "/api/v1/chats", json={"content": "mallory's secret"}, headers=mallory
    )
    await ui.server.client.post("/api/v1/chats/" + chat_id + "/archive", headers=auth)
    await expect(row).to_be_hidden()
    await asyncio.sleep(1.5)  # more than one poll of the watch
    assert "mallory" not in await page.content()
    await page.check("#show-archived")
    await expect(row).to_contain_text("<img")
    # the list was loaded when the page opened, when the watch was ready and for the
    # archived filter — never on a timer
    assert len(lists) <= 3, [q.url for q in lists]
    await assert_nothing_ran(page)
    await context.close()


async def test_admin_adds_edits_and_deletes_a_model(ui: UI) -> None:
    context, page = await ui.signed_in()
    await page.goto(ui.url + "/ui/#/admin/models")
    operator = page.locator("tr[data-model=scripted]")
    await expect(operator).to_contain_text("server config")  # read-only: no buttons
    assert await operator.locator("button").count() == 0
    await page.fill("#model-name", "extra")
    await page.select_option("#model-provider", "openai-compatible")
    await page.fill("#model-model", '<img src=x onerror="window.__xss=23">')
    await page.fill("#model-base-url", "http://127.0.0.1:9/v1")
    await page.fill("#model-key-env", "EXTRA_API_KEY")
    await page.fill("#model-window", "8192")
    await page.click("#model-form button[type=submit]")
    row = page.locator("tr[data-model=extra]")
    await expect(row).to_contain_text('<img src=x onerror="window.__xss=23">')
    await expect(row).to_contain_text("8192 tokens · 70%")
    # the key's variable is not shown back (nor in the API's answer)
    assert "EXTRA_API_KEY" not in await page.content()
    listed = (await ui.server.client.get("/api/v1/models")).json()
    assert "EXTRA_API_KEY" not in str(listed)
    await ui.shot(page, "admin-models")
    # edit: the form fills in, the name stays
    await row.locator("button[data-action=edit-model]").click()
    await expect(page.locator("#model-name")).to_be_disabled()
    await expect(page.locator("#model-key-env")).to_have_value("")
    await page.fill("#model-model", "qwen-coder")
    await page.fill("#model-threshold", "0.5")
    await page.click("text=Save changes")
    await expect(row).to_contain_text("qwen-coder")
    await expect(row).to_contain_text("8192 tokens · 50%")
    # bad input is the server's typed error on the page
    await row.locator("button[data-action=edit-model]").click()
    await page.fill("#model-base-url", "ftp://example.com/v1")
    await page.click("text=Save changes")
    await expect(page.locator(".alert-error")).to_contain_text("invalid_input")
    await page.click("#model-form >> text=Cancel")
    # delete asks once more, then the model is gone
    await row.locator("button[data-action=delete-model]").click()
    await expect(row.locator("button[data-action=delete-model]")).to_have_text("Confirm delete")
    await row.locator("button[data-action=delete-model]").click()
    await expect(row).to_have_count(0)
    assert "extra" not in [m["name"] for m in (await ui.server.client.get("/api/v1/models")).json()]
    await assert_nothing_ran(page)
    await context.close()


async def test_member_cannot_change_models(ui: UI) -> None:
    """Attack: a member opens the models page by URL and tries the API with the session."""
    member = await ui.token_for("gina")
    context, page = await ui.signed_in(member)
    await page.goto(ui.url + "/ui/#/admin/models")
    await expect(page.locator("tr[data-model=scripted]")).to_be_visible()
    status = await page.evaluate(
        """async () => {
            const s = await (await fetch('/api/v1/session')).json();
            const r = await fetch('/api/v1/models', {method: 'POST',
              headers: {'Content-Type': 'application/json', 'X-CSRF-Token': s.csrf_token},
              body: JSON.stringify({name: 'evil', provider: 'scripted', model: 'demo'})});
            return r.status;
        }"""
    )
    assert status == 403
    names = [m["name"] for m in (await ui.server.client.get("/api/v1/models")).json()]
    assert "evil" not in names
    await context.close()
