"""The one duration parser: ``"30s"``, ``"1m30s"``, ``"500ms"``, ``"2h"``, ``"1d"`` or a
plain number of seconds. Used by the ``execute`` tool's ``timeout`` and the CLI's
``--ttl`` / ``--expires`` options."""

from __future__ import annotations

import re

_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_BARE = re.compile(_NUMBER)
_PART = re.compile(rf"({_NUMBER})(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0}


def parse_duration(value: str | float | int, *, positive: bool = True) -> float:
    """Seconds from a duration string or a number of seconds.

    Units (case-insensitive, concatenated without spaces): ``ms``, ``s``, ``m``, ``h``,
    ``d``. Raises ``ValueError`` for anything else, for a negative duration, and (unless
    ``positive`` is False) for zero. ``nan``, ``inf`` and exponents are not durations.
    """
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
        if seconds != seconds or seconds in (float("inf"), float("-inf")):
            raise ValueError(f"invalid duration {value!r}")
    else:
        text = value.strip().lower()
        if _BARE.fullmatch(text):
            seconds = float(text)
        else:
            pos, seconds = 0, 0.0
            for match in _PART.finditer(text):
                if match.start() != pos:
                    break
                seconds += float(match[1]) * _UNITS[match[2]]
                pos = match.end()
            if pos != len(text) or not text:
                raise ValueError(
                    f'invalid duration {value!r}: use e.g. "30s", "2m", "1h30m" or seconds'
                )
    if seconds < 0 or (positive and seconds == 0):
        raise ValueError(f"invalid duration {value!r}: must be positive")
    return seconds
