"""Image part checks (chatd/images.py) and the usage-limit period (chatd/usagelimits.py)."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime

import pytest
from pydantic_ai import messages as pai

from tether.chatd import messages as cm
from tether.chatd.context import IMAGE_CHARS, message_chars
from tether.chatd.historycache import HistoryCache
from tether.chatd.images import ImageRules, InvalidImage, check_image
from tether.chatd.models import StoredMessage
from tether.chatd.service import user_parts
from tether.chatd.usagelimits import UsageLimits, period_end, period_start
from tether.errors import InvalidInput, PayloadTooLarge

RULES = ImageRules(max_bytes=1024, max_count=2)
CHAT = uuid.uuid4()
SAMPLES = {
    "image/png": b"\x89PNG\r\n\x1a\n" + b"\x00" * 16,
    "image/jpeg": b"\xff\xd8\xff\xe0" + b"\x00" * 16,
    "image/gif": b"GIF89a" + b"\x00" * 16,
    "image/webp": b"RIFF\x10\x00\x00\x00WEBPVP8 " + b"\x00" * 8,
}


def _part(data: bytes, media_type: str) -> dict[str, str]:
    return {"type": "image", "media_type": media_type, "data": base64.b64encode(data).decode()}


@pytest.mark.parametrize("media_type", sorted(SAMPLES))
def test_each_allowed_type_passes_with_its_signature(media_type: str) -> None:
    part = _part(SAMPLES[media_type], media_type)
    assert check_image(0, part, RULES) == part


@pytest.mark.parametrize(
    ("data", "media_type"),
    [
        (b"<html><script>alert(1)</script></html>", "image/png"),
        (b'<svg xmlns="http://www.w3.org/2000/svg"/>', "image/gif"),
        (b"RIFF\x10\x00\x00\x00AVI LIST", "image/webp"),  # RIFF, but not WebP
        (SAMPLES["image/png"], "image/jpeg"),  # a real image of another type
    ],
)
def test_bytes_that_are_not_the_declared_type_are_refused(data: bytes, media_type: str) -> None:
    with pytest.raises(InvalidImage) as err:
        check_image(3, _part(data, media_type), RULES)
    assert err.value.http_status == 422 and err.value.field == "content[3].data"


def test_svg_and_unknown_types_bad_base64_and_size() -> None:
    for media_type in ("image/svg+xml", "text/html", "", None):
        with pytest.raises(InvalidImage):
            check_image(0, {"type": "image", "media_type": media_type, "data": "AAAA"}, RULES)
    for data in ("iVBOR w0K", "not base64!", "AAA", 5):
        with pytest.raises(InvalidImage):
            check_image(0, {"type": "image", "media_type": "image/png", "data": data}, RULES)
    big = SAMPLES["image/png"] + b"\x00" * 1024
    with pytest.raises(PayloadTooLarge) as err:
        check_image(0, _part(big, "image/png"), RULES)
    assert err.value.http_status == 413


def test_user_parts_accept_images_only_with_rules_and_count_them() -> None:
    image = _part(SAMPLES["image/png"], "image/png")
    with pytest.raises(InvalidInput):
        user_parts([image])  # no rules: image parts are refused
    assert user_parts([image], RULES) == [image]  # an image alone is a message
    with pytest.raises(InvalidInput) as err:
        user_parts([image, image, image], RULES)
    assert err.value.field == "content[2]"


def test_an_image_part_becomes_binary_content_and_a_fixed_estimate() -> None:
    data = SAMPLES["image/png"]
    msg = cm.ChatMessage(
        role="user",
        parts=cm.load_parts([{"type": "text", "text": "look"}, _part(data, "image/png")]),
    )
    (request,) = cm.to_model_messages([msg])
    assert isinstance(request, pai.ModelRequest)
    image = request.parts[1]
    assert isinstance(image, pai.UserPromptPart) and not isinstance(image.content, str)
    (content,) = image.content
    assert isinstance(content, pai.BinaryContent) and content.data == data
    assert message_chars(request) == len("look") + IMAGE_CHARS  # not the bytes' repr


def test_the_period_is_the_calendar_month_in_utc() -> None:
    now = datetime(2026, 12, 31, 23, 59, tzinfo=UTC)
    assert period_start(now) == datetime(2026, 12, 1, tzinfo=UTC)
    assert period_end(now) == datetime(2027, 1, 1, tzinfo=UTC)
    assert period_end(datetime(2026, 3, 1, tzinfo=UTC)) == datetime(2026, 4, 1, tzinfo=UTC)


def test_an_override_wins_over_the_default_and_null_means_no_limit() -> None:
    alice, bob, carol = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    limits = UsageLimits(default_tokens=100, users={alice: 500, bob: None})
    assert [limits.limit_for(u) for u in (alice, bob, carol)] == [500, None, 100]
    assert UsageLimits.from_json(limits.to_json()) == limits
    assert UsageLimits.from_json(None) == UsageLimits()


async def test_the_history_cache_finds_an_edit_it_was_not_told_about() -> None:
    """chatd/historycache.py: the newest cached row superseded → the entry is re-read."""
    rows: list[StoredMessage] = []

    def row(seq: int, text: str, superseded: bool = False) -> StoredMessage:
        return StoredMessage(
            id=uuid.uuid4(),
            chat_id=CHAT,
            seq=seq,
            role="user",
            parts=[{"type": "text", "text": text}],
            visibility="both",
            model=None,
            created_at=datetime.now(UTC),
            superseded=superseded,
        )

    async def load(chat: uuid.UUID, after: int) -> list[StoredMessage]:
        return [r for r in rows if r.seq > after]

    async def latest(chat: uuid.UUID) -> None:
        return None

    cache = HistoryCache(load, latest, max_messages=100)
    rows.extend([row(1, "one"), row(2, "two"), row(3, "three")])
    assert [m.seq for m in (await cache.view(CHAT)).messages] == [1, 2, 3]
    rows[1:] = [row(2, "two", True), row(3, "three", True), row(4, "TWO")]  # edit of seq 2
    entry = await cache.view(CHAT)
    assert [(m.seq, m.parts[0].text) for m in entry.messages] == [(1, "one"), (4, "TWO")]  # type: ignore[union-attr]
    rows.append(row(5, "five"))
    assert [m.seq for m in (await cache.view(CHAT)).messages] == [1, 4, 5]
