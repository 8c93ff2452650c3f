"""Scripted (offline) models built on pydantic-ai's ``FunctionModel``, for tests and the demo.

A script is a list of steps; each model request consumes the next step, and once the script
is used up the model says ``"done."``. Steps are declarative (:class:`Say`, :class:`Call`,
:class:`CallMany`) or decided from the conversation so far (:class:`Then`, or any callable
``fn(messages) -> step``).

Position in the script is derived from the messages of the request, never from a counter
on the model, so one model object serves any number of concurrent chats deterministically.
By default (``per_turn=True``) the position is the number of model responses since the last
user prompt: every user turn replays the script from its first step. With
``per_turn=False`` it is the number of responses in the whole conversation, so a script can
span several turns.

Both a plain and a streaming function are provided: streamed text arrives word by word, so
subscribers see deltas in pieces.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from pydantic_ai import messages as pai
from pydantic_ai.models.function import AgentInfo, DeltaToolCall, DeltaToolCalls, FunctionModel
from pydantic_core import to_jsonable_python

DONE_TEXT = "done."
_MAX_THEN_DEPTH = 16


@dataclass(frozen=True)
class Say:
    """Answer with text (ends the turn)."""

    text: str


@dataclass(frozen=True)
class Call:
    """Call one tool. ``tool_call_id`` defaults to a deterministic id unique in the chat."""

    tool_name: str
    args: dict[str, Any] = field(default_factory=dict)
    tool_call_id: str | None = None


@dataclass(frozen=True)
class CallMany:
    """Call several tools in one response (parallel tool calls)."""

    calls: Sequence[Call]


@dataclass(frozen=True)
class Then:
    """Decide the step from the messages seen so far (e.g. from earlier tool results)."""

    fn: Callable[[list[pai.ModelMessage]], Step]


Step: TypeAlias = Say | Call | CallMany | Then | Callable[[list[pai.ModelMessage]], "Step"]
RequestHook: TypeAlias = Callable[[list[pai.ModelMessage], AgentInfo], None]


def script_model(
    steps: Sequence[Step],
    *,
    per_turn: bool = True,
    model_name: str = "scripted",
    on_request: RequestHook | None = None,
) -> FunctionModel:
    """A ``FunctionModel`` that plays ``steps`` (see the module docstring).

    ``on_request`` is called with the messages and ``AgentInfo`` of every request (tests use
    it to look at instructions and history).
    """
    script = tuple(steps)

    def decide(messages: list[pai.ModelMessage], info: AgentInfo) -> tuple[Say | CallMany, int]:
        if on_request is not None:
            on_request(messages, info)
        position = turn_position(messages) if per_turn else _count_responses(messages)
        step: Step = script[position] if position < len(script) else Say(DONE_TEXT)
        return _resolve(step, messages), _count_responses(messages)

    async def respond(messages: list[pai.ModelMessage], info: AgentInfo) -> pai.ModelResponse:
        step, serial = decide(messages, info)
        if isinstance(step, Say):
            return pai.ModelResponse(parts=[pai.TextPart(content=step.text)])
        return pai.ModelResponse(
            parts=[
                pai.ToolCallPart(
                    tool_name=call.tool_name, args=dict(call.args), tool_call_id=call_id
                )
                for call_id, call in _with_ids(step, serial)
            ]
        )

    async def stream(
        messages: list[pai.ModelMessage], info: AgentInfo
    ) -> AsyncIterator[str | DeltaToolCalls]:
        step, serial = decide(messages, info)
        if isinstance(step, Say):
            for chunk in text_chunks(step.text):
                yield chunk
            return
        yield {
            index: DeltaToolCall(
                name=call.tool_name, json_args=json.dumps(call.args), tool_call_id=call_id
            )
            for index, (call_id, call) in enumerate(_with_ids(step, serial))
        }

    return FunctionModel(respond, stream_function=stream, model_name=model_name)


def text_chunks(text: str) -> list[str]:
    """Split text into word-sized pieces (whitespace kept) for streaming; never empty."""
    return re.findall(r"\s*\S+\s*", text) or [text]


def _is_user_turn(message: pai.ModelMessage) -> bool:
    """A request that holds a real user prompt. pydantic-ai also sends notices as user
    prompts (``<system>The following tool(s) are now available…``, when tools appear
    mid-run): those do not start a new turn."""
    return isinstance(message, pai.ModelRequest) and any(
        isinstance(p, pai.UserPromptPart)
        and not (isinstance(p.content, str) and p.content.startswith("<system>"))
        for p in message.parts
    )


def turn_position(messages: Sequence[pai.ModelMessage]) -> int:
    """Number of model responses since the last request holding a user prompt."""
    count = 0
    for message in reversed(messages):
        if isinstance(message, pai.ModelResponse):
            count += 1
        elif _is_user_turn(message):
            break
    return count


def _count_responses(messages: Sequence[pai.ModelMessage]) -> int:
    return sum(isinstance(m, pai.ModelResponse) for m in messages)


def _resolve(step: Step, messages: list[pai.ModelMessage]) -> Say | CallMany:
    for _ in range(_MAX_THEN_DEPTH):
        if isinstance(step, Say | CallMany):
            return step
        if isinstance(step, Call):
            return CallMany([step])
        step = step.fn(messages) if isinstance(step, Then) else step(messages)
    raise RuntimeError(f"scripted step did not settle after {_MAX_THEN_DEPTH} Then()s")


def _with_ids(step: CallMany, serial: int) -> list[tuple[str, Call]]:
    # The serial (responses so far in the chat) makes ids unique per chat and deterministic.
    return [
        (call.tool_call_id or f"call-{serial}-{index}", call)
        for index, call in enumerate(step.calls)
    ]


# --- reading tool results back ---------------------------------------------------------------


@dataclass(frozen=True)
class SeenResult:
    """A tool result found in the conversation: parsed JSON ``value`` and whether it failed."""

    tool_name: str
    value: Any
    is_error: bool

    @property
    def error_text(self) -> str:
        value = self.value
        if isinstance(value, dict) and "error" in value:
            value = value["error"]
        return value if isinstance(value, str) else json.dumps(value)


def current_turn(messages: Sequence[pai.ModelMessage]) -> list[pai.ModelMessage]:
    """The messages since (and including) the last request holding a user prompt."""
    for index in range(len(messages) - 1, -1, -1):
        if _is_user_turn(messages[index]):
            return list(messages[index:])
    return list(messages)


def tool_results(messages: Sequence[pai.ModelMessage]) -> list[SeenResult]:
    """Every tool result in ``messages``, oldest first, with JSON text parsed."""
    seen: list[SeenResult] = []
    for message in messages:
        if not isinstance(message, pai.ModelRequest):
            continue
        for part in message.parts:
            if isinstance(part, pai.ToolReturnPart):
                value = _parse(to_jsonable_python(part.content, fallback=str))
                failed = part.outcome != "success" or (isinstance(value, dict) and "error" in value)
                seen.append(SeenResult(part.tool_name, value, failed))
    return seen


def last_result(messages: Sequence[pai.ModelMessage], tool_name: str) -> SeenResult | None:
    """The latest result of ``tool_name`` in the current turn, if any."""
    for result in reversed(tool_results(current_turn(messages))):
        if result.tool_name == tool_name:
            return result
    return None


def _parse(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


# --- ready-made models -------------------------------------------------------------------------

HELLO_PATH = "hello.py"
HELLO_SOURCE = "print('hello from tether')\n"
HELLO_COMMAND = "python3 hello.py"


def demo_model() -> FunctionModel:
    """Scripted offline demo model: no LLM, a fixed plan driven by real tool results.

    Every user turn: ``list_templates {}`` → ``create_workspace`` from the first template →
    ``write_file hello.py`` → ``execute python3 hello.py`` → ``read_file hello.py`` → an
    answer quoting the output of ``execute``. If a tool fails, it explains the error text in
    its answer and stops.
    """
    return script_model(
        [
            Call("list_templates", {}),
            Then(_demo_create_workspace),
            Then(
                _after(
                    "create_workspace",
                    Call("write_file", {"path": HELLO_PATH, "content": HELLO_SOURCE}),
                )
            ),
            Then(_after("write_file", Call("execute", {"command": HELLO_COMMAND}))),
            Then(_after("execute", Call("read_file", {"path": HELLO_PATH}))),
            Then(_demo_answer),
        ],
        model_name="scripted-demo",
    )


def zero_latency_execute_model() -> FunctionModel:
    """Benchmark model: every turn calls ``execute {"command": "true"}`` once, then says ``ok``."""
    return script_model(
        [Call("execute", {"command": "true"}), Say("ok")], model_name="scripted-bench"
    )


def _failure(messages: list[pai.ModelMessage], tool_name: str) -> Say | None:
    result = last_result(messages, tool_name)
    if result is None:
        return Say(f"I expected a result from {tool_name} but did not get one, so I stopped.")
    if result.is_error:
        return Say(
            f"The {tool_name} tool failed, so I stopped here. The error was:\n\n{result.error_text}"
        )
    return None


def _after(tool_name: str, step: Call) -> Callable[[list[pai.ModelMessage]], Step]:
    def decide(messages: list[pai.ModelMessage]) -> Step:
        return _failure(messages, tool_name) or step

    return decide


def _demo_create_workspace(messages: list[pai.ModelMessage]) -> Step:
    if failed := _failure(messages, "list_templates"):
        return failed
    result = last_result(messages, "list_templates")
    templates = result.value.get("templates") if result and isinstance(result.value, dict) else None
    if not templates or not isinstance(templates[0], dict) or "id" not in templates[0]:
        return Say("There are no templates to create a workspace from, so I stopped.")
    return Call("create_workspace", {"template_id": templates[0]["id"]})


def _demo_answer(messages: list[pai.ModelMessage]) -> Step:
    if failed := _failure(messages, "read_file"):
        return failed
    executed = last_result(messages, "execute")
    value = executed.value if executed is not None else None
    output = value.get("output", "") if isinstance(value, dict) else str(value)
    exit_code = value.get("exit_code") if isinstance(value, dict) else None
    return Say(
        f"I created a workspace, wrote {HELLO_PATH} and ran `{HELLO_COMMAND}` "
        f"(exit code {exit_code}). It printed:\n\n```\n{str(output).rstrip()}\n```\n"
    )
