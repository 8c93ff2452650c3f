"""File tools and instruction files against a real agent process."""

from __future__ import annotations

import pytest

from support.agent_procs import RunningAgent
from tether.agent.schemas import Edit, FileEdits
from tether.agentconn import AgentClient
from tether.errors import AgentRequestFailed

pytestmark = pytest.mark.integration


async def test_read_file_window(client: AgentClient, agent: RunningAgent) -> None:
    path = agent.project / "lines.txt"
    path.write_text("".join(f"line {i}\n" for i in range(1, 11)))
    whole = await client.read_file("lines.txt")
    assert (whole.total_lines, whole.lines_read, whole.binary) == (10, 10, False)
    assert whole.file_size == path.stat().st_size
    assert whole.path == str(path)

    window = await client.read_file("lines.txt", offset=3, limit=2)
    assert window.content == "line 3\nline 4\n"
    assert (window.total_lines, window.lines_read) == (10, 2)

    absolute = await client.read_file(str(path), offset=10, limit=5)
    assert absolute.content == "line 10\n"
    past_end = await client.read_file("lines.txt", offset=50)
    assert (past_end.content, past_end.lines_read) == ("", 0)


async def test_read_file_binary_missing_and_directory(
    client: AgentClient, agent: RunningAgent
) -> None:
    (agent.project / "blob.bin").write_bytes(b"abc\x00def" * 10)
    (agent.project / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    for name in ("blob.bin", "latin1.txt"):
        result = await client.read_file(name)
        assert result.binary is True
        assert result.content == ""
        assert result.file_size > 0

    with pytest.raises(AgentRequestFailed) as missing:
        await client.read_file("nope.txt")
    assert (missing.value.status, missing.value.agent_code) == (404, "not_found")

    with pytest.raises(AgentRequestFailed) as directory:
        await client.read_file(".")
    assert (directory.value.status, directory.value.agent_code) == (400, "is_a_directory")

    with pytest.raises(AgentRequestFailed) as bad_offset:
        await client.read_file("blob.bin", offset=0)
    assert bad_offset.value.status == 400


async def test_write_file_creates_parents(client: AgentClient, agent: RunningAgent) -> None:
    result = await client.write_file("deep/er/new.txt", "héllo\n")
    target = agent.project / "deep" / "er" / "new.txt"
    assert result.path == str(target)
    assert result.bytes_written == len("héllo\n".encode())
    assert target.read_text() == "héllo\n"
    home_file = await client.write_file("~/notes.md", "x")
    assert home_file.path == str(agent.home / "notes.md")


async def test_edit_files_applies_or_reports_per_file(
    client: AgentClient, agent: RunningAgent
) -> None:
    good = agent.project / "good.py"
    good.write_text("a = 1\nb = 2\n")
    bad = agent.project / "bad.py"
    bad.write_text("x = 1\nx = 1\ny = 2\n")
    result = await client.edit_files(
        [
            FileEdits(
                path="good.py",
                edits=[
                    Edit(search="a = 1", replace="a = 10"),
                    Edit(search="b = 2", replace="b = 20"),
                ],
            ),
            {
                "path": "bad.py",
                "edits": [
                    {"search": "y = 2", "replace": "y = 3"},  # fine on its own
                    {"search": "zzz", "replace": ""},
                    {"search": "x = 1", "replace": "x = 2"},
                ],
            },
            {"path": "missing.py", "edits": [{"search": "a", "replace": "b"}]},
        ]
    )
    first, second, third = result.files
    assert (first.ok, first.applied, first.errors) == (True, 2, [])
    assert good.read_text() == "a = 10\nb = 20\n"

    assert second.ok is False and second.applied == 0
    assert [(e.index, e.message) for e in second.errors] == [
        (1, "search text not found"),
        (2, "matches 2 times; add context"),
    ]
    assert bad.read_text() == "x = 1\nx = 1\ny = 2\n"  # unchanged: one edit failed

    assert third.ok is False
    assert third.errors[0].message == "file not found"


async def test_list_dir(client: AgentClient, agent: RunningAgent) -> None:
    (agent.project / "b.txt").write_text("12345")
    (agent.project / "a_dir").mkdir()
    (agent.project / "c_link").symlink_to(agent.project / "b.txt")
    listing = await client.list_dir(".")
    assert listing.path == str(agent.project)
    assert [(e.name, e.type, e.size) for e in listing.entries] == [
        ("a_dir", "dir", 0),
        ("b.txt", "file", 5),
        ("c_link", "symlink", 0),
    ]
    with pytest.raises(AgentRequestFailed) as missing:
        await client.list_dir("nope")
    assert missing.value.status == 404
    with pytest.raises(AgentRequestFailed) as not_dir:
        await client.list_dir("b.txt")
    assert not_dir.value.status == 400


async def test_instructions_from_home_and_project(client: AgentClient, agent: RunningAgent) -> None:
    """Home and project files together, comments stripped, absolute paths (PL-17 (a)/(b)
    for both locations; the dedicated PL-17 test is below)."""
    empty = await client.instructions()
    assert empty.files == []
    assert empty.directory == str(agent.project)
    assert empty.os == "linux"

    tether_dir = agent.home / ".tether"
    tether_dir.mkdir()
    (tether_dir / "agents.MD").write_bytes(b"Home rules\r\nline two\rline three\n")
    (agent.project / "AGENTS.md").write_text(
        "\u200bProject <!-- hidden\nmulti-line comment -->rules\n\n<!-- x -->\n"
    )
    found = await client.instructions()
    assert [(f.path, f.content, f.truncated) for f in found.files] == [
        (str(tether_dir / "agents.MD"), "Home rules\nline two\nline three", False),
        (str(agent.project / "AGENTS.md"), "Project rules", False),
    ]


async def test_instructions_empty_omitted_and_truncated(
    client: AgentClient, agent: RunningAgent
) -> None:
    """A file empty after sanitising is left out; a long one is cut at 64 KiB on a
    character boundary (PL-17 (c) for the project file)."""
    tether_dir = agent.home / ".tether"
    tether_dir.mkdir()
    (tether_dir / "AGENTS.md").write_text("  <!-- only a comment -->\n\u200b\n")
    (agent.project / "AGENTS.md").write_text("x" + "é" * 40000)  # 80001 bytes
    found = await client.instructions()
    [only] = found.files
    assert only.path == str(agent.project / "AGENTS.md")
    assert only.truncated is True
    assert len(only.content.encode()) == 64 * 1024 - 1  # cut before a split 2-byte char
    assert only.content == "x" + "é" * (32 * 1024 - 1)


async def test_pl17_home_instruction_file_variants(
    client: AgentClient, agent: RunningAgent
) -> None:
    """PL-17 (upstream ReadHomeInstructionFile NotFound / Success / Truncates; tether's home
    file is ``~/.tether/AGENTS.md``, not ``~/.coder``): (a) no home directory → no file, no
    error; (b) an HTML comment between two lines is removed, the lines are kept, and the
    source path is the absolute path; (c) a 64 KiB + 8 bytes file is cut to 64 KiB and
    flagged truncated."""
    assert (await client.instructions()).files == []  # (a)
    tether_dir = agent.home / ".tether"
    tether_dir.mkdir()
    home_file = tether_dir / "AGENTS.md"
    home_file.write_text("first line\n<!-- internal note -->\nsecond line\n")
    [found] = (await client.instructions()).files  # (b)
    assert found.path == str(home_file) and found.path.startswith("/")
    assert found.content == "first line\n\nsecond line" and found.truncated is False
    home_file.write_text("y" * (64 * 1024 + 8))
    [big] = (await client.instructions()).files  # (c)
    assert big.truncated is True and big.content == "y" * (64 * 1024)
