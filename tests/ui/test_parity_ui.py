"""Issue #14 in the browser: message edit (the chat reruns), usage per chat and for me,
automatic titles arriving live, and images as message parts (attached in the composer,
shown only from their bytes through blob: URLs of an allowed image type; an image part
carrying HTML or script runs nothing)."""

from __future__ import annotations

import asyncio
import base64
import uuid

import pytest
from playwright.async_api import expect
from test_chat_view import REPLIES, assert_nothing_ran, new_chat, send
from ui_env import UI

pytestmark = pytest.mark.asyncio(loop_scope="session")

XSS_EDIT = '<img src=x onerror="window.__xss=41"> [e](javascript:window.__xss=42) edited'
# a 1×1 PNG
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


def b64(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode()


async def test_image_parts_carrying_html_or_script_run_nothing(ui: UI) -> None:
    """Attack: image parts written straight into the history (past any API check) with HTML,
    SVG script, a javascript: "data" and markup in the media type."""
    r = await ui.server.client.post("/api/v1/chats", json={"content": "images"})
    chat_id = r.json()["id"]
    html = '<script>window.__xss=31</script><img src=x onerror="window.__xss=32">'
    svg = (
        '<svg xmlns="http://www.w3.org/2000/svg" onload="window.__xss=33">'
        "<script>window.__xss=34</script></svg>"
    )
    parts = [
        {"type": "text", "text": "look"},
        {"type": "image", "media_type": "image/png", "data": b64(PNG)},
        {"type": "image", "media_type": "text/html", "data": b64(html)},
        {"type": "image", "media_type": "image/svg+xml", "data": b64(svg)},
        {"type": "image", "media_type": "image/png", "data": b64(html)},  # lies about its type
        {"type": "image", "media_type": "image/png", "data": "javascript:window.__xss=35"},
        {"type": "image", "media_type": '"><img src=x onerror="window.__xss=36">', "data": "AA=="},
    ]
    await ui.server.graph.chats.append_message(uuid.UUID(chat_id), role="user", parts=parts)
    context, page = await ui.signed_in()
    await page.goto(f"{ui.url}/ui/#/chats/{chat_id}")
    message = page.locator(".messages .msg-user").last
    await expect(message).to_contain_text("look")
    images = message.locator("img.msg-image")
    await expect(images).to_have_count(2)  # the real PNG, and the PNG that is really HTML
    for src in await images.evaluate_all("els => els.map(e => e.getAttribute('src'))"):
        assert src.startswith("blob:"), src
    # the real one decodes; the lying one is just a broken image
    assert await images.first.evaluate("img => img.decode().then(() => img.naturalWidth)") == 1
    refused = message.locator(".attachment-refused")
    await expect(refused).to_have_count(4)
    await expect(refused.nth(0)).to_contain_text("text/html is not an image type")
    await expect(refused.nth(2)).to_contain_text("not base64")
    await expect(refused.nth(3)).to_contain_text('"><img src=x onerror=')
    assert await page.locator("iframe, object, embed, svg script").count() == 0
    await page.wait_for_timeout(300)  # let any load/error handlers that exist fire
    await assert_nothing_ran(page)
    await context.close()


async def test_edit_a_user_message_reruns_the_chat(ui: UI) -> None:
    context, page = await ui.signed_in()
    chat_id = await new_chat(page, ui, "first version")
    await expect(page.locator(REPLIES).last).to_contain_text("You said: first version")
    await send(page, "a later message")
    await expect(page.locator(REPLIES).last).to_contain_text("You said: a later message")
    first = page.locator(".messages .msg-user").first
    await first.locator("button[data-action=edit-message]").click()
    await expect(first.locator(".edit-text")).to_have_value("first version")
    await ui.shot(page, "chat-edit")
    await first.locator(".edit-text").fill(XSS_EDIT)
    await first.locator(".edit-text").press("Enter")
    # the later history is replaced by the rerun (the scripted model answers "xss" with markup)
    await expect(page.locator(REPLIES).last).to_contain_text("Here: <img src=x")
    await expect(page.locator(".messages .msg")).to_have_count(2)
    assert "a later message" not in await page.locator(".messages").inner_text()
    await expect(page.locator(".messages .msg-user").first).to_contain_text('<img src=x onerror="')
    # the API agrees; the replaced messages are still there on request, marked
    page_json = (await ui.server.client.get(f"/api/v1/chats/{chat_id}/messages")).json()
    assert [m["role"] for m in page_json["messages"]] == ["user", "assistant"]
    # after a reload the view shows the edited history only
    await page.reload()
    await expect(page.locator(".messages .msg")).to_have_count(2)
    # busy: the typed chat_busy, and nothing changes
    await send(page, "forever please")
    await expect(page.locator(".live")).to_contain_text("f3")
    first = page.locator(".messages .msg-user").first
    await first.locator("button[data-action=edit-message]").click()
    await first.locator(".edit-text").fill("while busy")
    await first.locator(".edit-text").press("Enter")
    await expect(first.locator(".alert-error")).to_contain_text("chat_busy")
    await page.click("button[data-action=interrupt]")
    await expect(page.locator(".chat-status")).to_have_text("idle")
    await assert_nothing_ran(page)
    await context.close()


async def test_usage_per_chat_and_for_me(ui: UI) -> None:
    token = await ui.token_for("hana")
    auth = {"Authorization": f"Bearer {token}"}
    context, page = await ui.signed_in(token)
    chat_id = await new_chat(page, ui, "count my tokens")
    await expect(page.locator(REPLIES).last).to_contain_text("You said: count my tokens")
    usage = (await ui.server.client.get(f"/api/v1/chats/{chat_id}/usage", headers=auth)).json()
    assert usage["input_tokens"] > 0, usage
    expected = f"{usage['input_tokens']:,} in / {usage['output_tokens']:,} out tokens"
    await expect(page.locator(".chat-usage")).to_contain_text(expected)
    await page.click("nav >> text=Settings")
    mine = (await ui.server.client.get("/api/v1/users/me/usage", headers=auth)).json()
    card = page.locator("#my-usage")
    await expect(card).to_contain_text(f"{mine['input_tokens']:,}")
    await expect(card).to_contain_text(f"{mine['output_tokens']:,}")
    await expect(card).to_contain_text("none")  # no limit set
    await ui.shot(page, "settings")
    await context.close()


async def test_attach_an_image_in_the_composer(ui: UI) -> None:
    context, page = await ui.signed_in()
    await new_chat(page, ui, "an image follows")
    await expect(page.locator(REPLIES).last).to_contain_text("You said: an image follows")
    # not an image: refused before anything is sent
    await page.set_input_files(
        "#attach", files=[{"name": "x.png", "mimeType": "text/html", "buffer": b"<b>x</b>"}]
    )
    await expect(page.locator(".composer .alert-error")).to_contain_text("only PNG, JPEG")
    await page.set_input_files(
        "#attach", files=[{"name": "dot.png", "mimeType": "image/png", "buffer": PNG}]
    )
    await expect(page.locator(".attachment")).to_contain_text("dot.png")
    await page.fill("#composer", "what is in this picture?")
    await page.press("#composer", "Enter")
    mine = page.locator(".messages .msg-user").last
    await expect(mine).to_contain_text("what is in this picture?")
    image = mine.locator("img.msg-image")
    await expect(image).to_have_count(1)
    assert (await image.get_attribute("src") or "").startswith("blob:")
    assert await image.evaluate("img => img.decode().then(() => img.naturalWidth)") == 1
    await expect(page.locator(".attachment")).to_have_count(0)
    await expect(page.locator(REPLIES).last).to_contain_text("You said:")
    # a PNG that is really HTML is the server's typed error, shown in the composer
    await page.set_input_files(
        "#attach", files=[{"name": "fake.png", "mimeType": "image/png", "buffer": b"<html>"}]
    )
    await page.fill("#composer", "fake")
    await page.press("#composer", "Enter")
    await expect(page.locator(".composer .alert-error")).to_contain_text("invalid_image")
    await assert_nothing_ran(page)
    await context.close()


async def test_automatic_title_arrives_live_in_the_chat_and_the_list(ui: UI) -> None:
    context, page = await ui.signed_in()
    listing = await context.new_page()
    await listing.goto(ui.url + "/ui/#/chats")
    await expect(listing.locator(".topbar nav")).to_be_visible()
    chat_id = await new_chat(page, ui, "name this chat for me")
    await expect(page.locator(REPLIES).last).to_contain_text("You said: name this chat")
    title = ""
    for _ in range(200):  # the title is written in the background after the first turn
        chat = (await ui.server.client.get(f"/api/v1/chats/{chat_id}")).json()
        if chat["title_source"] == "auto":
            title = chat["title"]
            break
        await asyncio.sleep(0.05)
    assert title, "no automatic title"
    # the scripted model's answer, not the first message's title the chat started with
    assert title != "name this chat for me", title
    # neither page was reloaded: the chat view from its stream, the list from the watch
    await expect(page.locator(".chat-title")).to_have_text(title)
    row = listing.locator(f".chat-row[data-chat-id='{chat_id}'] .chat-row-title")
    await expect(row).to_have_text(title)
    await context.close()
