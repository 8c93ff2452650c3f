"""The SSE parser follows the WHATWG event-stream rules."""

from __future__ import annotations

from collections.abc import AsyncIterator

from tether.sdk.sse import SseDecoder, SseEvent, iter_sse


def decode(text: str) -> list[SseEvent]:
    decoder = SseDecoder()
    events = []
    for line in text.split("\n"):
        event = decoder.feed(line)
        if event is not None:
            events.append(event)
    return events


def test_event_id_and_json_data() -> None:
    [event] = decode('id: 7\nevent: log\ndata: {"output":"hi"}\n\n')
    assert event == SseEvent(event="log", data='{"output":"hi"}', id="7")
    assert event.json() == {"output": "hi"}


def test_multiline_data_joined_with_newlines() -> None:
    [event] = decode("data: one\ndata:two\ndata:  three\n\n")
    assert event.data == "one\ntwo\n three"
    assert event.event == "message"


def test_comments_unknown_fields_and_empty_blocks_ignored() -> None:
    events = decode(": keep-alive\n\nfoo: bar\n\nevent: x\n\ndata: a\n\n")
    assert [e.data for e in events] == ["a"]
    assert events[0].event == "message"  # the event name of a data-less block does not leak


def test_last_event_id_persists_and_retry_needs_digits() -> None:
    events = decode("id: 1\nretry: 500\ndata: a\n\nretry: soon\ndata: b\n\n")
    assert [(e.id, e.retry) for e in events] == [("1", 500), ("1", None)]


def test_field_without_colon_and_crlf() -> None:
    [event] = decode("data\r\n\r\n")
    assert event.data == ""


def test_unterminated_block_dropped() -> None:
    assert decode("data: complete\n\ndata: partial") == [SseEvent(data="complete")]


async def test_iter_sse_over_async_lines() -> None:
    async def lines() -> AsyncIterator[str]:
        for line in ["event: done", "data: 1", "", "data: 2", ""]:
            yield line

    assert [(e.event, e.data) async for e in iter_sse(lines())] == [("done", "1"), ("message", "2")]
