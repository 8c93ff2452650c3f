"""The chat view in a real browser: live streaming, tool calls, resume after a reload,
interrupt, queue, untrusted text shown as text, and another member's chat out of reach."""

from __future__ import annotations

import re
import time
import uuid

import pytest
from playwright.async_api import Page, Request, expect
from ui_env import UI, CuttableProxy

from support.ui_models import SLOW_WORDS

pytestmark = pytest.mark.asyncio(loop_scope="session")
REPLIES = ".messages .msg-assistant"

XSS_USER = '<img src=x onerror="window.__xss=1"> [click](javascript:window.__xss=2) xss please'


async def new_chat(page: Page, ui: UI, text: str, *, base_url: str | None = None) -> str:
    await page.goto((base_url or ui.url) + "/ui/#/chats")
    await page.fill("#new-chat", text)
    await page.press("#new-chat", "Enter")
    await page.wait_for_url(re.compile(r"#/chats/[0-9a-f-]{36}$"))
    return page.url.rsplit("/", 1)[-1]


async def send(page: Page, text: str) -> None:
    await page.fill("#composer", text)
    await page.press("#composer", "Enter")


async def assert_nothing_ran(page: Page) -> None:
    assert await page.evaluate("window.__xss") is None
    # rendered as text: no element came out of the payloads (CSP aside)
    assert await page.locator('img[src="x"]').count() == 0
    assert await page.locator('a[href^="javascript"]').count() == 0
    assert page.js_errors == []  # type: ignore[attr-defined]


async def test_reply_streams_in_with_a_tool_call_and_its_result(ui: UI) -> None:
    context, page = await ui.signed_in()
    await new_chat(page, ui, "show me the templates")
    card = page.locator(".tool[data-tool=list_templates]")
    await expect(card).to_be_visible()
    await expect(page.locator(REPLIES).last).to_contain_text("Those are the templates.")
    await expect(card.locator(".tool-state")).to_have_text("ok")
    await card.locator("summary").click()
    await expect(card.locator(".tool-result")).to_contain_text("python")
    await expect(page.locator(".chat-status")).to_have_text("idle")
    await ui.shot(page, "chat-tool-call")
    # a slow reply is seen while it streams, then exactly once when persisted
    await send(page, "slow please")
    live = page.locator(".live")
    await expect(live).to_contain_text("w03")
    assert "end." not in await live.inner_text()  # still streaming
    await expect(page.locator(REPLIES).last).to_contain_text("w39 end.")
    text = await page.locator(".messages").inner_text()
    assert text.count("w20") == 1
    await context.close()


async def test_reload_mid_turn_resumes_without_duplicate_or_lost_text(ui: UI) -> None:
    context, page = await ui.signed_in()
    await new_chat(page, ui, "slow reply please")
    await expect(page.locator(".live")).to_contain_text("w08")
    await page.reload()
    # after the reload the partial reply is back (from the stream's buffer) and grows on
    live = page.locator(".live")
    await expect(live).to_contain_text("w12")
    assert "end." not in await live.inner_text(), "the turn ended before the reload test ran"
    await ui.shot(page, "chat-streaming")
    final = page.locator(REPLIES).last
    await expect(final).to_contain_text("end.")
    words = re.findall(r"w\d\d", await page.locator(".scroller").inner_text())
    assert words == [f"w{i:02d}" for i in range(SLOW_WORDS)]  # each once, in order
    await context.close()


async def test_queue_while_busy_then_interrupt(ui: UI) -> None:
    context, page = await ui.signed_in()
    await new_chat(page, ui, "forever please")
    await expect(page.locator(".live")).to_contain_text("f3")
    await expect(page.locator(".chat-status")).to_have_text("working")
    # busy: the default is to queue; the queue is shown
    await send(page, "queued hello")
    await expect(page.locator(".queue-list")).to_contain_text("queued hello")
    await ui.shot(page, "chat-queue")
    await page.click("button[data-action=interrupt]")
    # the partial reply is kept, then the queued message runs
    await expect(page.locator(REPLIES).first).to_contain_text("f3")
    await expect(page.locator(REPLIES).last).to_contain_text("You said: queued hello")
    await expect(page.locator(".queue")).to_be_hidden()
    await expect(page.locator(".chat-status")).to_have_text("idle")
    assert "f499" not in await page.locator(".messages").inner_text()
    await context.close()


async def test_xss_in_user_message_model_reply_and_tool_output_stays_text(ui: UI) -> None:
    context, page = await ui.signed_in()
    await new_chat(page, ui, XSS_USER)
    mine = page.locator(".messages .msg-user").first
    await expect(mine).to_contain_text('<img src=x onerror="window')
    await expect(page.locator(REPLIES).last).to_contain_text("Here: <img src=x")
    bold = page.locator(".messages .msg-assistant strong")
    await expect(bold).to_have_text("bold")  # Markdown still renders
    await expect(page.locator(REPLIES).last).to_contain_text(
        "[click me](javascript:window.__xss=2)"
    )
    await send(page, "templates again")
    card = page.locator(".tool[data-tool=list_templates]")
    await expect(card.locator(".tool-state")).to_have_text("ok")
    await card.locator("summary").click()
    await expect(card.locator(".tool-result")).to_contain_text('onerror=\\"window.__xss=3')
    await assert_nothing_ran(page)
    # the chat list shows the title as text too
    await page.goto(ui.url + "/ui/#/chats")
    await expect(page.locator(".chat-row").first).to_contain_text("<img")
    await assert_nothing_ran(page)
    await context.close()


