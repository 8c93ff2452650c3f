"""The turn's stream events: pydantic-ai's part and tool events as ``message_part`` events
for the chat's subscribers (docs/behaviour.md §2.3), and the ``status`` payload."""

from __future__ import annotations

from typing import Any

from pydantic_ai import messages as pai

from tether.chatd import messages as cm
from tether.chatd.tools.base import ChatdDeps
from tether.domain.chat import Chat


def status_data(chat: Chat) -> dict[str, Any]:
    """The payload of a ``status`` stream event (same shape as the API's)."""
    return {
        "status": chat.status.value,
        "last_error": chat.last_error,
        "last_error_code": chat.last_error_code,
    }


def publish_part(deps: ChatdDeps, chat: Chat, event: Any, partial: list[str]) -> None:
    """Publish a model stream event; the text streamed so far goes to ``partial`` (what an
    interrupt persists)."""
    hub = deps.hub
    if isinstance(event, pai.PartStartEvent):
        part = event.part
        if isinstance(part, pai.TextPart):
            partial.append(part.content)
            hub.publish(chat.id, "message_part", {"kind": "text", "delta": part.content})
        elif isinstance(part, pai.ThinkingPart):
            hub.publish(chat.id, "message_part", {"kind": "reasoning", "delta": part.content})
        elif isinstance(part, pai.ToolCallPart):
            hub.publish(
                chat.id,
                "message_part",
                {
                    "kind": "tool-call-start",
                    "tool_call_id": part.tool_call_id,
                    "tool_name": part.tool_name,
                },
            )
    elif isinstance(event, pai.PartDeltaEvent):
        delta = event.delta
        if isinstance(delta, pai.TextPartDelta):
            partial.append(delta.content_delta)
            hub.publish(chat.id, "message_part", {"kind": "text", "delta": delta.content_delta})
        elif isinstance(delta, pai.ThinkingPartDelta) and delta.content_delta:
            hub.publish(
                chat.id, "message_part", {"kind": "reasoning", "delta": delta.content_delta}
            )


def publish_tool(deps: ChatdDeps, chat: Chat, event: Any) -> None:
    """Publish a tool call or its result (and count it)."""
    hub = deps.hub
    deps.metrics.tool_event(event)
    if isinstance(event, pai.FunctionToolCallEvent):
        hub.publish(
            chat.id,
            "message_part",
            {
                "kind": "tool-call",
                "tool_call_id": event.part.tool_call_id,
                "tool_name": event.part.tool_name,
                "args": event.part.args_as_dict(),
            },
        )
    elif isinstance(event, pai.FunctionToolResultEvent):
        part = event.part
        parts = cm.from_model_messages([pai.ModelRequest(parts=[part])])
        result = parts[0].parts[0] if parts and parts[0].parts else None
        payload: dict[str, Any] = {"kind": "tool-result", "tool_call_id": part.tool_call_id}
        if isinstance(result, cm.ToolResultPart):
            payload.update(cm.dump_parts([result])[0])
            payload["kind"] = "tool-result"
        hub.publish(chat.id, "message_part", payload)
