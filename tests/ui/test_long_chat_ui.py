"""Long chats in the browser (issue #16, #10's gaps): Compact and Clear with a marker where
the history was compacted (messages before it still readable), the typed error when the
chat is busy, the user's compaction threshold in Settings, and history loaded page by page
(the newest page, then older pages on scroll) with the stream followed from the last id."""

from __future__ import annotations

import asyncio
import re
import uuid

import pytest
from playwright.async_api import Request, expect
from test_chat_view import REPLIES, assert_nothing_ran, new_chat, send
from ui_env import UI

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_compact_and_clear_mark_the_history_and_busy_is_a_typed_error(ui: UI) -> None:
    context, page = await ui.signed_in()
    chat_id = await new_chat(page, ui, "first goal")
    await expect(page.locator(REPLIES).last).to_contain_text("You said: first goal")
    for word in ("second", "third"):
        await send(page, f"{word} step")
        await expect(page.locator(REPLIES).last).to_contain_text(f"You said: {word} step")
    await page.click("button[data-action=compact]")
    marker = page.locator(".compaction-marker[data-kind=compact]")
    await expect(marker).to_contain_text("History compacted")
    # the messages before the cut are marked, still there and readable; the newest are not
    compacted = page.locator(".messages .msg-compacted")
    await expect(compacted.first).to_contain_text("first goal")
    assert await page.locator(".messages .msg:not(.msg-compacted)").count() >= 2
    through = int(await marker.get_attribute("data-through") or 0)
    records = (await ui.server.client.get(f"/api/v1/chats/{chat_id}/compactions")).json()
    assert [r["through_seq"] for r in records] == [through]
    await ui.shot(page, "chat-compacted")
    # after a reload the marker comes back from the API
    await page.reload()
    await expect(page.locator(".compaction-marker[data-kind=compact]")).to_be_visible()
    await expect(page.locator(".messages .msg-compacted").first).to_contain_text("first goal")
    await page.click("button[data-action=clear]")
    await expect(page.locator(".compaction-marker[data-kind=clear]")).to_contain_text(
        "Context cleared"
    )
    await expect(page.locator(".messages .msg:not(.msg-compacted)")).to_have_count(0)
    # the chat keeps answering after a clear
    await send(page, "after the clear")
    await expect(page.locator(REPLIES).last).to_contain_text("You said: after the clear")
    # busy: both buttons answer with the typed error, and the turn goes on
    await send(page, "forever please")
    await expect(page.locator(".live")).to_contain_text("f3")
    await page.click("button[data-action=compact]")
    await expect(page.locator(".alert-error")).to_contain_text("conflict")
    await expect(page.locator(".alert-error")).to_contain_text("compact it when the turn")
    await page.click("button[data-action=clear]")
    await expect(page.locator(".alert-error")).to_contain_text("clear it when the turn")
    await page.click("button[data-action=interrupt]")
    await expect(page.locator(".chat-status")).to_have_text("idle")
    assert page.js_errors == []  # type: ignore[attr-defined]
    await context.close()


async def test_compaction_summary_is_shown_as_text(ui: UI) -> None:
    """Attack: the summary is model output; markup in it stays text."""
    payload = '<img src=x onerror="window.__xss=11"> [x](javascript:window.__xss=12)'
    r = await ui.server.client.post("/api/v1/chats", json={"content": payload})
    chat_id = r.json()["id"]
    for _ in range(3):  # the turns end (echo model); then compact by hand
        await ui.wait_idle(chat_id)
        await ui.server.client.post(f"/api/v1/chats/{chat_id}/messages", json={"content": payload})
    await ui.wait_idle(chat_id)
    compacted = await ui.server.client.post(f"/api/v1/chats/{chat_id}/compact")
    assert compacted.status_code == 200, compacted.text
    context, page = await ui.signed_in()
    await page.goto(f"{ui.url}/ui/#/chats/{chat_id}")
    marker = page.locator(".compaction-marker")
    await expect(marker).to_be_visible()
    await marker.locator("summary").click()
    await expect(marker.locator("pre")).to_have_text(compacted.json()["summary"])
    await assert_nothing_ran(page)
    await context.close()


