"""Stream ids after a server restart: a worker in a fresh process (fresh hub) runs a turn for
a chat that already has history; a subscriber resuming from the last message id must get
the turn's live deltas (before the fix they were numbered ``0.n`` and dropped as old)."""

from __future__ import annotations

import asyncio
import contextlib

from binding_env import BindingEnv

from tether.chatd.follow import Outgoing, follow_chat
from tether.chatd.stream import parse_event_id
from tether.domain.chat import ChatStatus
from tether.llm.scripted import Say, script_model


async def test_resumed_subscriber_gets_live_deltas_of_a_turn_after_restart(
    env: BindingEnv,
) -> None:
    model = script_model([Say("alpha beta gamma delta epsilon")])
    env.start_worker()
    chat = await env.new_chat("one", model)
    chat = await env.wait_status(chat.id)
    assert chat.status is ChatStatus.WAITING, chat.last_error
    last_seq = (await env.chats.messages(chat.id))[-1].seq
    assert last_seq >= 2

    await env.restart()  # new process state: the hub knows nothing of the chat
    env.models[chat.id] = model
    received: list[Outgoing] = []
    answered = asyncio.Event()
    subscribed = asyncio.Event()  # the first item (the status) comes after the subscription

    async def follow() -> None:
        async for item in follow_chat(
            env.chats, env.graph.hub, chat.id, after=(last_seq, 0), poll_s=0.05
        ):
            subscribed.set()
            received.append(item)
            if item.event == "message" and item.data and item.data["role"] == "assistant":
                answered.set()

    follower = asyncio.create_task(follow())
    try:
        await asyncio.wait_for(subscribed.wait(), 15)  # subscribed before the turn starts
        await env.send(chat.id, "two")
        env.start_worker()
        await asyncio.wait_for(answered.wait(), 15)
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
    deltas = [
        i for i in received if i.event == "message_part" and (i.data or {}).get("kind") == "text"
    ]
    assert deltas, [i.event for i in received]
    assert "".join(d.data["delta"] for d in deltas if d.data).strip().startswith("alpha")
    # ids continue from the stored history and only increase
    ids = [parse_event_id(i.id) for i in received if i.id is not None]
    assert ids == sorted(ids) and ids[0][0] == last_seq + 1
    assert all(parse_event_id(d.id)[0] == last_seq + 1 for d in deltas)
