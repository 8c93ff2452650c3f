"""The repository documents itself: code, tests, README and docs cite only documents inside
the repository, every cited ``docs/…`` file and numbered section exists, and every scenario
id the code or tests cite (``GC-13``, ``test_gc13_…``) is defined in docs/behaviour.md §9."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
SCANNED = ("src", "tests", "bench", "docs")
SUFFIXES = {".py", ".md", ".yaml", ".yml", ".toml", ".txt"}

# Documents that live outside the repository.
OUTSIDE = re.compile(
    "|".join(
        [
            r"\.\./shared/",
            r"/work/shared",
            r"\bDESIGN(\.md|\s*§)",
            r"\bSTYLE\.md",
            r"\breference\s*§",
            r"chatd-behaviour\.md",
            r"\banchors\.md",
        ]
    ),
    re.IGNORECASE,
)
DOC_CITATION = re.compile(r"(?<![\w/.])docs/([\w-]+\.md)`?((?:[\s,/–-]*§\d+(?:\.\d+)*)*)")
SECTION = re.compile(r"§(\d+(?:\.\d+)*)")
HEADING = re.compile(r"^#{1,6}\s+(\d+(?:\.\d+)*)[.\s]", re.MULTILINE)

PREFIXES = ("DV", "AR", "GC", "PL", "CW", "SW", "SA", "E2E", "WK")
SCENARIO_ID = re.compile(rf"\b({'|'.join(PREFIXES)})-(\d+)\b")
TEST_NAME = re.compile(r"\btest_\w+")
NAME_TOKEN = re.compile(rf"({'|'.join(p.lower() for p in PREFIXES)})(\d+)")
DEFINITION = re.compile(rf"^\| ((?:{'|'.join(PREFIXES)})-\d+) \|", re.MULTILINE)


def repository_files() -> list[Path]:
    """README and every text file under ``SCANNED``, except this file (its last test holds
    samples of exactly what the others forbid)."""
    files = [ROOT / "README.md"]
    for top in SCANNED:
        files += sorted(
            p
            for p in (ROOT / top).rglob("*")
            if p.is_file() and p.suffix in SUFFIXES and p != Path(__file__).resolve()
        )
    return files


def outside_citations(text: str) -> list[str]:
    """Citations of documents that are not in the repository, one string per hit."""
    return [m.group(0) for m in OUTSIDE.finditer(text)]


def broken_doc_citations(text: str, docs: Path) -> list[str]:
    """``docs/<name>.md`` citations whose file, or whose ``§N.M`` section heading, is missing."""
    broken = []
    for m in DOC_CITATION.finditer(text):
        doc = docs / m.group(1)
        if not doc.is_file():
            broken.append(f"docs/{m.group(1)} does not exist")
            continue
        sections = set(HEADING.findall(doc.read_text()))
        broken += [
            f"docs/{m.group(1)} has no section {s}"
            for s in SECTION.findall(m.group(2))
            if s not in sections
        ]
    return broken


def cited_scenario_ids(text: str) -> set[str]:
    """Scenario ids cited as ``GC-13`` or as name tokens of tests (``test_e2e4_gc13_…``)."""
    ids = {f"{p}-{n}" for p, n in SCENARIO_ID.findall(text)}
    for name in TEST_NAME.findall(text):
        for token in name.split("_"):
            m = NAME_TOKEN.fullmatch(token)
            if m:
                ids.add(f"{m.group(1).upper()}-{int(m.group(2))}")
    return ids


def defined_scenario_ids(behaviour: str) -> set[str]:
    """Ids defined by a table row of docs/behaviour.md (``| GC-13 | …``)."""
    return set(DEFINITION.findall(behaviour))


def test_nothing_cites_a_document_outside_the_repository() -> None:
    hits = [
        f"{path.relative_to(ROOT)}: {hit}"
        for path in repository_files()
        for hit in outside_citations(path.read_text(errors="replace"))
    ]
    assert hits == [], "cite docs/… instead:\n" + "\n".join(hits)


def test_every_cited_doc_and_section_exists() -> None:
    broken = [
        f"{path.relative_to(ROOT)}: {problem}"
        for path in repository_files()
        for problem in broken_doc_citations(path.read_text(errors="replace"), DOCS)
    ]
    assert broken == [], "\n".join(broken)


def test_every_cited_scenario_id_is_defined_in_behaviour() -> None:
    defined = defined_scenario_ids((DOCS / "behaviour.md").read_text())
    cited: dict[str, str] = {}
    for path in repository_files():
        if path.parent == DOCS:
            continue
        for sid in cited_scenario_ids(path.read_text(errors="replace")):
            cited.setdefault(sid, str(path.relative_to(ROOT)))
    assert len(cited) > 100  # the tests cite the whole matrix; a broken scan finds nothing
    missing = sorted(
        f"{sid} (cited in {where})" for sid, where in cited.items() if sid not in defined
    )
    assert missing == [], "define these in docs/behaviour.md §9:\n" + "\n".join(missing)


def test_every_defined_scenario_id_is_mapped_in_scenarios_md() -> None:
    defined = defined_scenario_ids((DOCS / "behaviour.md").read_text())
    mapped = defined_scenario_ids((ROOT / "tests" / "SCENARIOS.md").read_text())
    assert sorted(defined - mapped) == [], "map these to tests (or n/a) in tests/SCENARIOS.md"
    assert sorted(mapped - defined) == [], "define these in docs/behaviour.md §9"


def test_the_checks_catch_what_they_are_for(tmp_path: Path) -> None:
    (tmp_path / "real.md").write_text("# Real\n\n## 2. Part\n\n### 2.1 Sub\n")
    outside = "see ../shared/DESIGN.md, DESIGN §4.1 and the Reference §2.6"
    assert outside_citations(outside) == ["../shared/", "DESIGN.md", "DESIGN §", "Reference §"]
    assert outside_citations("see docs/real.md §2.1; the design is in docs/") == []
    text = "docs/real.md §2.1, docs/real.md §2.1–§3.4, `docs/gone.md` §1 and docs/real.md"
    assert broken_doc_citations(text, tmp_path) == [
        "docs/real.md has no section 3.4",
        "docs/gone.md does not exist",
    ]
    assert cited_scenario_ids("def test_e2e4_gc13_stopped(): ...  # also PL-2, SHA-256") == {
        "E2E-4",
        "GC-13",
        "PL-2",
    }
    assert defined_scenario_ids("| GC-13 | x |\n| not | GC-14 |\n") == {"GC-13"}
