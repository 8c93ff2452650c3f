"""Message parts: persisted JSON, conversion to/from pydantic-ai, instruction helpers
(docs/behaviour.md §5.6)."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest
from pydantic import ValidationError
from pydantic_ai import Agent
from pydantic_ai import messages as pai

from tether.chatd.messages import (
    INVALID_JSON_KEY,
    ChatMessage,
    ContextFilePart,
    ReasoningPart,
    TextPart,
    ToolCallPart,
    ToolResultPart,
    dump_parts,
    format_workspace_context,
    from_model_messages,
    has_persisted_instructions,
    instruction_agent_id,
    load_parts,
    parse_tool_error,
    render_tool_error,
    to_model_messages,
    workspace_context_from_history,
)
from tether.errors import InvalidInput
from tether.llm.scripted import Call, Say, script_model

AGENT_A = UUID("00000000-0000-0000-0000-00000000000a")
AGENT_B = UUID("00000000-0000-0000-0000-00000000000b")
T0 = datetime(2026, 4, 1, 12, 0, tzinfo=UTC)


def _conversation() -> list[ChatMessage]:
    return [
        ChatMessage(role="system", parts=[TextPart(text="be brief")], visibility="model"),
        ChatMessage(role="user", parts=[TextPart(text="hi")], id=1, seq=1, created_at=T0),
        ChatMessage(
            role="assistant",
            model="openai:gpt-4o",
            parts=[
                ReasoningPart(text="think", signature="sig", provider_name="anthropic"),
                TextPart(text="running two tools"),
                ToolCallPart(tool_call_id="c1", tool_name="execute", args={"command": "ls"}),
                ToolCallPart(tool_call_id="c2", tool_name="read_file", args={}),
                ToolCallPart(tool_call_id="c3", tool_name="bad", args={INVALID_JSON_KEY: "{oops"}),
            ],
        ),
        ChatMessage(
            role="tool",
            parts=[
                ToolResultPart(
                    tool_call_id="c1",
                    tool_name="execute",
                    result={
                        "success": True,
                        "output": "a\nb\n",
                        "exit_code": 0,
                        "n": [1, 2.5, None],
                    },
                ),
                ToolResultPart(
                    tool_call_id="c2",
                    tool_name="read_file",
                    result="The workspace has no running agent.",
                    is_error=True,
                    error_code="workspace_stopped",
                    remediation="start_workspace",
                ),
                ToolResultPart(
                    tool_call_id="c3",
                    tool_name="bad",
                    result={"detail": ["x"]},
                    is_error=True,
                ),
            ],
        ),
        ChatMessage(role="assistant", parts=[TextPart(text="done")], seq=5),
    ]


def test_round_trip_every_part_type_is_exact() -> None:
    history = _conversation()
    assert from_model_messages(to_model_messages(history)) == history


def test_round_trip_survives_pydantic_ai_json_serialization() -> None:
    history = _conversation()
    raw = pai.ModelMessagesTypeAdapter.dump_json(to_model_messages(history))
    assert from_model_messages(pai.ModelMessagesTypeAdapter.validate_json(raw)) == history


def test_persisted_json_is_small_and_stable() -> None:
    parts = _conversation()[3].parts
    dumped = dump_parts(parts)
    assert dumped[1] == {
        "type": "tool-result",
        "tool_call_id": "c2",
        "tool_name": "read_file",
        "result": "The workspace has no running agent.",
        "is_error": True,
        "error_code": "workspace_stopped",
        "remediation": "start_workspace",
    }
    assert "error_code" not in dumped[0]  # None fields are omitted
    assert load_parts(dumped) == parts
    marker = ContextFilePart(agent_id=AGENT_A, os="linux")
    assert dump_parts([marker]) == [
        {
            "type": "context-file",
            "content": "",
            "truncated": False,
            "os": "linux",
            "agent_id": str(AGENT_A),
        }
    ]
    with pytest.raises(ValidationError):
        load_parts([{"type": "nope"}])


def test_error_result_is_failed_outcome_whose_text_shows_code_and_remediation() -> None:
    [request] = to_model_messages([_conversation()[3]])
    assert isinstance(request, pai.ModelRequest)
    ok, stopped, bare = request.parts
    assert isinstance(ok, pai.ToolReturnPart) and ok.outcome == "success"
    assert isinstance(stopped, pai.ToolReturnPart) and stopped.outcome == "failed"
    seen = stopped.model_response_str()  # what providers without an error channel send
    assert "workspace_stopped" in seen
    assert "The workspace has no running agent." in seen
    assert "start_workspace" in seen
    assert isinstance(bare, pai.ToolReturnPart) and bare.outcome == "failed"
    assert '\\"detail\\"' in bare.model_response_str()


def test_tool_failed_text_from_tools_is_parsed_back() -> None:
    # Tools raise ToolFailed(render_tool_error(...)); pydantic-ai stores only the text.
    text = render_tool_error("no agent", "workspace_stopped", "start_workspace")
    part = pai.ToolReturnPart(
        tool_name="execute", content=text, tool_call_id="c9", outcome="failed"
    )
    [message] = from_model_messages([pai.ModelRequest(parts=[part])])
    assert message.role == "tool"
    assert message.parts == [
        ToolResultPart(
            tool_call_id="c9",
            tool_name="execute",
            result="no agent",
            is_error=True,
            error_code="workspace_stopped",
            remediation="start_workspace",
        )
    ]
    assert parse_tool_error("plain failure") == ("plain failure", None, None)
    assert parse_tool_error(render_tool_error("multi\nline", "x_y")) == ("multi\nline", "x_y", None)


def test_foreign_non_success_outcomes_become_errors_with_outcome_code() -> None:
    denied = pai.ToolReturnPart(tool_name="t", content="no", tool_call_id="d", outcome="denied")
    [message] = from_model_messages([pai.ModelRequest(parts=[denied])])
    [part] = message.parts
    assert isinstance(part, ToolResultPart)
    assert (part.is_error, part.error_code, part.result) == (True, "denied", "no")


def test_invalid_json_args_from_a_model_are_kept_raw() -> None:
    response = pai.ModelResponse(
        parts=[pai.ToolCallPart(tool_name="x", args="{not json", tool_call_id="c")]
    )
    [message] = from_model_messages([response])
    assert message.parts == [
        ToolCallPart(tool_call_id="c", tool_name="x", args={INVALID_JSON_KEY: "{not json"})
    ]
    [back] = to_model_messages(from_model_messages([response]))
    assert isinstance(back, pai.ModelResponse)
    call = back.parts[0]
    assert isinstance(call, pai.ToolCallPart)
    assert call.args_as_dict() == {INVALID_JSON_KEY: "{not json"}


def test_foreign_request_is_split_by_role_in_order() -> None:
    request = pai.ModelRequest(
        parts=[
            pai.ToolReturnPart(tool_name="t", content={"a": 1}, tool_call_id="c"),
            pai.UserPromptPart(content="queued question"),
            pai.UserPromptPart(content=["two", pai.TextContent(content="pieces")]),
        ]
    )
    response = pai.ModelResponse(parts=[pai.TextPart(content="answer")], model_name="gpt-x")
    messages = from_model_messages([request, response])
    assert [m.role for m in messages] == ["tool", "user", "assistant"]
    assert messages[1].parts == [TextPart(text="queued question"), TextPart(text="two\npieces")]
    assert messages[2].model == "gpt-x"


def test_context_files_and_user_only_messages_are_not_sent_to_the_model() -> None:
    context = ChatMessage(
        role="user",
        parts=[ContextFilePart(path="/p/AGENTS.md", content="rules", agent_id=AGENT_A)],
    )
    ui_note = ChatMessage(role="user", parts=[TextPart(text="ui only")], visibility="user")
    mixed = ChatMessage(role="user", parts=[ContextFilePart(agent_id=AGENT_A), TextPart(text="q")])
    out = to_model_messages([context, ui_note, mixed])
    assert len(out) == 1
    assert isinstance(out[0], pai.ModelRequest)
    assert [type(p) for p in out[0].parts] == [pai.UserPromptPart]
    assert from_model_messages(out) == [mixed.model_copy(update={"parts": [TextPart(text="q")]})]


def test_instructions_go_on_the_last_request() -> None:
    out = to_model_messages(_conversation(), instructions="SYSTEM")
    requests = [m for m in out if isinstance(m, pai.ModelRequest)]
    assert requests[-1].instructions == "SYSTEM"
    assert all(r.instructions is None for r in requests[:-1])
    assert to_model_messages([], instructions="SYSTEM") == []


def test_parts_that_do_not_fit_the_role_are_rejected() -> None:
    bad = ChatMessage(role="user", parts=[ToolCallPart(tool_call_id="c", tool_name="t")])
    with pytest.raises(InvalidInput):
        to_model_messages([bad])
    bad_assistant = ChatMessage(role="assistant", parts=[ContextFilePart(agent_id=AGENT_A)])
    with pytest.raises(InvalidInput):
        to_model_messages([bad_assistant])


# --- docs/behaviour.md §9.4 ---------------------------------------------------------------


def test_pl10_block_contains_agent_metadata_and_the_file() -> None:
    """PL-10: OS and working directory, then each file under a Source header."""
    parts = [
        ContextFilePart(
            path="/home/coder/project/AGENTS.md",
            content="# Project instructions",
            os="linux",
            directory="/home/coder/project",
            agent_id=AGENT_A,
        )
    ]
    assert format_workspace_context(parts) == (
        "<workspace-context>\n"
        "Operating System: linux\n"
        "Working Directory: /home/coder/project\n"
        "\nSource: /home/coder/project/AGENTS.md\n"
        "# Project instructions\n"
        "</workspace-context>"
    )


def test_workspace_context_variants() -> None:
    assert format_workspace_context([]) == ""
    assert format_workspace_context([ContextFilePart(agent_id=AGENT_A)]) == ""  # blank marker
    truncated = format_workspace_context(
        [ContextFilePart(path="/x/AGENTS.md", content="rules", truncated=True, os="windows")]
    )
    assert "Source: /x/AGENTS.md (truncated to 64KiB)\nrules\n" in truncated
    assert "Operating System: windows" in truncated
    assert "Working Directory" not in truncated
    home_only = format_workspace_context(
        [ContextFilePart(path="~/.coder/AGENTS.md", content="home")]
    )
    assert "Operating System" not in home_only and "Source: ~/.coder/AGENTS.md" in home_only
    # Rebuilt from history: OS/dir from the last parts carrying them; files in order.
    history = [
        ChatMessage(
            role="user",
            parts=[ContextFilePart(path="/h/AGENTS.md", content="one", os="linux", directory="/a")],
        ),
        ChatMessage(role="user", parts=[TextPart(text="q")]),
        ChatMessage(
            role="user", parts=[ContextFilePart(path="/b/AGENTS.md", content="two", directory="/b")]
        ),
    ]
    block = workspace_context_from_history(history)
    assert "Operating System: linux\nWorking Directory: /b\n" in block
    assert block.index("Source: /h/AGENTS.md") < block.index("Source: /b/AGENTS.md")


def test_pl22_instruction_agent_is_the_latest_stamped_agent() -> None:
    """PL-22 adapted: tether has no skill-only sentinel path, so there is nothing to ignore.

    The latest message with an agent-stamped context-file part decides; parts without an
    agent id are ignored, and with none at all the agent is unknown (None).
    """
    file_a = ChatMessage(
        role="user", parts=[ContextFilePart(path="/p/AGENTS.md", content="x", agent_id=AGENT_A)]
    )
    marker_b = ChatMessage(role="user", parts=[ContextFilePart(agent_id=AGENT_B)])
    unstamped = ChatMessage(role="user", parts=[ContextFilePart(path="/q/AGENTS.md", content="y")])
    assert instruction_agent_id([file_a]) == AGENT_A
    assert instruction_agent_id([file_a, marker_b]) == AGENT_B
    assert instruction_agent_id([file_a, marker_b, unstamped]) == AGENT_B
    assert instruction_agent_id([unstamped]) is None
    assert instruction_agent_id([]) is None


def test_pl23_has_persisted_instructions() -> None:
    """PL-23 adapted (no sentinel path in tether): unstamped parts → False; a stamped file or
    the blank marker → True."""
    unstamped = ChatMessage(role="user", parts=[ContextFilePart(path="/p/AGENTS.md", content="x")])
    text_only = ChatMessage(role="user", parts=[TextPart(text="hi")])
    stamped = ChatMessage(
        role="user", parts=[ContextFilePart(path="/p/AGENTS.md", content="x", agent_id=uuid4())]
    )
    marker = ChatMessage(role="user", parts=[ContextFilePart(agent_id=uuid4())])
    assert has_persisted_instructions([text_only, unstamped]) is False
    assert has_persisted_instructions([]) is False
    assert has_persisted_instructions([unstamped, stamped]) is True
    assert has_persisted_instructions([marker]) is True


async def test_agent_run_over_our_history_yields_new_messages_to_persist() -> None:
    """What the turn runner does: history in, run, convert ``new_messages()`` back."""
    history = [
        ChatMessage(role="user", parts=[TextPart(text="a")], seq=1),
        ChatMessage(
            role="assistant", parts=[ToolCallPart(tool_call_id="c0", tool_name="t")], seq=2
        ),
        ChatMessage(
            role="tool", parts=[ToolResultPart(tool_call_id="c0", tool_name="t", result=1)], seq=3
        ),
        ChatMessage(role="assistant", parts=[TextPart(text="one")], seq=4),
        ChatMessage(role="user", parts=[TextPart(text="b")], seq=5),
    ]
    agent: Agent[None, str] = Agent(script_model([Call("t", {"x": 1}), Say("two")]))

    @agent.tool_plain
    def t(x: int = 0) -> dict[str, int]:
        return {"x": x}

    result = await agent.run(None, message_history=to_model_messages(history), instructions="SYS")
    new = from_model_messages(result.new_messages())
    assert [m.role for m in new] == ["assistant", "tool", "assistant"]
    call = new[0].parts[0]
    assert isinstance(call, ToolCallPart) and call.args == {"x": 1}
    assert new[1].parts == [
        ToolResultPart(tool_call_id=call.tool_call_id, tool_name="t", result={"x": 1})
    ]
    assert new[2].parts == [TextPart(text="two")]
    assert all(m.seq is None for m in new)
