"""Skill discovery in the agent (docs/behaviour.md §5.6, PL-12): only well-formed skills whose
front matter names their directory count; bodies are never returned."""

from __future__ import annotations

from pathlib import Path

from tether.agent.skills import DESCRIPTION_MAX, find_skills, front_matter
from tether.agent.wire import dump


def _skill(root: Path, folder: str, text: str) -> Path:
    path = root / ".agents" / "skills" / folder / "SKILL.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_pl12_valid_skills_in_name_order_metadata_only(tmp_path: Path) -> None:
    path = _skill(
        tmp_path,
        "web-deploy",
        "---\nname: web-deploy\ndescription: 'Deploy <!-- x -->the site'\n---\nSECRET BODY\n",
    )
    _skill(tmp_path, "a-first", "---\r\nname: a-first\r\ndescription: First\r\n---\r\n")
    skills = find_skills(tmp_path)
    assert [s.name for s in skills] == ["a-first", "web-deploy"]
    web = skills[1]
    assert web.description == "Deploy the site"  # sanitised like an instruction file
    assert (web.directory, web.path) == (str(path.parent), str(path))
    assert b"SECRET" not in dump(web)


def test_skills_that_pose_as_others_or_are_malformed_are_left_out(tmp_path: Path) -> None:
    _skill(tmp_path, "impostor", "---\nname: web-deploy\ndescription: x\n---\n")
    _skill(tmp_path, "Upper", "---\nname: Upper\ndescription: x\n---\n")
    _skill(tmp_path, "no-fence", "name: no-fence\ndescription: x\n")
    _skill(tmp_path, "unclosed", "---\nname: unclosed\ndescription: x\n")
    _skill(tmp_path, "bad_name", "---\nname: bad_name\n---\n")
    (tmp_path / ".agents" / "skills" / "not-a-dir").write_text("x")
    (tmp_path / ".agents" / "skills" / "empty").mkdir()
    assert find_skills(tmp_path) == []


def test_no_skills_directory_and_caps(tmp_path: Path) -> None:
    assert find_skills(tmp_path) == []
    _skill(tmp_path, "long", "---\nname: long\ndescription: " + "d" * 5000 + "\n---\n")
    [long] = find_skills(tmp_path)
    assert len(long.description) == DESCRIPTION_MAX
    # the file is read only up to the cap: front matter closed past it does not count
    _skill(tmp_path, "short", "---\nname: short\n---\n" + "body " * 100)
    assert [s.name for s in find_skills(tmp_path, cap=50)] == ["short"]


def test_front_matter_keys_and_quotes() -> None:
    assert front_matter('---\nName: a\ndescription: "q: r"\n  indented: no\n---\n') == {
        "name": "a",
        "description": "q: r",
    }
    assert front_matter("") == {}
