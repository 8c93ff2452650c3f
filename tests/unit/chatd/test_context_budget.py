"""The context budget's pure parts (chatd/context.py, elision.py, historycache.py):
elision, overflow detection, the cut, calibration and the bounded incremental cache."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from pydantic_ai import messages as pai
from pydantic_ai.exceptions import ModelHTTPError

from tether.chatd import messages as cm
from tether.chatd.context import (
    ELIDED_PREFIX,
    Calibration,
    check_single_message,
    elide,
    is_context_overflow,
)
from tether.chatd.elision import cut_index
from tether.chatd.historycache import HistoryCache
from tether.domain.chat import StoredMessage
from tether.errors import ContextOverflow
from tether.llm.budget import Budget


def _turn(n: int, size: int = 2000) -> list[pai.ModelMessage]:
    return [
        pai.ModelRequest(parts=[pai.UserPromptPart(content=f"u{n}")]),
        pai.ModelResponse(parts=[pai.ToolCallPart("execute", {"n": n}, tool_call_id=f"c{n}")]),
        pai.ModelRequest(parts=[pai.ToolReturnPart("execute", "y" * size, tool_call_id=f"c{n}")]),
        pai.ModelResponse(parts=[pai.TextPart(content=f"a{n}")]),
    ]


def test_elision_replaces_old_outputs_only_in_a_copy_and_keeps_pairs() -> None:
    history = [m for n in range(5) for m in _turn(n)]
    out = elide(history, keep_steps=2)
    returns = [p for m in out for p in m.parts if isinstance(p, pai.ToolReturnPart)]
    calls = [p for m in out for p in m.parts if isinstance(p, pai.ToolCallPart)]
    assert [r.tool_call_id for r in returns] == [c.tool_call_id for c in calls]  # pairs kept
    assert all(str(r.content).startswith(ELIDED_PREFIX) for r in returns[:-1])
    assert "execute call c0" in str(returns[0].content) and "again" in str(returns[0].content)
    assert returns[-1].content == "y" * 2000  # the last steps keep their output
    original = [p for m in history for p in m.parts if isinstance(p, pai.ToolReturnPart)]
    assert all(p.content == "y" * 2000 for p in original)  # never mutated


@pytest.mark.parametrize(
    ("status", "body", "overflow"),
    [
        (400, {"error": {"code": "context_length_exceeded", "message": "x"}}, True),
        (400, {"error": {"message": "prompt is too long: 9000 tokens > 8192 maximum"}}, True),
        (400, {"error": {"type": "exceed_context_size_error", "message": "n"}}, True),
        (400, {"error": {"message": "invalid tool schema"}}, False),
        (429, {"error": {"message": "too many tokens per minute"}}, False),
    ],
)
def test_context_length_errors_of_three_providers(
    status: int, body: object, overflow: bool
) -> None:
    exc = ModelHTTPError(status, "m", body)
    assert is_context_overflow(exc) is overflow


def test_the_cut_never_separates_a_call_from_its_result() -> None:
    msgs = [
        cm.ChatMessage(role="user", parts=[cm.TextPart(text="go")], seq=1),
        cm.ChatMessage(
            role="assistant", parts=[cm.ToolCallPart(tool_call_id="a", tool_name="t")], seq=2
        ),
        cm.ChatMessage(
            role="tool", parts=[cm.ToolResultPart(tool_call_id="a", tool_name="t")], seq=3
        ),
        cm.ChatMessage(
            role="assistant", parts=[cm.ToolCallPart(tool_call_id="b", tool_name="t")], seq=4
        ),
        cm.ChatMessage(
            role="tool", parts=[cm.ToolResultPart(tool_call_id="b", tool_name="t")], seq=5
        ),
        cm.ChatMessage(role="assistant", parts=[cm.TextPart(text="done")], seq=6),
    ]
    for keep in (1, 2):
        i = cut_index(msgs, keep)
        assert i > 0 and msgs[i].role != "tool"
    assert cut_index(msgs, 3) == 0  # nothing older than what is kept
    # a tail budget shortens the kept part down to one assistant message
    assert cut_index(msgs, 2, tokens=[1, 1, 1, 1, 100, 1], tail_budget=10) == 5


def test_calibration_follows_the_reported_counts() -> None:
    cal = Calibration()
    assert cal.estimate(1000) == 1000
    cal.observe(1000, 1300)
    assert cal.estimate(1000) == 1300
    cal.observe(1000, 1100)
    assert cal.estimate(1000) == 1200
    cal.observe(10, 10_000)  # absurd reports are clamped
    assert cal.ratio <= 2.0
    cal.observe(10_000, 10)
    assert cal.ratio >= 0.5


def test_a_message_too_large_for_the_window_is_refused() -> None:
    check_single_message(Budget(8000), "short")
    check_single_message(None, "x" * 10**6)  # unknown window: nothing measured
    with pytest.raises(ContextOverflow) as info:
        check_single_message(Budget(8000), "word " * 8000)
    assert info.value.status_code == 413 and info.value.to_dict()["remediation"]


async def test_the_history_cache_reads_only_new_rows_and_stays_bounded() -> None:
    rows: dict[uuid.UUID, list[StoredMessage]] = {}
    reads: list[int] = []

    def add(chat: uuid.UUID, n: int) -> None:
        for _ in range(n):
            seq = len(rows.setdefault(chat, [])) + 1
            rows[chat].append(
                StoredMessage(
                    id=uuid.uuid4(),
                    chat_id=chat,
                    seq=seq,
                    role="user",
                    parts=[{"type": "text", "text": f"m{seq}"}],
                    visibility="both",
                    model=None,
                    created_at=datetime.now(UTC),
                )
            )

    async def load(chat: uuid.UUID, after: int) -> list[StoredMessage]:
        out = [r for r in rows.get(chat, []) if r.seq > after]
        reads.append(len(out))
        return out

    async def latest(chat: uuid.UUID) -> None:
        return None

    cache = HistoryCache(load, latest, max_messages=50)
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    add(a, 30)
    assert len((await cache.view(a)).messages) == 30
    add(a, 2)
    before = cache.rows_read
    entry = await cache.view(a)
    # only the new rows, plus the newest cached one (an edit would have superseded it)
    assert len(entry.messages) == 32 and reads[-1] == 3 and cache.rows_read == before + 2
    add(b, 30)
    await cache.view(b)  # 62 > 50: the least recently used chat goes
    assert a not in cache and b in cache and cache.size <= 50
    add(c, 80)
    assert len((await cache.view(c)).messages) == 80  # served, not kept
    assert c not in cache and cache.size <= 50


def test_what_a_subagent_hands_back_is_bounded() -> None:
    from tether.chatd.tools.subagents import REPORT_MAX_CHARS, bounded_report

    assert bounded_report("short") == "short"
    long = bounded_report("z" * (REPORT_MAX_CHARS * 3))
    assert len(long) == REPORT_MAX_CHARS and long.endswith("read the subagent chat for the rest]")
