"""The web UI: plain HTML/JS/CSS shipped in the package (``static/``), served by the API
server on the same origin. It talks only to the public API (:mod:`tether.api.websession`
signs the browser in). Every UI response carries a strict Content-Security-Policy: no
inline script, nothing from another origin."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response

from tether.errors import NotFound

router = APIRouter(include_in_schema=False)

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}


def _asset(name: str) -> Response:
    static = resources.files("tether.api.ui").joinpath("static")
    suffix = "." + name.rsplit(".", 1)[-1] if "." in name else ""
    # only plain file names of known types: no path walks out of static/
    if "/" in name or "\\" in name or name.startswith(".") or suffix not in _TYPES:
        raise NotFound("no such file")
    path = static.joinpath(name)
    if not path.is_file():
        raise NotFound("no such file")
    return Response(path.read_bytes(), media_type=_TYPES[suffix], headers=SECURITY_HEADERS)


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse("/ui/", status_code=307)


@router.get("/ui")
async def ui_no_slash() -> RedirectResponse:
    return RedirectResponse("/ui/", status_code=307)


@router.get("/ui/")
async def index() -> Response:
    return _asset("index.html")


@router.get("/ui/static/{name}")
async def static(name: str) -> Response:
    return _asset(name)
