"""Message edit, usage and per-user limits, images over real HTTP (issue #14): shapes,
who may do what, and the typed errors. The tests play the worker (FakeWorker); turns with
a real worker and a scripted model are in tests/integration/chatd/test_chatd_parity2.py."""

from __future__ import annotations

import base64
import uuid

import pytest
from chat_env import ChatEnv, FakeWorker

from tether.chatd.models import ChatStatus
from tether.chatd.usagelimits import usage_guard_of
from tether.db.compactions import CompactionStore
from tether.sdk.chats import image_part
from tether.sdk.client import TetherClient
from tether.sdk.errors import ApiError

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 32


async def _admin(env: ChatEnv) -> TetherClient:
    user = await env.graph.users.get_user_by_name("root")
    token, _ = await env.graph.users.create_token(user.id, "test")
    return TetherClient(env.url, token, timeout=10)


async def _turn(worker: FakeWorker, text: str) -> None:
    (chat,) = await worker.claim()
    await worker.reply(chat.id, text)
    await worker.finish(chat.id)


async def test_edit_supersedes_the_later_history_and_runs_again(
    env: ChatEnv, worker: FakeWorker
) -> None:
    api = env.alice.chats
    chat = await api.create("first question")
    await _turn(worker, "first answer")
    await api.send(chat.id, "second question")
    await _turn(worker, "second answer")
    first = (await api.all_messages(chat.id))[0]
    assert first.text == "first question"

    done = await api.edit(chat.id, first.id, "better question")
    assert done.chat.status == "pending" and done.superseded_from_seq == first.seq
    assert done.message.text == "better question" and done.message.seq > 4
    shown = await api.all_messages(chat.id)
    assert [m.text for m in shown] == ["better question"]
    everything = (await api.messages(chat.id, include_superseded=True)).messages
    assert [(m.text, m.superseded) for m in everything] == [
        ("first question", True),
        ("first answer", True),
        ("second question", True),
        ("second answer", True),
        ("better question", False),
    ]
    # the worker runs the edited chat again; the old rows never come back
    await _turn(worker, "better answer")
    assert [m.text for m in await api.all_messages(chat.id)] == [
        "better question",
        "better answer",
    ]
    assert (await api.get(chat.id)).status == "waiting"


async def test_edit_refusals_are_typed(env: ChatEnv, worker: FakeWorker) -> None:
    api = env.alice.chats
    chat = await api.create("question")
    # pending (no worker yet) → chat_busy, naming interrupt
    first = (await api.all_messages(chat.id))[0]
    with pytest.raises(ApiError) as busy:
        await api.edit(chat.id, first.id, "x")
    assert busy.value.status == 409 and busy.value.code == "chat_busy"
    assert "interrupt" in busy.value.details["remediation"]
    (claimed,) = await worker.claim()  # running → still busy
    with pytest.raises(ApiError) as running:
        await api.edit(chat.id, first.id, "x")
    assert running.value.code == "chat_busy"
    answer = await worker.reply(claimed.id, "answer")
    await worker.finish(claimed.id)

    with pytest.raises(ApiError) as assistant:
        await api.edit(chat.id, answer.id, "I said something else")
    assert assistant.value.status == 409 and assistant.value.code == "message_not_editable"
    with pytest.raises(ApiError) as other:  # another user's chat: not found, nothing changed
        await env.bob.chats.edit(chat.id, first.id, "hijack")
    assert other.value.status == 404
    with pytest.raises(ApiError) as unknown:
        await api.edit(chat.id, uuid.uuid4(), "x")
    assert unknown.value.status == 404
    bad = await env.alice.http.patch(
        f"/api/v1/chats/{chat.id}/messages/{first.id}", json={"content": [{"type": "tool-call"}]}
    )
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_input"
    assert [m.text for m in await api.all_messages(chat.id)] == ["question", "answer"]
    assert (await api.get(chat.id)).status == "waiting"  # a refused edit leaves it idle

    await api.edit(chat.id, first.id, "edited")
    await _turn(worker, "new answer")
    with pytest.raises(ApiError) as stale:  # the superseded version is not editable
        await api.edit(chat.id, first.id, "again")
    assert stale.value.code == "message_not_editable"


