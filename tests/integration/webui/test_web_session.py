"""The web UI's session boundary, attacked through the real HTTP server: cookie sessions
need the CSRF header to change anything, sign out ends the session server-side, sign-in
links work once and only for signing in, a cross-site sign-in is refused, and the UI is
served with a strict CSP and no path out of its static directory."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path

import httpx
import pytest

from support.server import RunningServer, fast_settings, running_server
from tether.api.websession import COOKIE, csrf_token

# the ways a page turns a string into markup or code; the UI builds text nodes only
HTML_SINKS = re.compile(
    r"\.(innerHTML|outerHTML)\s*[+]?=|insertAdjacentHTML\(|\beval\(|new Function\(|document\.write"
)


@pytest.fixture
async def srv(tmp_path: Path) -> AsyncIterator[RunningServer]:
    settings = fast_settings(tmp_path, run_chatd=False, run_provisioner=False)
    async with running_server(settings) as server:
        yield server


async def sign_in(srv: RunningServer, token: str | None = None) -> tuple[httpx.AsyncClient, str]:
    """A cookie-only client (no Authorization header) and its CSRF token."""
    async with httpx.AsyncClient(base_url=srv.url, timeout=10) as c:
        r = await c.post("/api/v1/session", json={"token": token or srv.token})
    assert r.status_code == 201, r.text
    browser = httpx.AsyncClient(base_url=srv.url, timeout=10, cookies=r.cookies)
    return browser, r.json()["csrf_token"]


async def test_session_cookie_is_httponly_strict_and_hidden_from_the_body(
    srv: RunningServer,
) -> None:
    r = await httpx.AsyncClient(base_url=srv.url).post("/api/v1/session", json={"token": srv.token})
    header = r.headers["set-cookie"].lower()
    assert "httponly" in header and "samesite=strict" in header and "path=/" in header
    secret = r.cookies[COOKIE]
    assert secret != srv.token  # a session token of its own, revocable alone
    assert secret not in r.text
    assert r.json()["csrf_token"] == csrf_token(secret)


async def test_cookie_requests_that_change_things_need_the_csrf_token(srv: RunningServer) -> None:
    browser, csrf = await sign_in(srv)
    async with browser:
        assert (await browser.get("/api/v1/users/me")).status_code == 200  # reads need none
        body = {"name": "from-the-web"}
        r = await browser.post("/api/v1/users/me/tokens", json=body)
        assert r.status_code == 403 and r.json()["code"] == "forbidden"
        r = await browser.post(
            "/api/v1/users/me/tokens", json=body, headers={"X-CSRF-Token": "0" * 64}
        )
        assert r.status_code == 403
        r = await browser.post("/api/v1/users/me/tokens", json=body, headers={"X-CSRF-Token": csrf})
        assert r.status_code == 201
        # the same attack on sign out: refused, the session lives on
        assert (await browser.delete("/api/v1/session")).status_code == 403
        assert (await browser.get("/api/v1/session")).status_code == 200


async def test_sign_out_ends_the_session_on_the_server(srv: RunningServer) -> None:
    browser, csrf = await sign_in(srv)
    secret = browser.cookies[COOKIE]
    async with browser:
        r = await browser.delete("/api/v1/session", headers={"X-CSRF-Token": csrf})
        assert r.status_code == 204
    # replaying the old cookie (a copy kept by an attacker) gets nothing
    replay = httpx.AsyncClient(base_url=srv.url, cookies={COOKIE: secret})
    async with replay:
        assert (await replay.get("/api/v1/users/me")).status_code == 401
    # the user's own API token is untouched
    assert (await srv.client.get("/api/v1/users/me")).status_code == 200


async def test_sign_in_link_works_once_and_only_to_sign_in(srv: RunningServer) -> None:
    r = await srv.client.post("/api/v1/session/links")
    assert r.status_code == 201
    link = r.json()["path"]
    secret = link.split("token=", 1)[1]
    assert link.startswith("/ui/#")  # a fragment: never sent to a server, never logged
    as_bearer = {"Authorization": f"Bearer {secret}"}
    async with httpx.AsyncClient(base_url=srv.url, headers=as_bearer) as thief:
        assert (await thief.get("/api/v1/users/me")).status_code == 401
    browser, _ = await sign_in(srv, secret)
    async with browser:
        assert (await browser.get("/api/v1/users/me")).json()["name"] == "admin"
    async with httpx.AsyncClient(base_url=srv.url) as again:
        r = await again.post("/api/v1/session", json={"token": secret})
        assert r.status_code == 401


async def test_cross_site_sign_in_is_refused(srv: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=srv.url) as c:
        r = await c.post(
            "/api/v1/session",
            json={"token": srv.token},
            headers={"Origin": "https://evil.example"},
        )
        assert r.status_code == 403
        assert COOKIE not in r.cookies
        bad = await c.post("/api/v1/session", json={"token": "tok_nope"})
        assert bad.status_code == 401


async def test_ui_is_served_with_a_strict_csp_and_no_path_out(srv: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=srv.url) as c:
        r = await c.get("/", follow_redirects=True)
        assert r.status_code == 200 and "text/html" in r.headers["content-type"]
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp
        assert r.headers["x-content-type-options"] == "nosniff"
        js = await c.get("/ui/static/app.js")
        assert js.status_code == 200 and "javascript" in js.headers["content-type"]
        for attempt in (
            "/ui/static/..%2F__init__.py",
            "/ui/static/%2e%2e%2f..%2fsettings.py",
            "/ui/static/.hidden.js",
            "/ui/static/__init__.py",
            "/ui/static/nope.js",
        ):
            assert (await c.get(attempt)).status_code == 404, attempt


def test_static_files_ship_in_the_package_without_inline_script_or_html_injection() -> None:
    static = resources.files("tether.api.ui").joinpath("static")
    names = {p.name for p in static.iterdir()}
    assert {"index.html", "app.js", "core.js", "chat.js", "md.js", "style.css"} <= names
    html = static.joinpath("index.html").read_text()
    assert "<script>" not in html and "http" not in html  # no inline script, no CDN
    for name in names:
        if name.endswith(".js"):
            text = static.joinpath(name).read_text()
            found = HTML_SINKS.search(text)
            assert found is None, f"{name} uses {found.group(0) if found else ''}"


async def test_tether_ui_prints_a_working_one_time_link(srv: RunningServer) -> None:
    tether = Path(sys.executable).with_name("tether")
    env = {**os.environ, "TETHER_URL": srv.url, "TETHER_TOKEN": srv.token}
    proc = await asyncio.create_subprocess_exec(
        str(tether), "ui", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    link = out.decode().strip().splitlines()[-1]
    assert link.startswith(srv.url + "/ui/#/signin?token=")
    browser, _ = await sign_in(srv, link.split("token=", 1)[1])
    await browser.aclose()
