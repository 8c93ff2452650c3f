"""The other pages in a real browser: templates (list, view, admin push), admin pages for
tokens, users and models, keyboard-only sign-in, and the chat view at phone width."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import expect
from ui_env import UI

pytestmark = pytest.mark.asyncio(loop_scope="session")

NEW_TEMPLATE = """\
name: scratch
display_name: Scratch pad
description: An empty workspace pushed from the web UI.
backend: local
parameters:
  - name: size
    type: number
    default: "2"
    validation: {min: 1, max: 8}
agents:
  - name: main
    chat: true
"""


async def test_templates_list_view_and_admin_push(ui: UI) -> None:
    context, page = await ui.signed_in()
    await page.wait_for_selector(".chat-row, .empty")
    await ui.shot(page, "chats")
    await page.click("nav >> text=Templates")
    await expect(page.locator(".card-link")).to_have_count(2)
    await page.fill("#template-source", NEW_TEMPLATE)
    await page.click("text=Push template")
    await page.wait_for_url(re.compile(r"#/templates/scratch$"))
    await expect(page.locator("h1")).to_have_text("Scratch pad")
    await expect(page.locator("table")).to_contain_text("number")
    await page.click("nav >> text=Templates")
    await expect(page.locator(".card-link")).to_have_count(3)
    await ui.shot(page, "templates")
    # a bad template is a typed error on the page, not a crash
    await page.fill("#template-source", "name: [")
    await page.click("text=Push template")
    await expect(page.locator(".alert-error")).to_contain_text("invalid")
    await context.close()


async def test_admin_pages_users_tokens_models(ui: UI) -> None:
    context, page = await ui.signed_in()
    await page.goto(ui.url + "/ui/#/admin/users")
    await page.fill("#user-name", "carol")
    await page.click("text=Create user")
    await expect(page.locator(".alert-ok")).to_contain_text("Token of carol")
    await expect(page.locator("table")).to_contain_text("carol")
    await ui.shot(page, "admin-users")
    await page.goto(ui.url + "/ui/#/admin/tokens")
    await page.fill("#token-name", "laptop")
    await page.click("text=Create token")
    await expect(page.locator(".alert-ok")).to_contain_text("shown only once")
    await expect(page.locator("table")).to_contain_text("laptop")
    await page.goto(ui.url + "/ui/#/admin/models")
    await expect(page.locator("table")).to_contain_text("scripted")
    await context.close()
    # a member sees only their tokens; the admin API refuses them (403) and no tab shows
    member = await ui.token_for("dave")
    context, page = await ui.signed_in(member)
    await page.goto(ui.url + "/ui/#/admin/users")
    await expect(page.locator(".alert-error")).to_contain_text("forbidden")
    await page.click("nav >> text=Tokens")
    await expect(page.locator(".tabs")).to_have_text("API tokens")
    await context.close()


async def test_keyboard_only_sign_in_and_chat(ui: UI) -> None:
    context = await ui.browser.new_context()
    page = await context.new_page()
    await page.goto(ui.url + "/ui/")
    await page.wait_for_selector("#token:focus")  # focused on arrival
    await page.keyboard.type(ui.server.token)
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#new-chat")
    await page.focus("#new-chat")
    await page.keyboard.type("hello from the keyboard")
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#composer:focus")
    await expect(page.locator(".messages .msg-assistant").last).to_contain_text(
        "You said: hello from the keyboard"
    )
    # Shift+Enter is a new line, not a send
    await page.keyboard.type("line one")
    await page.keyboard.press("Shift+Enter")
    await page.keyboard.type("line two")
    assert await page.input_value("#composer") == "line one\nline two"
    await context.close()


async def test_phone_width(ui: UI) -> None:
    context = await ui.browser.new_context(viewport={"width": 390, "height": 844})
    page = await context.new_page()
    await page.goto(ui.url + "/ui/")
    await page.fill("#token", ui.server.token)
    await page.click("button[type=submit]")
    await page.wait_for_selector("#new-chat")
    await page.fill("#new-chat", "show me the templates on a phone")
    await page.press("#new-chat", "Enter")
    await expect(page.locator(".messages .msg-assistant").last).to_contain_text("Those are")
    # nothing wider than the screen: no sideways scrolling
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390
    await ui.shot(page, "phone-chat")
    await context.close()
