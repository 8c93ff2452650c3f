"""Bounds of the API's input fields, in one place (the request models use them, so the
OpenAPI document states them). The whole body is bounded separately by
``Settings.api_max_body_bytes`` (see :mod:`tether.api.guard`)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from tether.workspaces.templates import TTL_MS_MAX

NAME_MAX = 64  # workspace, template, user names and refs
TITLE_MAX = 256
MODEL_SPEC_MAX = 256
MESSAGE_MAX_CHARS = 256 * 1024  # one chat message: its text, or its parts as JSON
MESSAGE_MAX_PARTS = 64
TEMPLATE_SOURCE_MAX_CHARS = 256 * 1024  # one template file (YAML)
PARAMETERS_MAX = 64
PARAMETER_VALUE_MAX = 4096
COMMAND_MAX_CHARS = 64 * 1024
PATH_MAX = 4096
SEQ_MAX = 2**63 - 1


def _parts_size(parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # image data has its own bound (Settings.image_max_bytes, chatd/images.py)
    sized = [
        {**p, "data": ""} if isinstance(p, dict) and p.get("type") == "image" else p for p in parts
    ]
    if len(json.dumps(sized, ensure_ascii=False)) > MESSAGE_MAX_CHARS:
        raise ValueError(f"the message is larger than {MESSAGE_MAX_CHARS} characters")
    return parts


MessageText = Annotated[str, Field(min_length=1, max_length=MESSAGE_MAX_CHARS)]
MessageParts = Annotated[
    list[dict[str, Any]],
    Field(min_length=1, max_length=MESSAGE_MAX_PARTS),
    AfterValidator(_parts_size),
]
Name = Annotated[str, Field(min_length=1, max_length=NAME_MAX)]
Parameters = Annotated[
    dict[
        Annotated[str, Field(max_length=NAME_MAX)],
        Annotated[str, Field(max_length=PARAMETER_VALUE_MAX)],
    ],
    Field(max_length=PARAMETERS_MAX),
]
TtlMs = Annotated[int, Field(ge=1, le=TTL_MS_MAX)]
