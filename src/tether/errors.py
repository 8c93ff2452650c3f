"""The one error tree of tether.

Every error carries a stable machine ``code`` (what the API, the stream and the model see)
and an HTTP status (used by the API's single exception handler). The docstring of each
class is its default message.

    TetherError
    ├── InvalidInput            400 invalid_input     (``field`` names the offending path)
    │   ├── PayloadTooLarge     413 payload_too_large (the request body is over the limit)
    │   └── ImagesNotSupported  422 images_not_supported (the chat's model takes no images)
    ├── Unauthorized            401 unauthorized
    ├── Forbidden               403 forbidden
    ├── NotFound                404 not_found          (also for other owners' objects)
    ├── Conflict                409 conflict           (lost compare-and-set, busy workspace)
    │   ├── QueueFull           409 queue_full
    │   ├── ChatBusy            409 chat_busy          (a turn runs; has a remediation)
    │   ├── MessageNotEditable  409 message_not_editable (not a user message, or edited)
    │   └── UsageLimitExceeded  409 usage_limit_exceeded (per-user token limit; remediation)
    ├── Timeout                 504 timeout
    ├── Overloaded              503 overloaded         (no database connection free in time)
    ├── AgentError              502 agent_error        (the in-workspace agent answered badly)
    │   ├── AgentRequestFailed  502 agent_request_failed  (agent-side error with its own code;
    │   │                       the API answers an agent's 4xx with the same 4xx)
    │   └── AgentTransportError 502 agent_transport       (connect/read failed)
    ├── ProviderError           502 provider_error     (LLM provider failed after retries)
    │   ├── ProviderTimeout     504 provider_timeout   (no answer within the model's timeout)
    │   └── ProviderUnsupported 502 provider_unsupported (the provider refuses a feature)
    ├── ContextOverflow         413 context_overflow   (the request does not fit the model's
    │                           context window even after compaction; has a remediation)
    ├── BackendError            500 backend_error      (a workspace backend failed; job error text)
    └── WorkspaceError          409                     (model-facing, each with a remediation)
        ├── NoWorkspace         no_workspace        → create_workspace
        ├── NoRunningAgent      (the latest build has no agent a chat can dial)
        │   ├── WorkspaceStopped    workspace_stopped   → start_workspace
        │   ├── WorkspaceStarting   workspace_starting  → start_workspace (waits)
        │   ├── WorkspaceDeleted    workspace_deleted   → create_workspace
        │   └── BuildFailed         build_failed        → fix the cause, start again
        ├── AgentUnreachable    agent_unreachable   → stop_workspace, then start_workspace
        ├── DialTimeout         dial_timeout        → retry once
        ├── AgentSelectionError agent_selection     → fix the template's agents
        ├── WorkspaceChanged    workspace_changed   → retry
        └── ConnectorNotConfigured connector_not_configured
"""

from __future__ import annotations

from typing import Any, ClassVar


class TetherError(Exception):
    """Something went wrong in tether."""

    code: ClassVar[str] = "internal"
    http_status: ClassVar[int] = 500

    def __init__(self, message: str | None = None, **details: Any) -> None:
        self.message = message or (type(self).__doc__ or type(self).__name__).strip()
        self.details: dict[str, Any] = details
        super().__init__(self.message)

    @property
    def status_code(self) -> int:
        """The HTTP status the API answers with: the class's ``http_status`` unless a
        subclass decides per instance."""
        return self.http_status

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}


class InvalidInput(TetherError):
    """The request is invalid."""

    code = "invalid_input"
    http_status = 400

    def __init__(self, message: str | None = None, *, field: str | None = None, **details: Any):
        if field is not None:
            details["field"] = field
        super().__init__(message, **details)
        self.field = field


class PayloadTooLarge(InvalidInput):
    """The request body is too large."""

    code = "payload_too_large"
    http_status = 413


class ImagesNotSupported(InvalidInput):
    """The chat's model does not accept images."""

    code = "images_not_supported"
    http_status = 422


class Unauthorized(TetherError):
    """Authentication is required."""

    code = "unauthorized"
    http_status = 401


class Forbidden(TetherError):
    """You are not allowed to do this."""

    code = "forbidden"
    http_status = 403


class NotFound(TetherError):
    """Not found."""

    code = "not_found"
    http_status = 404


class Conflict(TetherError):
    """The object changed meanwhile; reload and try again."""

    code = "conflict"
    http_status = 409


class QueueFull(Conflict):
    """Too many queued messages for this chat."""

    code = "queue_full"


class _Remedied(Conflict):
    remediation: str = ""

    def __init__(self, message: str | None = None, *, remediation: str, **details: Any):
        super().__init__(message, remediation=remediation, **details)  # SDKs read details
        self.remediation = remediation

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["remediation"] = self.remediation
        return data


class ChatBusy(_Remedied):
    """The chat is running a turn."""

    code = "chat_busy"


