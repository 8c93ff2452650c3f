"""Tool plumbing without sockets: argument validation, error mapping, durations, output
caps, and the history repair of unanswered tool calls."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import Field
from pydantic_ai import messages as pai
from pydantic_ai.exceptions import ToolFailed

from tether.chatd import messages as cm
from tether.chatd.history import well_formed
from tether.chatd.tools.base import Args, make_tool, tool_error
from tether.chatd.tools.workspace import cap_output
from tether.durations import parse_duration
from tether.errors import AgentRequestFailed, NotFound, WorkspaceStopped


class EchoArgs(Args):
    text: str = Field(min_length=1)
    times: int = 1


async def _echo(args: EchoArgs) -> dict[str, Any]:
    return {"echo": args.text * args.times}


async def _call(tool: Any, **kwargs: Any) -> Any:
    return await tool.function(**kwargs)


async def test_valid_arguments_reach_the_handler() -> None:
    tool = make_tool("echo", "echo", EchoArgs, _echo)
    assert await _call(tool, text="a", times=2) == {"echo": "aa"}
    schema = tool.tool_def.parameters_json_schema
    assert schema["required"] == ["text"] and schema["additionalProperties"] is False


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, "text: Field required"),
        ({"text": "a", "bogus": 1}, "bogus: Extra inputs are not permitted"),
        ({"text": "a", "times": "many"}, "times: Input should be a valid integer"),
        ({cm.INVALID_JSON_KEY: "{oops"}, "not a JSON object"),
    ],
)
async def test_invalid_arguments_are_error_results(kwargs: dict[str, Any], expected: str) -> None:
    tool = make_tool("echo", "echo", EchoArgs, _echo)
    with pytest.raises(ToolFailed) as info:
        await _call(tool, **kwargs)
    message, code, remediation = cm.parse_tool_error(info.value.message)
    assert code == "invalid_arguments" and expected in message and remediation


@pytest.mark.parametrize(
    ("error", "code", "remediation"),
    [
        (WorkspaceStopped(), "workspace_stopped", "start_workspace"),
        (AgentRequestFailed("no such file", status=404, agent_code="not_found"), "not_found", None),
        (NotFound("template x not found"), "not_found", None),
        (RuntimeError("boom"), "internal", None),
    ],
)
async def test_handler_errors_become_typed_error_results(
    error: Exception, code: str, remediation: str | None
) -> None:
    async def failing(args: EchoArgs) -> dict[str, Any]:
        raise error

    tool = make_tool("echo", "echo", EchoArgs, failing)
    with pytest.raises(ToolFailed) as info:
        await _call(tool, text="x")
    assert info.value == tool_error(error)
    part = cm.from_model_messages(
        [
            pai.ModelRequest(
                parts=[
                    pai.ToolReturnPart(
                        tool_name="echo",
                        content=info.value.message,
                        tool_call_id="c",
                        outcome="failed",
                    )
                ]
            )
        ]
    )[0].parts[0]
    assert isinstance(part, cm.ToolResultPart)
    assert part.is_error and part.error_code == code and part.remediation == remediation


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("30s", 30.0),
        ("1m30s", 90.0),
        ("500ms", 0.5),
        ("2h", 7200.0),
        (12, 12.0),
        ("7", 7.0),
        ("1d", 86400.0),
        ("2M", 120.0),
    ],
)
def test_parse_duration(value: Any, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    "value", ["", "soon", "10x", "-5s", 0, "0s", "s10", True, "nan", "inf", "1e3", float("nan")]
)
def test_parse_duration_rejects(value: Any) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


def test_cap_output_cuts_on_utf8_boundary() -> None:
    assert cap_output("abc", 10) == ("abc", False)
    text, cut = cap_output("é" * 10, 5)  # 2 bytes each
    assert cut and text == "éé"


def test_repair_dangling_calls_closes_unanswered_calls() -> None:
    history = [
        cm.ChatMessage(role="user", parts=[cm.TextPart(text="hi")]),
        cm.ChatMessage(
            role="assistant",
            parts=[
                cm.ToolCallPart(tool_call_id="a", tool_name="execute"),
                cm.ToolCallPart(tool_call_id="b", tool_name="read_file"),
            ],
        ),
        cm.ChatMessage(
            role="tool",
            parts=[cm.ToolResultPart(tool_call_id="a", tool_name="execute", result={})],
        ),
    ]
    repaired = well_formed(history)
    assert len(repaired) == 3  # the step's results, real and synthetic, in one message
    _, fix = repaired[2].parts
    assert isinstance(fix, cm.ToolResultPart)
    assert fix.tool_call_id == "b" and fix.is_error and fix.error_code == "interrupted"
    assert well_formed(history[:1]) == history[:1]
