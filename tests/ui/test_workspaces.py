"""Workspaces in a real browser: the form generated from the template's typed parameters,
the live build log, stop/start, and a chat on a stopped workspace showing the typed error
with a working "start" action."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import expect
from ui_env import UI

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_create_workspace_from_the_form_and_watch_its_build_log(ui: UI) -> None:
    context, page = await ui.signed_in()
    await page.goto(ui.url + "/ui/#/workspaces/new")
    await page.select_option("#ws-template", "python")
    # typed parameters: options become a select, the regex guards the text field
    await expect(page.locator("#param-python_version")).to_have_value("3.12")
    await page.select_option("#param-python_version", "3.13")
    await page.fill("#ws-name", "webui")
    await page.fill("#param-repo_name", "Bad Name")  # fails the template's regex
    await page.click("text=Create workspace")
    assert not await page.evaluate("document.querySelector('form').checkValidity()")
    assert "#/workspaces/new" in page.url  # the browser refused it before any request
    await page.fill("#param-repo_name", "demo-app")
    await ui.shot(page, "workspace-new")
    await page.click("text=Create workspace")
    await page.wait_for_url(re.compile(r"#/workspaces/[0-9a-f-]{36}$"))
    panel = page.locator(".ws-panel")
    await expect(panel.locator(".build-log")).not_to_be_empty()
    await expect(panel.locator(".ws-state")).to_contain_text("running", timeout=30_000)
    await expect(panel.locator(".badge[data-status=connected]")).to_be_visible(timeout=15_000)
    await ui.shot(page, "workspace")
    # the startup script's log is shown too; then stop it from the page
    await page.click("button[data-action=stop]")
    await expect(panel.locator(".ws-state")).to_contain_text("stopped", timeout=30_000)
    await expect(panel.locator(".build-log")).to_contain_text(re.compile(r"\S"))
    await page.goto(ui.url + "/ui/#/workspaces")
    await expect(page.locator("tr[data-workspace=webui]")).to_contain_text("stopped")
    await ui.shot(page, "workspaces")
    await context.close()


async def test_stopped_workspace_shows_typed_error_and_start_works(ui: UI) -> None:
    client = ui.server.client
    r = await client.post("/api/v1/workspaces", json={"template": "python", "name": "parked"})
    ws = r.json()
    await ui.server.wait_ready(ws["id"], timeout=30)
    r = await client.post(f"/api/v1/workspaces/{ws['id']}/stop")
    assert r.status_code < 300, r.text
    for _ in range(300):
        state = (await client.get(f"/api/v1/workspaces/{ws['id']}")).json()["state"]
        if state == "stopped":
            break
        await page_sleep()
    r = await client.post("/api/v1/chats", json={"content": "run it", "workspace_id": ws["id"]})
    chat_id = r.json()["id"]
    context, page = await ui.signed_in()
    await page.goto(f"{ui.url}/ui/#/chats/{chat_id}")
    card = page.locator(".tool[data-tool=execute]")
    await expect(card.locator(".alert-error")).to_contain_text("workspace_stopped")
    await expect(card.locator(".alert-error")).to_contain_text("start_workspace")
    side = page.locator(".chat-side .ws-panel")
    await expect(side.locator(".ws-state")).to_contain_text("stopped")
    await ui.shot(page, "chat-workspace-stopped")
    await card.locator("button[data-action=start-workspace]").click()
    await expect(side.locator(".ws-state")).to_contain_text("running", timeout=30_000)
    await expect(side.locator(".build-log")).not_to_be_empty()
    await expect(side.locator(".badge[data-status=ready]")).to_be_visible(timeout=15_000)
    # the chat works on the started workspace; a long output is clipped until asked for
    await page.fill("#composer", "a long listing please")
    await page.press("#composer", "Enter")
    cards = page.locator(".tool[data-tool=execute]")
    await expect(cards.last.locator(".tool-state")).to_have_text("ok", timeout=20_000)
    await cards.last.locator("summary").click()
    output = cards.last.locator("pre.output")
    await expect(cards.last.locator(".tool-result")).to_contain_text("exit code 0")
    assert "\n2000" not in await output.inner_text()
    await cards.last.locator("text=Show more").click()
    await expect(output).to_contain_text("1999\n2000")
    await ui.shot(page, "chat-workspace")
    await context.close()


async def test_workspace_created_by_the_model_appears_with_its_build_log(ui: UI) -> None:
    context, page = await ui.signed_in()
    await page.goto(ui.url + "/ui/#/chats")
    await page.fill("#new-chat", "build me a workspace")
    await page.press("#new-chat", "Enter")
    side = page.locator(".chat-side .ws-panel")
    await expect(side.locator(".ws-name")).to_have_text("agent-ws", timeout=15_000)
    await expect(side.locator(".build-log")).to_contain_text("start build #1")
    await expect(page.locator(".messages .msg-assistant").last).to_contain_text(
        "Workspace ready.", timeout=30_000
    )
    await expect(side.locator(".ws-state")).to_contain_text("running")
    await ui.shot(page, "chat-agent-workspace")
    await context.close()


async def page_sleep() -> None:
    import asyncio

    await asyncio.sleep(0.1)
