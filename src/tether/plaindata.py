"""Plain data: what tether can store in SQLite and PostgreSQL and send back as JSON.

That is ``None``, booleans, integers in the signed 64-bit range, finite floats, strings
without NUL characters or lone surrogates (valid UTF-8), lists, and dicts with such string
keys — nested at most ``max_depth`` levels. :func:`plain_problem` says what is wrong with a
value, or returns None; the API guard checks every JSON body with it, the template loader
every YAML document."""

from __future__ import annotations

import math
from typing import Any

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def clean_text(text: str) -> bool:
    """True when ``text`` has no NUL character and encodes to UTF-8 (no lone surrogate)."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def plain_problem(value: Any, *, max_depth: int) -> str | None:
    """Why ``value`` is not plain data, or None. Iterative: depth costs no stack."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > max_depth:
            return f"nested deeper than {max_depth} levels"
        if item is None or isinstance(item, bool):
            continue
        if isinstance(item, str):
            if not clean_text(item):
                return "a string holds a NUL character or a lone surrogate (not valid UTF-8)"
        elif isinstance(item, int):
            if not INT64_MIN <= item <= INT64_MAX:
                return "an integer is outside the signed 64-bit range"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return "a number is not finite (NaN, Infinity or too large)"
        elif isinstance(item, list):
            stack.extend((x, depth + 1) for x in item)
        elif isinstance(item, dict):
            for key, x in item.items():
                if not isinstance(key, str):
                    return f"a key is not a string: {key!r:.40}"
                if not clean_text(key):
                    return "a key holds a NUL character or a lone surrogate (not valid UTF-8)"
                stack.append((x, depth + 1))
        else:
            return f"unsupported value of type {type(item).__name__}"
    return None
