"""LLM test helpers: refuse real provider requests, and build scripted models fluently.

``block_real_model_requests()`` sets ``pydantic_ai.models.ALLOW_MODEL_REQUESTS = False``
for its duration (restoring the previous value after): real providers (OpenAI, Anthropic,
…) then raise ``RuntimeError`` before any network I/O, while ``FunctionModel`` and
``TestModel`` keep working. A root conftest applies it to every test::

    @pytest.fixture(autouse=True)
    def _no_real_llm():
        with block_real_model_requests():
            yield
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pydantic_ai import messages as pai
from pydantic_ai.models import override_allow_model_requests
from pydantic_ai.models.function import AgentInfo, FunctionModel

from tether.llm.scripted import Call, CallMany, Say, Step, Then, script_model


@contextmanager
def block_real_model_requests() -> Iterator[None]:
    """Make every request to a real model provider fail while the context is open."""
    with override_allow_model_requests(False):
        yield


@dataclass
class SeenRequest:
    """One request a :class:`ScriptedModel` answered."""

    messages: list[pai.ModelMessage]
    instructions: str | None
    tool_names: list[str]


@dataclass
class ScriptedModel:
    """Fluent builder of a scripted model that also records what it was asked.

    >>> sm = ScriptedModel().call("execute", command="true").say("ok")
    >>> model = sm.build()          # a pydantic-ai FunctionModel
    >>> sm.requests                 # filled as the model is used

    ``per_turn`` has the meaning of :func:`tether.llm.scripted.script_model`.
    """

    per_turn: bool = True
    model_name: str = "scripted-test"
    steps: list[Step] = field(default_factory=list)
    requests: list[SeenRequest] = field(default_factory=list)

    def say(self, text: str) -> ScriptedModel:
        self.steps.append(Say(text))
        return self

    def call(self, tool_name: str, /, **args: Any) -> ScriptedModel:
        self.steps.append(Call(tool_name, args))
        return self

    def call_many(self, *calls: Call) -> ScriptedModel:
        self.steps.append(CallMany(calls))
        return self

    def then(self, step: Step) -> ScriptedModel:
        """Append any step; a callable ``fn(messages) -> step`` is wrapped in ``Then``."""
        if callable(step) and not isinstance(step, Say | Call | CallMany | Then):
            step = Then(step)
        self.steps.append(step)
        return self

    def build(self) -> FunctionModel:
        return script_model(
            list(self.steps),
            per_turn=self.per_turn,
            model_name=self.model_name,
            on_request=self._record,
        )

    def _record(self, messages: list[pai.ModelMessage], info: AgentInfo) -> None:
        self.requests.append(
            SeenRequest(
                messages=list(messages),
                instructions=info.instructions,
                tool_names=[tool.name for tool in info.function_tools],
            )
        )
