"""What every chat tool shares: its dependencies, its context, and how it becomes a
pydantic-ai tool whose failures are results the model reads, never turn failures.

Error results. A tool handler returns a JSON object (a normal result) or raises. Raised
errors become **failed** tool results: the tool raises ``pydantic_ai.exceptions.ToolFailed``
with the text of :func:`tether.chatd.messages.render_tool_error` —
``"[<code>] <message>\\nRemediation: <remediation>"`` — and
:func:`~tether.chatd.messages.from_model_messages` persists that as a tool-result part with
``is_error=True``, ``error_code`` and ``remediation`` (``result`` is the message). ToolFailed
does not consume pydantic-ai's retry budget, so a tool can fail any number of times without
ending the turn. Mapping:

* :class:`~tether.errors.WorkspaceError` (no_workspace, workspace_stopped, …) → its code and
  remediation;
* :class:`~tether.errors.AgentRequestFailed` (agent-side errors) → the agent's code
  (``not_found``, ``invalid_input``, …);
* invalid arguments → ``invalid_arguments`` with what is wrong;
* any other :class:`~tether.errors.TetherError` → its code; anything else → ``internal``.

"Soft" failures the UI needs structured fields for (a failed build with its ``build_id``)
are normal results with an ``error`` key, (docs/behaviour.md §5.1).
"""

from __future__ import annotations

import asyncio
import copy
import functools
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import InitVar, dataclass, field
from typing import Any, TypeVar, cast

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_ai import Tool
from pydantic_ai.exceptions import ToolFailed

from tether.agentconn.client import AgentClient
from tether.chatd.binding import ChatConnections, Dialer
from tether.chatd.configcache import ConfigCache
from tether.chatd.messages import INVALID_JSON_KEY, render_tool_error
from tether.chatd.service import ChatService
from tether.chatd.stream import ChatStreamHub
from tether.clock import Clock
from tether.db.agents import AgentStore
from tether.db.chatconfig import ChatConfig, ChatConfigStore
from tether.db.chats import ChatStore
from tether.db.pubsub import EventBus
from tether.db.templates import TemplateStore
from tether.db.users import UserStore
from tether.db.workspaces import WorkspaceStore
from tether.domain.chat import Chat
from tether.domain.workspace import JobStatus, Transition
from tether.errors import (
    AgentRequestFailed,
    AgentUnreachable,
    BuildFailed,
    TetherError,
    WorkspaceDeleted,
    WorkspaceError,
    WorkspaceStarting,
    WorkspaceStopped,
)
from tether.observability.metrics import Metrics
from tether.settings import Settings
from tether.workspaces.service import WorkspaceService

log = logging.getLogger(__name__)

T = TypeVar("T")
ArgsT = TypeVar("ArgsT", bound=BaseModel)

INVALID_ARGUMENTS = "invalid_arguments"


@dataclass
class ChatdDeps:
    """The long-lived objects chatd uses (taken from the wiring graph)."""

    settings: Settings
    clock: Clock
    bus: EventBus
    chats: ChatStore
    agents: AgentStore
    workspace_store: WorkspaceStore
    template_store: TemplateStore
    workspaces: WorkspaceService
    users: UserStore
    hub: ChatStreamHub
    dialer: Dialer
    metrics: Metrics = field(default_factory=Metrics)  # the graph's, from install.chatd_deps
    # admin chat settings (template allowlist, prompts); None in unit tests: the defaults
    config: ChatConfigStore | None = None
    # the same, cached behind the bus (chatd/configcache.py); preferred when set
    config_cache: ConfigCache | None = None
    # every chat state change goes through ``chat_service``: the graph's (``service``), or
    # made from the parts above when not given (unit tests)
    service: InitVar[ChatService | None] = None
    chat_service: ChatService = field(init=False)

    def __post_init__(self, service: ChatService | None) -> None:
        self.chat_service = service or ChatService(
            chats=self.chats,
            workspaces=self.workspaces,
            hub=self.hub,
            bus=self.bus,
            clock=self.clock,
            max_queued=self.settings.max_queued_messages,
        )

    async def chat_config(self) -> ChatConfig:
        """The admin chat settings (an admin's change applies to the next call)."""
        if self.config_cache is not None:
            return await self.config_cache.get()
        return await self.config.get() if self.config is not None else ChatConfig()


@dataclass
class ChatState:
    """What the worker keeps per chat across turns: the connection cache and the workspace
    mutex shared by create/start/stop_workspace (CW-22: parallel calls never duplicate)."""

    conns: ChatConnections
    workspace_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # every call up to this message seq has its result: this process ended the chat's last
    # turn with no call open (0: unknown, the next turn scans the whole history; chatd/history.py)
    clean_through: int = 0
    # the chat's latest compaction number as the worker's claim read it (None: unknown); a
    # running chat is compacted only by its own turn, so the turn's first history read
    # trusts it instead of querying (chatd/historycache.py)
    compaction_number: int | None = None
    # and the seq of its last message, as the same claim read it: a cached history that
    # ends there is not read again (chatd/historycache.py)
    last_seq: int | None = None
    # the chat's tools and pydantic-ai agent, reused by its next turns (chatd/turn/agents.py)
    turn_agent: object | None = None


