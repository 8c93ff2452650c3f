"""The scripted model of the web UI tests (``python:support.ui_models:MODEL``).

It picks a script by a keyword in the user's latest message, so one model serves every
browser test: ``slow`` streams a numbered reply word by word over a few seconds (long enough
to reload the page mid-turn), ``forever`` streams until interrupted, ``templates`` calls the
list_templates tool (its result holds the templates' text), ``run`` calls execute (a stopped
workspace answers with the typed error), ``xss`` answers with markup that must stay text,
``delegate`` spawns a subagent, ``build`` creates a workspace,
``long`` runs a command with a long output. Anything else gets an echo.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from pydantic_ai import messages as pai
from pydantic_ai.models.function import AgentInfo, DeltaToolCalls, FunctionModel

from tether.llm.scripted import Call, Say, Step, Then, current_turn, script_model, tool_results

SLOW_WORDS = 40
SLOW_DELAY_S = 0.1
FOREVER_DELAY_S = 0.2
XSS_REPLY = (
    'Here: <img src=x onerror="window.__xss=1"> and '
    "[click me](javascript:window.__xss=2) and **bold** and `code`."
)


def slow_text() -> str:
    return " ".join(f"w{i:02d}" for i in range(SLOW_WORDS)) + " end."


def _prompt(messages: list[pai.ModelMessage]) -> str:
    for message in current_turn(messages):
        if isinstance(message, pai.ModelRequest):
            for part in message.parts:
                if isinstance(part, pai.UserPromptPart) and isinstance(part.content, str):
                    return part.content
    return ""


def _create_from_listing(messages: list[pai.ModelMessage]) -> Step:
    listing = [r for r in tool_results(current_turn(messages)) if r.tool_name == "list_templates"]
    templates = listing[-1].value["templates"]
    template_id = next(t["id"] for t in templates if t["name"] == "python")
    return Call("create_workspace", {"template_id": template_id, "name": "agent-ws"})


_SCRIPTS = {  # first match wins
    "long": script_model([Call("execute", {"command": "seq 1 2000"}), Say("Long output.")]),
    "build": script_model(
        [Call("list_templates", {}), Then(_create_from_listing), Say("Workspace ready.")]
    ),
    "templates": script_model([Call("list_templates", {}), Say("Those are the templates.")]),
    "run": script_model([Call("execute", {"command": "echo hi"}), Say("I could not run it.")]),
    "xss": script_model([Say(XSS_REPLY)]),
    "delegate": script_model(
        [Call("spawn_agent", {"prompt": "say hi", "title": "helper"}), Say("Delegated.")]
    ),
    "slow": script_model([Say(slow_text())]),
    "forever": script_model([Say(" ".join(f"f{i}" for i in range(500)))]),
}


def _pick(messages: list[pai.ModelMessage]) -> tuple[FunctionModel, float]:
    prompt = _prompt(messages).lower()
    for key, model in _SCRIPTS.items():
        if key in prompt:
            delay = {"slow": SLOW_DELAY_S, "forever": FOREVER_DELAY_S}.get(key, 0.0)
            return model, delay
    return script_model([Say(f"You said: {_prompt(messages)}")]), 0.0


async def _respond(messages: list[pai.ModelMessage], info: AgentInfo) -> pai.ModelResponse:
    model, _ = _pick(messages)
    assert model.function is not None
    return await model.function(messages, info)  # type: ignore[no-any-return, misc]


async def _stream(
    messages: list[pai.ModelMessage], info: AgentInfo
) -> AsyncIterator[str | DeltaToolCalls]:
    model, delay = _pick(messages)
    assert model.stream_function is not None
    async for chunk in model.stream_function(messages, info):
        if delay:
            await asyncio.sleep(delay)
        yield chunk


MODEL = FunctionModel(_respond, stream_function=_stream, model_name="ui-scripted")
