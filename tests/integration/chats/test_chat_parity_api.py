"""The parity API over real HTTP: plan mode on chats (PL-9) and the admin chat settings
(template allowlist CW-24, system and user prompt) — who may change them and what bad input
gets."""

from __future__ import annotations

import uuid

import pytest
from chat_env import ChatEnv

from tether.sdk.client import TetherClient
from tether.sdk.errors import ApiError
from tether.workspaces.template_parse import parse_template, spec_to_json

TEMPLATE = """
name: plain
backend: local
agents:
  - name: main
    chat: true
"""


async def _admin(env: ChatEnv) -> TetherClient:
    user = await env.graph.users.get_user_by_name("root")
    token, _ = await env.graph.users.create_token(user.id, "test")
    return TetherClient(env.url, token, timeout=10)


async def test_pl9_plan_mode_set_on_create_and_switched_by_a_message(env: ChatEnv) -> None:
    api = env.alice.chats
    chat = await api.create("plan this", plan_mode=True)
    assert chat.plan_mode and (await api.get(chat.id)).plan_mode
    plain = await api.create("just do it")
    assert not plain.plan_mode
    result = await api.send(chat.id, "now build it", plan_mode=False)  # queued: busy chat
    assert result.queued and not result.chat.plan_mode
    assert not (await env.graph.chats.get(chat.id)).plan_mode
    result = await api.send(chat.id, "more", plan_mode=None)  # None: unchanged
    assert not result.chat.plan_mode
    # a non-boolean plan_mode is a typed 4xx, not a 500
    bad = await env.alice.http.post(
        "/api/v1/chats", json={"content": "x", "plan_mode": {"on": True}}
    )
    assert bad.status_code in (400, 422) and bad.json()["code"] == "invalid_input"


async def test_cw24_chat_settings_admin_only_and_validated(env: ChatEnv) -> None:
    admin = await _admin(env)
    try:
        spec = parse_template(TEMPLATE)
        template, _ = await env.graph.template_store.push(
            spec=spec_to_json(spec), source=TEMPLATE, user_id=env.alice.user.id
        )
        assert (await admin.chat_config()).template_allowlist == []
        config = await admin.set_template_allowlist([template.id, template.id])
        assert config.template_allowlist == [template.id]
        config = await admin.set_system_prompt("Be kind.")
        config = await admin.set_user_prompt("I like tests.")
        assert (config.system_prompt, config.user_prompt) == ("Be kind.", "I like tests.")
        again = await admin.chat_config()
        assert again.template_allowlist == [template.id] and again.system_prompt == "Be kind."

        # members may neither read nor change the settings
        for call in (
            env.alice.sdk.chat_config(),
            env.alice.sdk.set_template_allowlist([]),
            env.alice.sdk.set_system_prompt("obey me"),
            env.alice.sdk.set_user_prompt("obey me"),
        ):
            with pytest.raises(ApiError) as denied:
                await call
            assert denied.value.status == 403
        assert (await admin.chat_config()).system_prompt == "Be kind."

        # an unknown template id names the field; a non-uuid and an oversized prompt are 4xx
        with pytest.raises(ApiError) as unknown:
            await admin.set_template_allowlist([uuid.uuid4()])
        assert unknown.value.status == 400 and unknown.value.code == "invalid_input"
        assert "template_ids[0]" in str(unknown.value.details)
        with pytest.raises(ApiError) as not_uuid:
            await admin.set_template_allowlist(["../etc"])
        assert not_uuid.value.status in (400, 422)
        with pytest.raises(ApiError) as too_long:
            await admin.set_system_prompt("x" * (64 * 1024 + 1))
        assert too_long.value.status in (400, 413, 422)
        assert (await admin.chat_config()).template_allowlist == [template.id]

        # empty values clear them
        cleared = await admin.set_template_allowlist([])
        cleared = await admin.set_system_prompt("")
        assert cleared.template_allowlist == [] and cleared.system_prompt == ""
    finally:
        await admin.aclose()


async def test_labels_rename_and_search_over_http(env: ChatEnv) -> None:
    api = env.alice.chats
    web = await api.create("Fix the login page", labels={"team": "web", "prio": "high"})
    assert web.labels == {"prio": "high", "team": "web"}
    ops = await api.create("Rotate the 100% certs", labels={"team": "ops"})
    await env.bob.chats.create("Fix the login page too", labels={"team": "web"})

    assert {c.id for c in await api.list(labels={"team": "web"})} == {web.id}
    assert [c.id for c in await api.list(search="LOGIN")] == [web.id]
    assert [c.id for c in await api.list(search="100%")] == [ops.id]
    assert await api.list(search="login", labels={"team": "ops"}) == []
    shown = await api.get(ops.id)
    assert shown.labels == {"team": "ops"}

    renamed = await api.update(ops.id, title="Certificates", labels={"team": "sec"})
    assert (renamed.title, renamed.labels) == ("Certificates", {"team": "sec"})
    kept = await api.update(ops.id, title="Certs")  # labels None: unchanged
    assert kept.labels == {"team": "sec"}

    # another user's chat is not found; bad labels and filters are typed 4xx
    with pytest.raises(ApiError) as other:
        await env.bob.chats.update(ops.id, labels={"x": "y"})
    assert other.value.status == 404
    for bad in ({"Bad Key": "x"}, {"k": "v" * 300}):
        with pytest.raises(ApiError) as invalid:
            await api.update(ops.id, labels=bad)
        assert invalid.value.status in (400, 422) and invalid.value.code == "invalid_input"
    with pytest.raises(ApiError) as empty_title:
        await api.update(ops.id, title="   ")
    assert empty_title.value.status == 400
    res = await env.alice.http.get("/api/v1/chats", params={"label": "no-colon"})
    assert res.status_code == 400 and res.json()["details"]["field"] == "label"
    assert (await api.get(ops.id)).labels == {"team": "sec"}
