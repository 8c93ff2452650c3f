"""Browser tests of the web UI: Playwright (async API) driving the Debian ``chromium``
against one real tether server (uvicorn, SQLite, real chat worker, provisioner and local
backend) shared by the session; each test gets a fresh browser context (its own cookies).

The model is ``tests/support/ui_models.py`` (scripted, keyword-picked). A missing browser
skips these tests, except under ``CI=true`` where it fails loudly. Screenshots go to
``$TETHER_UI_SCREENSHOTS`` or a session temporary directory (printed at the end).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from ui_env import CHROMIUM, UI, XSS_TEMPLATE, Browser, async_playwright, require_browser

from support.server import fast_settings, running_server


@pytest.fixture(scope="session")
def ui_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("webui")
    shots = Path(os.environ.get("TETHER_UI_SCREENSHOTS") or tmp / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    return tmp, shots


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def ui(ui_dirs: tuple[Path, Path]) -> AsyncIterator[UI]:
    require_browser()
    tmp, shots = ui_dirs
    models = [
        {
            "name": "scripted",
            "provider": "python",
            "model": "support.ui_models:MODEL",
            "images": True,  # users may attach images (chatd/images.py)
        }
    ]
    settings = fast_settings(tmp, models_json=json.dumps({"default": "scripted", "models": models}))
    async with running_server(settings) as server:
        await server.push_template()
        await server.push_template(XSS_TEMPLATE)
        assert async_playwright is not None
        async with async_playwright() as pw:
            browser: Browser = await pw.chromium.launch(
                executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
            )
            try:
                yield UI(server, browser, shots)
            finally:
                await browser.close()
    print(f"\nweb UI screenshots: {shots}")