@dataclass
class ToolContext:
    """One turn's view for the tools: the chat (as of the turn start), its state, deps."""

    deps: ChatdDeps
    chat: Chat
    state: ChatState
    # Set by the turn runner: re-reads instruction files and primes the MCP cache once a
    # lifecycle tool has seen the (new) agent ready, so the following steps see both.
    on_workspace_ready: Callable[[], Awaitable[None]] | None = None

    def __post_init__(self) -> None:
        # a turn's pre-LLM steps get a fresh pre-dial gate answer (docs/behaviour.md §4.3)
        self.conns.forget_gate()

    @property
    def chat_id(self) -> uuid.UUID:
        return self.chat.id

    @property
    def conns(self) -> ChatConnections:
        return self.state.conns

    async def with_agent(
        self, fn: Callable[[AgentClient], Awaitable[T]], *, retry_request: bool = True
    ) -> T:
        """Run ``fn`` on the chat's agent connection — the one seam every workspace tool
        uses, so failures are typed and a transport failure evicts and redials once."""

        async def call(conn: Any) -> T:
            return await fn(cast(AgentClient, conn))

        try:
            return await self.conns.run(call, retry_request=retry_request)
        except (WorkspaceStopped, AgentUnreachable) as err:
            explained = await self._explain(err)
            if explained is err:
                raise
            raise explained from err

    async def _explain(self, err: WorkspaceError) -> WorkspaceError:
        """Say why the workspace has no usable agent, from its latest build: deleted, still
        building, or its build failed are each their own code (a model told "stopped" for
        a deleted or a broken workspace would start it in vain). One read, on this error
        path only."""
        workspace_id = self.conns.binding.workspace_id
        if workspace_id is None:
            return err
        store = self.deps.workspace_store
        if store is None:  # unit-test deps without a workspace store
            return err
        try:
            ws = await store.get(workspace_id)
            latest = await store.latest_build(workspace_id)
        except Exception as exc:  # best effort: the original error is still true
            log.warning("chat %s: could not explain %s: %s", self.chat_id, err.code, exc)
            return err
        if ws.deleted or (latest is not None and latest.transition is Transition.DELETE):
            return WorkspaceDeleted()
        if latest is None or latest.transition is not Transition.START:
            return err
        build = {"build_id": str(latest.id)}
        if latest.status.in_progress:
            return WorkspaceStarting(**build)
        if latest.status is JobStatus.FAILED and isinstance(err, WorkspaceStopped):
            return BuildFailed(
                f"the workspace's last build (#{latest.build_number}) failed: "
                f"{latest.job.error or 'no error text'}; fix the cause, then start_workspace",
                **build,
            )
        if latest.status is JobStatus.CANCELED and isinstance(err, WorkspaceStopped):
            return WorkspaceStopped("the workspace's last start was canceled; use start_workspace")
        return err

    async def workspace_ready(self) -> None:
        """A lifecycle tool saw the chat's agent ready: run the turn's hook (bounded and
        failure-tolerant itself; an error here never fails the tool)."""
        self.conns.forget_gate()
        if self.on_workspace_ready is None:
            return
        try:
            await self.on_workspace_ready()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("chat %s: workspace-ready hook failed", self.chat_id)


class Args(BaseModel):
    """Base of tool argument models: unknown keys are errors the model can fix."""

    model_config = ConfigDict(extra="forbid")


def tool_error(err: BaseException) -> ToolFailed:
    """The failed tool result the model sees for ``err`` (see the module docstring)."""
    if isinstance(err, WorkspaceError):
        return ToolFailed(render_tool_error(err.message, err.code, err.remediation or None))
    if isinstance(err, AgentRequestFailed):
        return ToolFailed(render_tool_error(err.message, err.agent_code))
    if isinstance(err, TetherError):
        return ToolFailed(render_tool_error(err.message, err.code))
    return ToolFailed(render_tool_error(f"{type(err).__name__}: {err}", "internal"))


def invalid_arguments(message: str) -> ToolFailed:
    return ToolFailed(
        render_tool_error(message, INVALID_ARGUMENTS, "fix the arguments and call the tool again")
    )


def _describe(exc: ValidationError) -> str:
    problems = []
    for e in exc.errors():
        where = ".".join(str(p) for p in e["loc"]) or "arguments"
        problems.append(f"{where}: {e['msg']}")
    return "invalid arguments: " + "; ".join(problems)


def make_tool(
    name: str,
    description: str,
    args_model: type[ArgsT],
    handler: Callable[[ArgsT], Awaitable[dict[str, Any]]],
) -> Tool[Any]:
    """A pydantic-ai tool named ``name`` whose JSON schema is ``args_model``'s.

    Arguments are validated here (not by pydantic-ai) so that invalid ones become an
    ``invalid_arguments`` error result without using up a retry budget.
    """

    async def run(**kwargs: Any) -> dict[str, Any]:
        if INVALID_JSON_KEY in kwargs:
            raise invalid_arguments(
                f"the arguments are not a JSON object: {str(kwargs[INVALID_JSON_KEY])[:200]}"
            )
        try:
            args = args_model.model_validate(kwargs)
        except ValidationError as exc:
            raise invalid_arguments(_describe(exc)) from exc
        try:
            return await handler(args)
        except ToolFailed:
            raise
        except asyncio.CancelledError:
            raise
        except Exception as err:  # a tool failure is a result, never a turn failure
            if not isinstance(err, TetherError):
                log.exception("tool %s failed unexpectedly", name)
            raise tool_error(err) from err

    return Tool.from_schema(
        run, name=name, description=description, json_schema=copy.deepcopy(_schema(args_model))
    )


@functools.cache
def _schema(args_model: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema of an argument model, computed once per model class: tools are
    rebuilt every turn and generating ~17 schemas cost ~5 ms of CPU per turn."""
    schema = args_model.model_json_schema()
    schema.pop("title", None)
    schema.setdefault("properties", {})
    return schema
