"""``list_templates`` and ``read_template`` (docs/behaviour.md §5.3): only templates the
admin allowlist lets chats see (CW-24)."""

from __future__ import annotations

import math
from typing import Any

from tether.chatd.tools.lifecycle.common import (
    PAGE_SIZE,
    Lifecycle,
    ListTemplatesArgs,
    TemplateIdArgs,
    template_uuid,
)
from tether.workspaces.template_parse import spec_from_json


async def list_templates(lc: Lifecycle, args: ListTemplatesArgs) -> dict[str, Any]:
    deps = lc.deps
    config = await deps.chat_config()
    templates = [
        t for t in await deps.template_store.list(include_deprecated=False) if config.allows(t.id)
    ]
    if args.query:
        q = args.query.lower()
        templates = [
            t
            for t in templates
            if q in t.name.lower() or q in t.display_name.lower() or q in t.description.lower()
        ]
    total = len(templates)
    start = (args.page - 1) * PAGE_SIZE
    page = templates[start : start + PAGE_SIZE]
    return {
        "templates": [
            {
                "id": str(t.id),
                "name": t.name,
                "display_name": t.display_name,
                "description": t.description,
            }
            for t in page
        ],
        "count": len(page),
        "page": args.page,
        "total_pages": max(1, math.ceil(total / PAGE_SIZE)),
        "total_count": total,
    }


async def read_template(lc: Lifecycle, args: TemplateIdArgs) -> dict[str, Any]:
    deps = lc.deps
    template_id = template_uuid(args.template_id)
    await lc.allowed(template_id)
    template = await deps.template_store.get(template_id)
    parameters: list[dict[str, Any]] = []
    if template.active_version_id is not None:
        version = await deps.template_store.get_version(template.active_version_id)
        spec = spec_from_json(version.spec)
        parameters = [p.model_dump(mode="json", exclude_none=True) for p in spec.parameters]
    return {
        "id": str(template.id),
        "name": template.name,
        "display_name": template.display_name,
        "description": template.description,
        "deprecated": template.deprecated,
        "parameters": parameters,
    }
