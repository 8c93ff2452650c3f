"""Issue #14 in the browser: images as message parts (shown only from their bytes through
blob: URLs of an allowed image type; an image part carrying HTML or script runs nothing)."""

from __future__ import annotations

import base64
import uuid

import pytest
from playwright.async_api import expect
from test_chat_view import assert_nothing_ran
from ui_env import UI

pytestmark = pytest.mark.asyncio(loop_scope="session")

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
