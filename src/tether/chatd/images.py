"""Images as user message parts: ``{"type": "image", "media_type": ..., "data": <base64>}``.

What a user may send is checked here, before anything is stored or queued:

* ``media_type`` is one of :data:`MEDIA_TYPES` (no SVG: it is a script container);
* ``data`` is strict base64 (no whitespace, correct padding) → else 422 ``invalid_image``;
* the decoded bytes start with the magic of the declared type, so HTML or SVG sent as a
  "png" is refused (422 ``invalid_image``);
* at most ``Settings.image_max_bytes`` decoded (413 ``payload_too_large``) and
  ``Settings.image_max_count`` images per message.

Stored as sent (base64) in the message's parts; the turn gives the model a pydantic-ai
``BinaryContent`` (chatd/messages/convert.py), and only models configured with ``images: true``
(llm/config.py) may receive them — the service refuses the message otherwise
(``images_not_supported``). Nothing serves the bytes back except ``GET …/messages`` as JSON.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from tether.errors import InvalidInput, PayloadTooLarge

MEDIA_TYPES: dict[str, tuple[bytes, ...]] = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
    "image/webp": (b"RIFF",),  # and "WEBP" at offset 8 (below)
}
IMAGE_KEYS = frozenset({"type", "media_type", "data"})


class InvalidImage(InvalidInput):
    """The image is not what it claims to be."""

    code = "invalid_image"
    http_status = 422


@dataclass(frozen=True)
class ImageRules:
    max_bytes: int
    max_count: int

    @classmethod
    def of(cls, settings: Any) -> ImageRules:
        return cls(settings.image_max_bytes, settings.image_max_count)


def magic_matches(media_type: str, data: bytes) -> bool:
    if not any(data.startswith(m) for m in MEDIA_TYPES[media_type]):
        return False
    return media_type != "image/webp" or data[8:12] == b"WEBP"


def check_image(index: int, part: dict[str, Any], rules: ImageRules) -> dict[str, Any]:
    """The stored form of one image part, or a typed error naming ``content[index]``."""
    where = f"content[{index}]"
    if set(part) - IMAGE_KEYS:
        extra = sorted(set(part) - IMAGE_KEYS)
        raise InvalidInput(f"{where}: unknown fields {extra}", field=where)
    media_type = part.get("media_type")
    if media_type not in MEDIA_TYPES:
        raise InvalidImage(
            f"{where}.media_type must be one of {', '.join(MEDIA_TYPES)}",
            field=f"{where}.media_type",
        )
    data = part.get("data")
    if not isinstance(data, str) or not data:
        raise InvalidImage(f"{where}.data must be a base64 string", field=f"{where}.data")
    if len(data) > (rules.max_bytes + 2) // 3 * 4:  # before decoding anything
        raise PayloadTooLarge(
            f"{where}: the image is larger than {rules.max_bytes} bytes",
            field=f"{where}.data",
            limit=rules.max_bytes,
        )
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidImage(f"{where}.data is not valid base64", field=f"{where}.data") from None
    if len(raw) > rules.max_bytes:
        raise PayloadTooLarge(
            f"{where}: the image is larger than {rules.max_bytes} bytes",
            field=f"{where}.data",
            limit=rules.max_bytes,
        )
    if not magic_matches(media_type, raw):
        raise InvalidImage(f"{where}: the data is not a {media_type} image", field=f"{where}.data")
    return {"type": "image", "media_type": media_type, "data": data}


def count_images(parts: list[dict[str, Any]]) -> int:
    return sum(1 for p in parts if p.get("type") == "image")
