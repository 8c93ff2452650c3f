"""The text of an error tool result as the model reads it:
``"[<error_code>] <message>\\nRemediation: <remediation>"``, and its inverse."""

from __future__ import annotations

import re
from typing import Any

from pydantic_ai import messages as pai

_ERROR_RE = re.compile(r"\A\[(?P<code>[A-Za-z0-9_.:-]+)\] (?P<message>.*)\Z", re.DOTALL)
_REMEDIATION_SEP = "\nRemediation: "


def render_tool_error(message: Any, code: str | None = None, remediation: str | None = None) -> str:
    """Model-facing text of an error result: ``[code] message`` plus a ``Remediation:`` line."""
    text = message if isinstance(message, str) else _json_text(message)
    if code:
        text = f"[{code}] {text}"
    if remediation:
        text = f"{text}{_REMEDIATION_SEP}{remediation}"
    return text


def parse_tool_error(text: str) -> tuple[str, str | None, str | None]:
    """Inverse of :func:`render_tool_error`: ``(message, code, remediation)``."""
    remediation: str | None = None
    head, sep, tail = text.rpartition(_REMEDIATION_SEP)
    if sep and "\n" not in tail:
        text, remediation = head, tail
    code: str | None = None
    if match := _ERROR_RE.match(text):
        code, text = match["code"], match["message"]
    return text, code, remediation


def _json_text(value: Any) -> str:
    return pai.tool_return_ta.dump_json(value).decode()
