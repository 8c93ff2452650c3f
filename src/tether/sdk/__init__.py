"""tether.sdk — the Python client of the tether API (async, over httpx)."""

from tether.sdk.client import TetherClient
from tether.sdk.errors import ApiError, ServerUnreachable, WaitTimeout
from tether.sdk.models import (
    Agent,
    ApiToken,
    BackgroundStarted,
    Build,
    BuildLogs,
    BuildResult,
    ChatConfig,
    CreatedToken,
    DeletedUser,
    ExecResult,
    LogLine,
    ModelInfo,
    MyUsage,
    Template,
    UsageLimits,
    User,
    UserWithToken,
    Workspace,
)
from tether.sdk.sse import SseDecoder, SseEvent, iter_sse

__all__ = [
    "Agent",
    "ApiError",
    "ApiToken",
    "BackgroundStarted",
    "Build",
    "BuildLogs",
    "BuildResult",
    "ChatConfig",
    "CreatedToken",
    "DeletedUser",
    "ExecResult",
    "LogLine",
    "ModelInfo",
    "MyUsage",
    "ServerUnreachable",
    "SseDecoder",
    "SseEvent",
    "Template",
    "TetherClient",
    "UsageLimits",
    "User",
    "UserWithToken",
    "WaitTimeout",
    "Workspace",
    "iter_sse",
]