class MessageNotEditable(Conflict):
    """Only the user's own text messages that are still in the history can be edited."""

    code = "message_not_editable"


class UsageLimitExceeded(_Remedied):
    """The user has used their token allowance for this period."""

    code = "usage_limit_exceeded"


class Timeout(TetherError):
    """The operation did not finish within its deadline."""

    code = "timeout"
    http_status = 504


class Overloaded(TetherError):
    """The server is too busy to answer now (no database connection was free in time); try
    again shortly."""

    code = "overloaded"
    http_status = 503


class AgentError(TetherError):
    """The workspace agent failed to answer."""

    code = "agent_error"
    http_status = 502


class AgentRequestFailed(AgentError):
    """The workspace agent refused the request."""

    code = "agent_request_failed"

    def __init__(
        self,
        message: str | None = None,
        *,
        status: int = 500,
        agent_code: str = "error",
        **details: Any,
    ) -> None:
        super().__init__(message, status=status, agent_code=agent_code, **details)
        self.status = status
        self.agent_code = agent_code

    @property
    def status_code(self) -> int:
        # The agent judged the client's input (bad workdir, unknown process, file too
        # large…): the client gets that 4xx. 401/403 mean the server's dial secret was
        # refused, and 5xx the agent's own failure: both are a bad gateway for the client.
        if 400 <= self.status < 500 and self.status not in (401, 403, 407):
            return self.status
        return self.http_status


class AgentTransportError(AgentError):
    """Could not talk to the workspace agent.

    ``sent`` is False when the failure happened before the request left (connect refused
    or timed out): such a request is safe to retry even when it is not idempotent."""

    code = "agent_transport"

    def __init__(self, message: str | None = None, *, sent: bool = True, **details: Any):
        super().__init__(message, sent=sent, **details)
        self.sent = sent


class ProviderError(TetherError):
    """The language model provider failed."""

    code = "provider_error"
    http_status = 502


class ProviderTimeout(ProviderError):
    """The language model provider did not answer within the model's timeout."""

    code = "provider_timeout"
    http_status = 504


class ProviderUnsupported(ProviderError):
    """The language model provider does not support what the request needs."""

    code = "provider_unsupported"


class ContextOverflow(TetherError):
    """The request does not fit the model's context window."""

    code = "context_overflow"
    http_status = 413
    remediation: ClassVar[str] = (
        "send a shorter message (put large text in a workspace file and ask the model to "
        "read it), run /clear for a fresh context, or switch the chat to a model with a "
        "larger context window"
    )

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["remediation"] = self.remediation
        return data


class WorkspaceError(TetherError):
    """The workspace cannot serve this request."""

    code = "workspace_error"
    http_status = 409
    remediation: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["remediation"] = self.remediation
        return data


class NoWorkspace(WorkspaceError):
    """No workspace is associated with this chat; use create_workspace to create one."""

    code = "no_workspace"
    remediation = "create_workspace"


class NoRunningAgent(WorkspaceError):
    """The workspace has no running agent."""

    code = "no_running_agent"
    remediation = "start_workspace"


class WorkspaceStopped(NoRunningAgent):
    """The workspace has no running agent; it is stopped. Use start_workspace to start it."""

    code = "workspace_stopped"
    remediation = "start_workspace"


class WorkspaceStarting(NoRunningAgent):
    """The workspace is still being built; start_workspace waits for the build and the agent."""

    code = "workspace_starting"
    remediation = "start_workspace (it waits for the running build)"


class WorkspaceDeleted(NoRunningAgent):
    """The workspace was deleted; use create_workspace to create a new one."""

    code = "workspace_deleted"
    remediation = "create_workspace"


class AgentUnreachable(WorkspaceError):
    """The workspace agent is not reachable; call stop_workspace, then start_workspace."""

    code = "agent_unreachable"
    remediation = "stop_workspace, then start_workspace"


class DialTimeout(WorkspaceError):
    """Connecting to the workspace agent timed out; retry once, then restart the workspace."""

    code = "dial_timeout"
    remediation = "retry once"


class BuildFailed(NoRunningAgent):
    """The workspace build failed; read the build log, fix the cause and start again."""

    code = "build_failed"
    remediation = "start_workspace after fixing the cause"


class AgentSelectionError(WorkspaceError):
    """The workspace has several agents and none is marked for chat."""

    code = "agent_selection"
    remediation = "mark exactly one agent with chat: true in the template"


class WorkspaceChanged(WorkspaceError):
    """The chat's workspace changed while connecting; retry."""

    code = "workspace_changed"
    remediation = "retry"


class ConnectorNotConfigured(WorkspaceError):
    """The workspace agent connector is not configured."""

    code = "connector_not_configured"


class BackendError(TetherError):
    """The workspace backend failed."""

    code = "backend_error"
    http_status = 500
