"""The one-way import rules (docs/architecture.md §2.2) hold, and the check that enforces them
(the import-linter contracts in pyproject.toml, run by ``make lint``) fails on a forbidden
import: each case copies the package, adds one bad import and expects ``lint-imports`` to name
the broken contract."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
DEADLINE_S = 60.0  # a run takes well under a second


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    # the copy under ``tree/src`` shadows the editable install (PYTHONPATH comes first)
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(tree / "pyproject.toml"), "--no-cache"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    shutil.copytree(
        ROOT / "src" / "tether",
        tmp_path / "src" / "tether",
        ignore=shutil.ignore_patterns("__pycache__", "static"),
    )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_contracts_hold() -> None:
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert ", 0 broken" in result.stdout, result.stdout


# (file of the package, a line it must never hold, the contract that catches it)
ATTACKS = [
    ("domain/chat.py", "from tether.clock import as_utc", "domain imports nothing of tether"),
    ("db/engine.py", "import tether.chatd.service", "db imports only domain"),
    ("db/chats.py", "from tether.workspaces import status", "db imports only domain"),
    ("chatd/service.py", "import tether.api.app", "chatd and workspaces never import"),
    ("workspaces/service.py", "import tether.cli.main", "chatd and workspaces never import"),
    ("workspaces/provisioner.py", "import tether.chatd.worker", "workspaces never import chatd"),
    ("agent/app.py", "import tether.db.engine", "the agent (runs inside workspaces)"),
    ("chatd/turn/runner.py", "from tether.agent import processes", "only the agent's wire types"),
    ("llm/models.py", "import tether.chatd.context", "llm imports only errors"),
    ("observability/metrics.py", "import tether.api.auth", "observability"),
    ("sdk/client.py", "import tether.errors", "the SDK imports nothing of tether"),
    ("cli/chat.py", "import tether.db.chats", "the CLI talks to a server through the SDK"),
    ("chatd/install.py", "import tether.wiring", "only the server"),
]


@pytest.mark.parametrize(("path", "line", "contract"), ATTACKS, ids=[a[0] for a in ATTACKS])
def test_a_forbidden_import_breaks_its_contract(
    tree: Path, path: str, line: str, contract: str
) -> None:
    module = tree / "src" / "tether" / path
    module.write_text(module.read_text() + f"\n{line}  # the forbidden import\n")
    result = _lint(tree)
    assert result.returncode != 0, result.stdout
    broken = result.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken, result.stdout


def test_the_copy_is_what_is_checked(tree: Path) -> None:
    """Without the injected line the copy passes: the failures above come from the line."""
    result = _lint(tree)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_architecture_document_names_every_contract() -> None:
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split("### 2.2 Import rules", 1)[1].split("\n## ", 1)[0]
    flat = " ".join(section.split())
    missing = [c["name"] for c in contracts["contracts"] if f"**{c['name']}**" not in flat]
    assert not missing, missing
