"""What the title model is given and what is kept of its answer (``chatd/titles.py``)."""

from __future__ import annotations

import uuid

from tether.chatd.models import StoredMessage
from tether.chatd.titles import TITLE_MAX_CHARS, TRANSCRIPT_MAX_CHARS, clean_title, transcript
from tether.testing.clock import DEFAULT_START


def _msg(role: str, text: str, visibility: str = "both") -> StoredMessage:
    parts = [{"type": "text", "text": text}]
    return StoredMessage(
        uuid.uuid4(), uuid.UUID(int=1), 1, role, parts, visibility, None, DEFAULT_START
    )


def test_transcript_keeps_the_conversation_only_and_is_capped() -> None:
    history = [
        _msg("user", "fix   the\nbuild"),
        _msg("user", "AGENTS.md rules", visibility="user"),  # instruction files
        _msg("tool", "tool output"),
        _msg("assistant", "done"),
    ]
    assert transcript(history) == "User: fix the build\nAssistant: done"
    assert len(transcript([_msg("user", "x" * 10_000)] * 3)) <= TRANSCRIPT_MAX_CHARS + 2


def test_clean_title() -> None:
    assert clean_title('\n  "Fix the flaky login test."\nbecause…') == "Fix the flaky login test"
    assert clean_title("Title: **Deploy app**") == "Deploy app"
    assert clean_title("  \n ") == ""
    long = clean_title("word " * 100)
    assert len(long) == TITLE_MAX_CHARS and long.endswith("…")