async def test_member_cannot_open_another_members_chat_by_url(ui: UI) -> None:
    alice = await ui.token_for("alice")
    r = await ui.server.client.post(
        "/api/v1/chats",
        json={"content": "alice's secret plan"},
        headers={"Authorization": f"Bearer {alice}"},
    )
    chat_id = r.json()["id"]
    bob = await ui.token_for("bob")
    context, page = await ui.signed_in(bob)
    await page.goto(f"{ui.url}/ui/#/chats/{chat_id}")
    await expect(page.locator(".alert-error")).to_contain_text("not_found")
    assert "secret plan" not in await page.content()
    # nor through the list
    await page.goto(ui.url + "/ui/#/chats")
    await expect(page.locator(".empty")).to_be_visible()
    assert "secret plan" not in await page.content()
    await context.close()


async def test_thousand_message_chat_is_usable_within_a_second(ui: UI) -> None:
    r = await ui.server.client.post("/api/v1/chats", json={"content": "hello"})
    chat_id = r.json()["id"]
    # the first turn's reply must not land after the history appended below: a statement
    # on SQLite no longer yields to the event loop, so the turn would run after the loop
    await ui.wait_idle(chat_id)
    store = ui.server.graph.chats
    cid = uuid.UUID(chat_id)
    for i in range(1000):
        role = "user" if i % 2 == 0 else "assistant"
        await store.append_message(
            cid, role=role, parts=[{"type": "text", "text": f"message {i} " + "lorem " * 30}]
        )
    context, page = await ui.signed_in()
    started = time.monotonic()
    await page.goto(f"{ui.url}/ui/#/chats/{chat_id}")
    await expect(page.locator(".messages .msg").last).to_contain_text("message 999")
    elapsed = time.monotonic() - started
    print(f"\n1,000-message chat usable after {elapsed:.2f} s")
    assert await page.locator(".messages .msg").count() <= 60  # windowed
    # the earlier history is one click away
    await page.click("text=Show earlier messages")
    await expect(page.locator(".messages .msg")).to_have_count(100)
    # Target 1 s (typically ~0.5 s here). The ceiling is generous because the machine is
    # shared; the windowing assertion above is what catches a view rendering everything.
    assert elapsed < 2.5
    await context.close()


async def test_connection_loss_resumes_with_last_event_id(ui: UI) -> None:
    async with CuttableProxy(ui.server.graph.settings.port).running() as proxy:
        base = f"http://127.0.0.1:{proxy.port}"
        context, page = await ui.signed_in(base_url=base)
        requests: list[Request] = []
        chat_stream = re.compile(r"/api/v1/chats/[0-9a-f-]{36}/stream")  # not the list's watch
        page.on("request", lambda r: requests.append(r) if chat_stream.search(r.url) else None)
        await new_chat(page, ui, "slow again please", base_url=base)
        await expect(page.locator(".live")).to_contain_text("w05")
        assert proxy.cut() > 0  # the connection drops mid-turn
        await expect(page.locator(REPLIES).last).to_contain_text("end.", timeout=20_000)
        # EventSource reconnected by itself, sending the last id it had seen
        streams = [await r.all_headers() for r in requests]
        assert len(streams) >= 2, streams
        assert all(re.fullmatch(r"\d+\.\d+", h.get("last-event-id", "")) for h in streams[1:])
        words = re.findall(r"w\d\d", await page.locator(".scroller").inner_text())
        assert words == [f"w{i:02d}" for i in range(SLOW_WORDS)]
        await context.close()


async def test_subagent_linked_and_archive(ui: UI) -> None:
    context, page = await ui.signed_in()
    await new_chat(page, ui, "delegate this")
    link = page.locator(".subagents a")
    await expect(link).to_have_text("helper")
    await expect(page.locator(REPLIES).last).to_contain_text("Delegated.")
    await link.click()
    await expect(page.locator(".chat-meta")).to_contain_text("subagent of")
    await page.click(".chat-meta a")
    await expect(page.locator(".chat-title")).to_have_text("delegate this")
    await page.click("text=Archive")
    await expect(page.locator("text=Unarchive")).to_be_visible()
    await page.click("nav >> text=Chats")
    await expect(page.locator(".chat-row, .chat-list .empty").first).to_be_visible()
    assert "delegate this" not in await page.locator(".chat-list").inner_text()
    await page.check("#show-archived")
    await expect(page.locator(".chat-list")).to_contain_text("delegate this")
    await context.close()
