"""Schemathesis over every operation of the OpenAPI document (docs/security.md).

A real server (uvicorn on loopback, SQLite) with some data in it — a template, a member's
workspace and chat — is fuzzed twice, authenticated as a member and as the admin, with a
fixed seed and a bounded number of examples per operation. Checks: no server error, no
status the document does not list, every body matches its documented schema and content
type. Operations are taken from the document itself, so routes added later are covered.

Chat workers and the provisioner are off: the run tests the API, not the chat model or
the workspace backend (a created chat stays pending, a build stays queued).

A live chat stream (or a followed log of a queued build) never ends by design, so each
request to one would wait for the request timeout: the operations that can stream run in
a separate pass that has no operation producing ids (they get their 4xx answers checked;
live streams are covered by the chat and workspace integration tests). The watch of one's
own chats (``/api/v1/me/chats/stream``) takes no input and answers every valid token with an
endless stream, so it is left out; tests/integration/chats/test_chat_watch_and_paging.py
holds its checks (401 without a valid token, nothing of another member's chats, ends on
revocation)."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import pytest

from support.server import fast_settings, running_server

SEED = 20261204
MAX_EXAMPLES = 25
RUN_TIMEOUT_S = 150.0
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
    ]
)

pytestmark = pytest.mark.timeout(2 * RUN_TIMEOUT_S + 60)


def _schemathesis() -> Path:
    exe = Path(sys.executable).with_name("schemathesis")
    if not exe.exists():
        pytest.fail("schemathesis is not installed: make venv installs the dev extras")
    return exe


STREAMS = "/stream$|/logs$"  # the operations that can answer with an endless event stream
WATCH = "^/api/v1/me/chats/stream$"  # always endless for a valid token (see above)
OWN_WORKSPACE = "^/api/v1/workspaces/[{]ref[}]"


async def _run(
    url: str, token: str, report: Path, *select: str, config: str | None = None
) -> tuple[int, str]:
    config_args: list[str] = []
    if config is not None:
        path = report.with_suffix(".toml")
        path.write_text(config)
        config_args = ["--config-file", str(path)]
    proc = await asyncio.create_subprocess_exec(
        str(_schemathesis()),
        *config_args,
        "run",
        f"{url}/openapi.json",
        "--checks",
        CHECKS,
        "--seed",
        str(SEED),
        "--max-examples",
        str(MAX_EXAMPLES),
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--generation-database",
        "none",
        "--workers",
        "1",
        "--request-timeout",
        "20",
        "--no-color",
        "--report",
        "junit",
        "--report-junit-path",
        str(report),
        *select,
        "-H",
        f"Authorization: Bearer {token}",
        cwd=report.parent,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), RUN_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"schemathesis did not finish within {RUN_TIMEOUT_S:g}s") from None
    return proc.returncode or 0, out.decode(errors="replace")


async def test_schemathesis_member_and_admin(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path, run_chatd=False, run_provisioner=False)
    async with running_server(settings) as srv:
        await srv.push_template()
        member = await srv.user_client("member")
        async with member:
            r = await member.post(
                "/api/v1/workspaces", json={"template": "python", "name": "fuzzed"}
            )
            assert r.status_code == 201, r.text
            r = await member.post("/api/v1/chats", json={"content": "hello"})
            assert r.status_code == 201, r.text
            member_token = member.headers["authorization"].removeprefix("Bearer ")
        passes: dict[str, tuple[tuple[str, ...], str | None]] = {
            "api": (("--exclude-path-regex", STREAMS), None),
            "streams": (("--include-path-regex", STREAMS, "--exclude-path-regex", WATCH), None),
            # The member's own workspace, so the {ref} operations get past their 404. Not
            # rebuild (it waits for a build, and no provisioner runs) nor the logs (a
            # queued build's log can be followed forever).
            "own-workspace": (
                ("--include-path-regex", OWN_WORKSPACE, "--exclude-path-regex", "rebuild|logs"),
                '[parameters]\n"path.ref" = "fuzzed"\n',
            ),
        }
        for role, token in (("member", member_token), ("admin", srv.token)):
            for name, (select, config) in passes.items():
                if name == "own-workspace" and role != "member":
                    continue
                started = time.monotonic()
                report = tmp_path / f"{role}-{name}.xml"
                code, out = await _run(srv.url, token, report, *select, config=config)
                took = time.monotonic() - started
                summary = out[out.find("Test Phases:") :]
                print(f"schemathesis as {role} ({name}): exit {code} in {took:.1f}s\n{summary}")
                assert code == 0, f"schemathesis as {role} ({name}) found problems:\n{out[-20000:]}"
