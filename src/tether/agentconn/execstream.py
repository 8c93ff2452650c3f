"""The foreground exec stream: what the agent sends while a command runs, and what the
server keeps of it when the call ends early.

The agent answers ``POST /exec`` with ``"stream": true`` by NDJSON lines::

    {"process_id": "<id>"}        first: the command runs; read it again by this id
    {"output": "<text>"}          as output arrives (UTF-8 decoded, at most the output cap)
    {"result": {<ExecResult>}}    last: the same result a non-streaming exec returns

:class:`ExecStream` accumulates the lines; :func:`exec_interrupted` turns the error that
ended a call early into one that carries ``partial_output`` and ``process_id`` (in its
details, and in its message, which is what the model reads).
"""

from __future__ import annotations

import json
from typing import TypeVar

from pydantic import ValidationError

from tether.agent.schemas import ExecResult
from tether.errors import AgentError, TetherError

E = TypeVar("E", bound=TetherError)

PARTIAL_CAP_CHARS = 32 * 1024


class ExecStream:
    """The lines received so far of one foreground exec."""

    def __init__(self, cap_chars: int = PARTIAL_CAP_CHARS) -> None:
        self.process_id: str | None = None
        self._chunks: list[str] = []
        self._size = 0
        self._cap = cap_chars
        self.truncated = False

    @property
    def output(self) -> str:
        return "".join(self._chunks)

    def feed(self, line: str) -> ExecResult | None:
        """Take one line; the final result when it is the ``result`` line."""
        if not line.strip():
            return None
        try:
            frame = json.loads(line)
        except ValueError as exc:
            raise AgentError("the agent sent a malformed exec stream line") from exc
        if not isinstance(frame, dict):
            raise AgentError("the agent sent a malformed exec stream line")
        if "result" in frame:
            try:
                result = ExecResult.model_validate(frame["result"])
            except ValidationError as exc:
                raise AgentError("the agent sent an unexpected exec result") from exc
            if result.process_id is None:
                result.process_id = self.process_id
            return result
        if isinstance(frame.get("process_id"), str):
            self.process_id = frame["process_id"]
        text = frame.get("output")
        if isinstance(text, str) and text:
            room = self._cap - self._size
            if room <= 0 or len(text) > room:
                self.truncated = True
                text = text[: max(room, 0)]
            self._chunks.append(text)
            self._size += len(text)
        return None


def exec_interrupted(err: E, stream: ExecStream) -> E:
    """``err`` with what the stream received: ``process_id`` and ``partial_output`` in its
    details and, for the model, in its message. Unchanged when the command never started
    (a request that was not sent stays safe to retry)."""
    if stream.process_id is None:
        return err
    attach_partial(err, stream.process_id, stream.output, stream.truncated)
    return err


def attach_partial(err: TetherError, process_id: str, output: str, truncated: bool) -> None:
    """Add a command's partial output and id to ``err`` (message and details)."""
    err.details.update(
        process_id=process_id, partial_output=output, partial_output_truncated=truncated
    )
    shown = output if output else "(none yet)"
    cut = " (truncated)" if truncated else ""
    err.message = (
        f"{err.message}\nThe command was started as process {process_id}; it may still be "
        f"running. Output received so far{cut}:\n{shown}\nOnce the agent answers again, "
        f"process_output with process_id {process_id!r} reads it again."
    )
    err.args = (err.message,)


def copy_partial(source: BaseException, target: TetherError) -> None:
    """Carry the partial output of ``source`` (if it has any) over to ``target``."""
    details = getattr(source, "details", None)
    if not isinstance(details, dict) or "process_id" not in details:
        return
    if "process_id" in target.details:
        return
    attach_partial(
        target,
        str(details["process_id"]),
        str(details.get("partial_output", "")),
        bool(details.get("partial_output_truncated", False)),
    )
