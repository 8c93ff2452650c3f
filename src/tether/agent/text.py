"""Byte-capped text helpers shared by exec output, process output and instruction files."""

from __future__ import annotations


def _utf8_head_boundary(data: bytes, cap: int) -> int:
    """The largest index <= cap that does not split a UTF-8 character of ``data``."""
    if len(data) <= cap:
        return len(data)
    cut = cap
    # Step back over continuation bytes (10xxxxxx) so the cut lands on a lead byte.
    while cut > 0 and (data[cut] & 0xC0) == 0x80:
        cut -= 1
    return cut


def cap_head(data: bytes, cap: int) -> tuple[bytes, bool]:
    """Keep at most ``cap`` bytes from the start, cut on a UTF-8 boundary; (bytes, truncated)."""
    if len(data) <= cap:
        return data, False
    return data[: _utf8_head_boundary(data, cap)], True


def cap_tail(data: bytes, cap: int) -> tuple[bytes, bool]:
    """Keep at most ``cap`` bytes from the end, starting on a UTF-8 boundary; (bytes, truncated)."""
    if len(data) <= cap:
        return data, False
    start = len(data) - cap
    while start < len(data) and (data[start] & 0xC0) == 0x80:
        start += 1
    return data[start:], True


def cap_text(text: str, cap: int) -> tuple[str, bool]:
    """Cap a string's UTF-8 encoding at ``cap`` bytes without splitting a character."""
    data = text.encode("utf-8")
    head, truncated = cap_head(data, cap)
    return head.decode("utf-8", errors="replace"), truncated


def decode(data: bytes) -> str:
    """Decode process output; invalid sequences become U+FFFD rather than failing."""
    return data.decode("utf-8", errors="replace")