async def test_history_loads_newest_page_then_older_pages_on_scroll(ui: UI) -> None:
    r = await ui.server.client.post("/api/v1/chats", json={"content": "hello"})
    chat_id = r.json()["id"]
    await ui.wait_idle(chat_id)
    cid = uuid.UUID(chat_id)
    for i in range(130):
        await ui.server.graph.chats.append_message(
            cid, role="assistant", parts=[{"type": "text", "text": f"paged {i:03d}"}]
        )
    context, page = await ui.signed_in()
    requests: list[Request] = []
    page.on("request", lambda q: requests.append(q) if f"/chats/{chat_id}/" in q.url else None)
    await page.goto(f"{ui.url}/ui/#/chats/{chat_id}")
    msgs = page.locator(".messages .msg")
    await expect(msgs.last).to_contain_text("paged 129")
    await expect(msgs).to_have_count(50)
    # the stream is followed from the last message of the page, not replayed from the start
    # (it opens once the page and the queue are loaded)
    await expect(page.locator(".chat-status")).to_have_text("idle")

    def streams() -> list[str]:
        return [q.url for q in requests if q.url.split("?")[0].endswith("/stream")]

    for _ in range(200):
        if streams():
            break
        await asyncio.sleep(0.05)
    assert len(streams()) == 1 and streams()[0].endswith("?after=132.0"), streams()
    # scrolling to the top loads the page before, keeping the reader's place
    await page.locator(".scroller").evaluate("el => { el.scrollTop = 0; }")
    await expect(msgs).to_have_count(100)
    await expect(page.locator(".messages")).to_contain_text("paged 030")
    await page.locator(".scroller").evaluate("el => { el.scrollTop = 0; }")
    await expect(msgs).to_have_count(132)  # the first user message, its reply and 130 more
    await expect(msgs.first).to_contain_text("hello")
    await expect(page.locator(".earlier")).to_be_hidden()
    pages = [q.url for q in requests if "/messages?" in q.url]
    assert any("latest=true" in u for u in pages)
    assert [re.search(r"before_seq=(\d+)", u).group(1) for u in pages if "before_seq" in u] == [  # type: ignore[union-attr]
        "83",
        "33",
    ]
    # live messages still arrive at the bottom
    await send(page, "still live")
    await expect(page.locator(REPLIES).last).to_contain_text("You said: still live")
    await context.close()


async def test_settings_edit_the_compaction_threshold(ui: UI) -> None:
    token = await ui.token_for("erin")
    context, page = await ui.signed_in(token)
    await page.click("nav >> text=Settings")
    await expect(page.locator("#threshold-current")).to_contain_text("Not set")
    await page.fill("#threshold", "55")
    await page.click("text=Save")
    await expect(page.locator(".alert-ok")).to_have_text("Saved.")
    await expect(page.locator("#threshold-current")).to_contain_text("55%")
    await ui.shot(page, "settings")
    me = await ui.server.client.get(
        "/api/v1/me/context", headers={"Authorization": f"Bearer {token}"}
    )
    assert me.json() == {"compaction_threshold": 0.55}
    await page.reload()
    await expect(page.locator("#threshold")).to_have_value("55")
    # out of bounds: the server's typed 400 is shown, nothing changes
    await page.fill("#threshold", "150")
    await page.click("text=Save")
    await expect(page.locator(".alert-error")).to_contain_text("invalid_input")
    await expect(page.locator("#threshold-current")).to_contain_text("55%")
    await page.click("button[data-action=unset-threshold]")
    await expect(page.locator("#threshold-current")).to_contain_text("Not set")
    await expect(page.locator("#threshold")).to_have_value("")
    # it is the user's own: the admin's setting is untouched
    admin = await ui.server.client.get("/api/v1/me/context")
    assert admin.json() == {"compaction_threshold": None}
    await context.close()