async def test_usage_per_chat_per_turn_and_per_user(env: ChatEnv, worker: FakeWorker) -> None:
    api = env.alice.chats
    store = CompactionStore(env.graph.engine, env.graph.clock)
    chat = await api.create("hello")
    await _turn(worker, "hi")
    first = (await api.all_messages(chat.id))[0]
    for i, o in ((100, 10), (120, 5)):  # two model requests of the first turn
        await store.record_usage(
            chat.id,
            model="m",
            input_tokens=i,
            output_tokens=o,
            estimated_tokens=None,
            turn_seq=first.seq,
        )
    await api.send(chat.id, "more")
    await _turn(worker, "ok")
    second = (await api.all_messages(chat.id))[2]
    await store.record_usage(
        chat.id,
        model="m",
        input_tokens=200,
        output_tokens=20,
        estimated_tokens=None,
        turn_seq=second.seq,
    )

    usage = await api.usage(chat.id)
    assert (usage.input_tokens, usage.output_tokens, usage.requests) == (420, 35, 3)
    assert [(t.message_id, t.input_tokens, t.output_tokens, t.requests) for t in usage.turns] == [
        (first.id, 220, 15, 2),
        (second.id, 200, 20, 1),
    ]
    assert [t.message_id for t in (await api.usage(chat.id, limit=1)).turns] == [second.id]
    shown = await api.get(chat.id)
    assert (shown.usage.input_tokens, shown.usage.output_tokens) == (420, 35)
    assert (await api.list())[0].usage.output_tokens == 35
    mine = await env.alice.sdk.my_usage()
    assert (mine.input_tokens, mine.output_tokens, mine.limit_tokens) == (420, 35, None)
    assert mine.period == "month" and mine.resets_at > mine.period_start
    assert (await env.bob.sdk.my_usage()).input_tokens == 0
    with pytest.raises(ApiError) as other:
        await env.bob.chats.usage(chat.id)
    assert other.value.status == 404


async def test_usage_limit_refuses_create_send_and_edit_with_nothing_queued(
    env: ChatEnv, worker: FakeWorker
) -> None:
    admin = await _admin(env)
    try:
        api = env.alice.chats
        chat = await api.create("hello")
        await _turn(worker, "hi")
        await CompactionStore(env.graph.engine, env.graph.clock).record_usage(
            chat.id, model="m", input_tokens=90, output_tokens=20, estimated_tokens=None
        )
        # members may neither read nor set the limits
        for call in (env.alice.sdk.usage_limits(), env.alice.sdk.set_usage_limits(10**9)):
            with pytest.raises(ApiError) as denied:
                await call
            assert denied.value.status == 403
        limits = await admin.set_usage_limits(100, {env.bob.user.id: None})
        assert limits.default_tokens == 100 and limits.users == {env.bob.user.id: None}
        assert (await admin.usage_limits()).default_tokens == 100

        before = len(await api.list())
        with pytest.raises(ApiError) as create:
            await api.create("another")
        assert create.value.status == 409 and create.value.code == "usage_limit_exceeded"
        assert "administrator" in create.value.details["remediation"]
        assert create.value.details["limit_tokens"] == 100
        assert len(await api.list()) == before
        with pytest.raises(ApiError) as send:
            await api.send(chat.id, "more")
        assert send.value.code == "usage_limit_exceeded"
        first = (await api.all_messages(chat.id))[0]
        with pytest.raises(ApiError) as edit:
            await api.edit(chat.id, first.id, "edited")
        assert edit.value.code == "usage_limit_exceeded"
        assert len(await api.all_messages(chat.id)) == 2 and await api.queue(chat.id) == []
        mine = await env.alice.sdk.my_usage()
        assert (mine.limit_tokens, mine.remaining_tokens) == (100, 0)

        await env.bob.chats.create("bob has no limit")  # a null override: unlimited
        # the setting is cached: users without a limit cost no read per send
        guard = usage_guard_of(env.graph)
        reads = guard.reads
        for text in ("a", "b", "c"):
            await env.bob.chats.create(text)
        assert guard.reads == reads
        await admin.set_usage_limits(100, {env.alice.user.id: 1000})  # a raised override
        await api.send(chat.id, "more")
        # bad input is typed
        with pytest.raises(ApiError) as unknown_user:
            await admin.set_usage_limits(5, {uuid.uuid4(): 1})
        assert unknown_user.value.status == 400
        with pytest.raises(ApiError) as negative:
            await admin.set_usage_limits(-1)
        assert negative.value.status in (400, 422)
    finally:
        await admin.aclose()


