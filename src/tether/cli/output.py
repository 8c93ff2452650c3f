"""How commands print: Rich for people, one JSON document on stdout with ``--json``.

Progress (build logs, spinners) goes to stdout for people and to stderr in JSON mode, so
stdout stays a single parseable document. Errors always go to stderr as ``error: …``."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel
from rich.console import Console
from rich.table import Table
from rich.text import Text


def to_jsonable(data: Any) -> Any:
    if isinstance(data, BaseModel):
        return data.model_dump(mode="json")
    if isinstance(data, list | tuple):
        return [to_jsonable(item) for item in data]
    if isinstance(data, dict):
        return {key: to_jsonable(value) for key, value in data.items()}
    return data


class Output:
    def __init__(self, json_mode: bool = False, *, json_lines: bool = False) -> None:
        self.json_mode = json_mode
        # Streaming commands print one JSON object per line (NDJSON): their documents,
        # errors included, must stay on one line.
        self.json_lines = json_lines
        self.out = Console(highlight=False, soft_wrap=True)
        self.err = Console(stderr=True, highlight=False, soft_wrap=True)

    @property
    def progress(self) -> Console:
        """Where live progress goes (never stdout in JSON mode)."""
        return self.err if self.json_mode else self.out

    def json(self, data: Any) -> None:
        indent = None if self.json_lines else 2
        sys.stdout.write(json.dumps(to_jsonable(data), indent=indent, default=str) + "\n")
        sys.stdout.flush()

    def emit(self, data: Any, text: str) -> None:
        """``data`` as JSON in JSON mode, else the human ``text``."""
        if self.json_mode:
            self.json(data)
        else:
            self.line(text)

    def line(self, text: str, style: str | None = None) -> None:
        """A line for people (suppressed in JSON mode); never interpreted as markup."""
        if not self.json_mode:
            self.out.print(Text(text, style=style or ""))

    def note(self, text: str, style: str | None = None) -> None:
        """A remark on stderr (shown in both modes)."""
        self.err.print(Text(text, style=style or ""))

    def error(self, message: str, code: str | None = None, details: Any = None) -> None:
        suffix = f" [{code}]" if code else ""
        self.err.print(Text(f"error: {message}{suffix}", style="red"), soft_wrap=True)
        if self.json_mode:
            self.json({"error": {"code": code, "message": message, "details": details or {}}})

    def table(self, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        table = Table(*columns, box=None, pad_edge=False, header_style="bold")
        for row in rows:
            table.add_row(*(Text("" if v is None else str(v)) for v in row))
        self.out.print(table)

    def fields(self, pairs: Iterable[tuple[str, Any]]) -> None:
        """``key: value`` lines, keys aligned."""
        items = list(pairs)
        width = max((len(k) for k, _ in items), default=0)
        for key, value in items:
            self.out.print(Text(f"{key + ':':<{width + 1}} ", style="bold") + Text(str(value)))
