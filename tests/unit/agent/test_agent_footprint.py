"""The agent process stays light: one runs per workspace and idles most of its life, so what
it imports at start-up is its memory and its start-up time (issue #12: idle RSS ≤ 30 MB,
create → ready ≤ 0.5 s; measured by bench/agent.py and bench/workspace.py). The heavy
packages the server uses must not creep back into the agent's start-up imports."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("pydantic", "pydantic_core", "uvicorn", "starlette", "fastapi", "websockets", "mcp")
HEAVY += ("httpx", "anyio", "sqlalchemy", "importlib_metadata", "email")


def test_agent_start_up_imports_none_of_the_server_stack() -> None:
    code = (
        "import json, sys, tether.agent.main\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))
