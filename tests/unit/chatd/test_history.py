"""Issue #9 §7: the history a provider sees is well-formed after a crash, an interrupt or a
takeover — every tool call has exactly one result, right after the message that made it."""

from __future__ import annotations

from pydantic_ai import messages as pai

from tether.chatd import history
from tether.chatd import messages as cm


def _call(cid: str, name: str = "execute") -> cm.ToolCallPart:
    return cm.ToolCallPart(tool_call_id=cid, tool_name=name)


def _result(cid: str, name: str = "execute", result: object = "ok") -> cm.ToolResultPart:
    return cm.ToolResultPart(tool_call_id=cid, tool_name=name, result=result)


def _user(text: str) -> cm.ChatMessage:
    return cm.ChatMessage(role="user", parts=[cm.TextPart(text=text)])


def assert_valid_for_providers(messages: list[pai.ModelMessage]) -> None:
    """What every provider demands: each call of a response is answered, exactly once, by
    the request that follows it, and no result answers a call that was not made."""
    for i, msg in enumerate(messages):
        if isinstance(msg, pai.ModelResponse):
            calls = [p.tool_call_id for p in msg.parts if isinstance(p, pai.ToolCallPart)]
            if not calls:
                continue
            nxt = messages[i + 1]
            assert isinstance(nxt, pai.ModelRequest), messages
            answers = [p.tool_call_id for p in nxt.parts if isinstance(p, pai.ToolReturnPart)]
            assert sorted(answers) == sorted(calls), messages
        else:
            prev = messages[i - 1] if i else None
            made = (
                {p.tool_call_id for p in prev.parts if isinstance(p, pai.ToolCallPart)}
                if isinstance(prev, pai.ModelResponse)
                else set()
            )
            for p in msg.parts:
                if isinstance(p, pai.ToolReturnPart):
                    assert p.tool_call_id in made, messages


def test_a_lost_result_is_answered_as_interrupted_right_after_its_call() -> None:
    h = [
        _user("go"),
        cm.ChatMessage(role="assistant", parts=[_call("a"), _call("b", "read_file")]),
        cm.ChatMessage(role="tool", parts=[_result("a")]),
    ]
    fixed = history.well_formed(h)
    assert [m.role for m in fixed] == ["user", "assistant", "tool"]
    a, b = fixed[2].parts
    assert isinstance(a, cm.ToolResultPart) and a.result == "ok"
    assert isinstance(b, cm.ToolResultPart) and b.tool_call_id == "b"
    assert b.is_error and b.error_code == "interrupted"
    assert str(b.result).startswith("interrupted: ")
    assert_valid_for_providers(cm.to_model_messages(fixed))


def test_a_result_stored_after_later_messages_moves_back_to_its_call() -> None:
    """A takeover stores its synthetic result at the end, possibly after a user message
    sent while the chat was pending: the request still pairs it with its call."""
    h = [
        _user("go"),
        cm.ChatMessage(role="assistant", parts=[_call("a")]),
        _user("are you there?"),
        cm.ChatMessage(role="tool", parts=[history.interrupted_result(_call("a"), "x")]),
    ]
    fixed = history.well_formed(h)
    assert [m.role for m in fixed] == ["user", "assistant", "tool", "user"]
    assert_valid_for_providers(cm.to_model_messages(fixed))
    # the broken order is what a provider would have been sent before
    broken = cm.to_model_messages(h)
    try:
        assert_valid_for_providers(broken)
    except AssertionError:
        pass
    else:
        raise AssertionError("the unrepaired history should be invalid")


def test_duplicate_and_orphan_results_are_dropped() -> None:
    """The old owner of a taken-over turn may store its real result after the new owner
    stored the synthetic one: the first wins. A result for no call is dropped."""
    h = [
        _user("go"),
        cm.ChatMessage(role="assistant", parts=[_call("a")]),
        cm.ChatMessage(role="tool", parts=[history.interrupted_result(_call("a"), "lost")]),
        cm.ChatMessage(role="tool", parts=[_result("a", result="late"), _result("zzz")]),
        cm.ChatMessage(role="assistant", parts=[cm.TextPart(text="done")]),
    ]
    fixed = history.well_formed(h)
    assert [m.role for m in fixed] == ["user", "assistant", "tool", "assistant"]
    [only] = fixed[2].parts
    assert isinstance(only, cm.ToolResultPart) and only.error_code == "interrupted"
    assert_valid_for_providers(cm.to_model_messages(fixed))


def test_a_well_formed_history_is_unchanged() -> None:
    h = [
        _user("go"),
        cm.ChatMessage(role="assistant", parts=[_call("a")]),
        cm.ChatMessage(role="tool", parts=[_result("a")]),
        cm.ChatMessage(role="assistant", parts=[cm.TextPart(text="done")]),
    ]
    assert history.well_formed(h) == h
    assert history.dangling_calls(h) == []
    assert history.well_formed(h[:1]) == h[:1]


def test_dangling_calls_lists_the_unanswered_calls_in_order() -> None:
    h = [
        cm.ChatMessage(role="assistant", parts=[_call("a"), _call("b")]),
        cm.ChatMessage(role="tool", parts=[_result("b")]),
        cm.ChatMessage(role="assistant", parts=[_call("c")]),
    ]
    assert [c.tool_call_id for c in history.dangling_calls(h)] == ["a", "c"]