async def test_images_stored_and_returned_only_when_valid(env: ChatEnv) -> None:
    api = env.alice.chats
    chat = await api.create([{"type": "text", "text": "look"}, image_part(PNG, "image/png")])
    (msg,) = await api.all_messages(chat.id)
    assert msg.parts[1] == {
        "type": "image",
        "media_type": "image/png",
        "data": base64.b64encode(PNG).decode(),
    }
    only_image = await api.create([image_part(PNG, "image/png")])
    assert only_image.title  # titled from no text: a default

    async def refused(part: dict[str, object]) -> ApiError:
        with pytest.raises(ApiError) as err:
            await api.create([{"type": "text", "text": "x"}, part])
        return err.value

    html = b"<html><script>alert(1)</script></html>"
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    as_png = await refused(image_part(html, "image/png"))
    assert (as_png.status, as_png.code) == (422, "invalid_image")
    svg_as_png = await refused(image_part(svg, "image/png"))
    assert svg_as_png.code == "invalid_image"
    svg_type = await refused(image_part(svg, "image/svg+xml"))
    assert svg_type.status == 422 and svg_type.field == "content[1].media_type"
    bad_b64 = await refused({"type": "image", "media_type": "image/png", "data": "iVBOR w0K!"})
    assert (bad_b64.status, bad_b64.code) == (422, "invalid_image")
    extra = await refused({**image_part(PNG, "image/png"), "url": "http://x"})
    assert extra.status == 400
    big = PNG + b"\x00" * (env.graph.settings.image_max_bytes + 1 - len(PNG))
    too_big = await refused(image_part(big, "image/png"))
    assert (too_big.status, too_big.code) == (413, "payload_too_large")
    many = [image_part(PNG, "image/png")] * (env.graph.settings.image_max_count + 1)
    with pytest.raises(ApiError) as count:
        await api.create(many)
    assert count.value.status == 400
    # the large body is allowed on the message routes only
    res = await env.alice.http.post(
        f"/api/v1/chats/{chat.id}/archive",
        content=b'{"archived": true, "x": "' + b"a" * (2 << 20) + b'"}',
        headers={"Content-Type": "application/json"},
    )
    assert res.status_code == 413


async def test_images_refused_for_a_model_without_them(env: ChatEnv) -> None:
    admin = await _admin(env)
    try:
        await admin.add_model("plain", "scripted", "demo")
        assert not next(m for m in await admin.list_models() if m.name == "plain").images
        api = env.alice.chats
        with pytest.raises(ApiError) as err:
            await api.create(
                [{"type": "text", "text": "see"}, image_part(PNG, "image/png")], model="plain"
            )
        assert (err.value.status, err.value.code) == (422, "images_not_supported")
        chat = await api.create("text only", model="plain")
        with pytest.raises(ApiError) as send:
            await api.send(chat.id, [image_part(PNG, "image/png")])
        assert send.value.code == "images_not_supported"
        assert await api.queue(chat.id) == [] and len(await api.all_messages(chat.id)) == 1
        assert (await env.graph.chats.get(chat.id)).status is ChatStatus.PENDING
    finally:
        await admin.aclose()
