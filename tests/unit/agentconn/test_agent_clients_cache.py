"""The one agent-client cache (``agentconn/clients.py``): who shares a client, and when a
client is closed. No network: a client opens its connections on first request, so the
bookkeeping is seen through each handle's ``httpx`` client (``is_closed``)."""

from __future__ import annotations

import uuid

import pytest

from tether.agentconn.client import AgentClient
from tether.agentconn.clients import AgentClients, client_key
from tether.agentconn.liveness import AgentLiveness
from tether.errors import AgentTransportError
from tether.testing.clock import FakeClock

A = uuid.UUID(int=1)
B = uuid.UUID(int=2)


def closed(client: AgentClient) -> bool:
    return client._http.is_closed


def cache(**kw: object) -> AgentClients:
    values: dict[str, object] = {"connect_timeout": 0.3, "request_timeout": 5.0}
    values.update(kw)
    return AgentClients(**values)  # type: ignore[arg-type]


async def test_holders_share_one_client_with_their_own_headers() -> None:
    clients = cache()
    one = await clients.lease(A, "127.0.0.1:1", "s", headers={"X-Tether-Chat-Id": "c1"})
    two = await clients.lease(A, "127.0.0.1:1", "s", headers={"X-Tether-Chat-Id": "c2"})
    assert one._http is two._http  # one set of connections
    assert one.headers == {"X-Tether-Chat-Id": "c1"}
    assert two.headers == {"X-Tether-Chat-Id": "c2"}
    two.set_chat("c3")  # a holder's headers are its own
    assert one.headers == {"X-Tether-Chat-Id": "c1"}
    assert clients.open_clients == 1
    await clients.aclose()


async def test_giving_back_never_closes_a_client_another_holder_uses() -> None:
    """A chat's binding evicted (its handle closed) while the API proxy still holds the same
    agent's client: the proxy's requests keep their connections."""
    clients = cache(max_idle=0)
    chat = await clients.lease(A, "127.0.0.1:1", "s")
    proxy = await clients.lease(A, "127.0.0.1:1", "s")
    await chat.aclose()
    await chat.aclose()  # twice: still one give-back
    assert not closed(proxy)
    await proxy.aclose()  # the last holder, max_idle=0: closed now
    await clients.closes_done()
    assert closed(proxy)
    await clients.aclose()


async def test_a_replaced_client_stays_open_until_its_last_holder_gives_it_back() -> None:
    clients = cache()
    chat = await clients.lease(A, "127.0.0.1:1", "s1")
    proxy = await clients.lease(A, "127.0.0.1:1", "s1")
    await clients.lease(A, "127.0.0.1:9", "s1")  # the agent moved: the old client retires
    await chat.aclose()
    await clients.closes_done()
    assert not closed(proxy)
    await proxy.aclose()
    await clients.closes_done()
    assert closed(proxy)
    await clients.aclose()


async def test_an_idle_client_is_kept_for_the_next_caller_until_idle_s() -> None:
    clock = FakeClock()
    clients = cache(clock=clock, idle_s=60.0)
    first = await clients.lease(A, "127.0.0.1:1", "s")
    await first.aclose()
    assert not closed(first) and clients.idle_clients == 1
    again = await clients.lease(A, "127.0.0.1:1", "s")
    assert again._http is first._http  # reused: keep-alive connections survive
    await again.aclose()
    clock.advance(59.0)
    await (await clients.lease(B, "127.0.0.1:2", "s")).aclose()
    await clients.closes_done()
    assert not closed(first)
    clock.advance(1.0)
    fresh = await clients.lease(B, "127.0.0.1:2", "s")  # any use sweeps expired idle clients
    await clients.closes_done()
    assert closed(first) and not closed(fresh)
    await clients.aclose()


async def test_idle_clients_are_bounded_oldest_first() -> None:
    clients = cache(max_idle=1)
    old = await clients.lease(A, "127.0.0.1:1", "s")
    new = await clients.lease(B, "127.0.0.1:2", "s")
    await old.aclose()
    await new.aclose()  # two idle, bound 1: the least recently leased goes
    assert clients.idle_clients == 1
    await clients.closes_done()
    assert closed(old) and not closed(new)
    await clients.aclose()


async def test_held_clients_are_never_closed_by_the_bound() -> None:
    clients = cache(max_idle=0)
    held = [await clients.lease(uuid.UUID(int=i), f"127.0.0.1:{i}", "s") for i in range(1, 4)]
    await clients.closes_done()
    assert clients.open_clients == 3 and not any(closed(c) for c in held)
    for c in held:
        await c.aclose()
    await clients.closes_done()
    assert clients.open_clients == 0 and all(closed(c) for c in held)
    await clients.aclose()


async def test_a_new_address_or_secret_replaces_the_agents_client() -> None:
    clients = cache()
    old = await clients.lease(A, "127.0.0.1:1", "s1")
    moved = await clients.lease(A, "127.0.0.1:1", "s2")  # a new secret generation
    assert moved._http is not old._http
    await clients.closes_done()
    assert not closed(old)  # still held: closed when given back
    await old.aclose()
    await clients.closes_done()
    assert closed(old) and not closed(moved) and clients.open_clients == 1
    await clients.aclose()
    assert client_key(A, "x", "s1") != client_key(A, "x", "s2")
    assert "s1" not in repr(client_key(A, "x", "s1"))  # the key holds a digest only


async def test_agent_down_retires_its_clients_and_the_next_lease_is_fresh() -> None:
    liveness = AgentLiveness()
    clients = cache(liveness=liveness)
    held = await clients.lease(A, "127.0.0.1:1", "s")
    idle = await clients.lease(B, "127.0.0.1:2", "s")
    await idle.aclose()
    other = await clients.lease(B, "127.0.0.1:2", "s")
    liveness.mark_down(A, "no session frame for 3s")
    await clients.closes_done()
    assert held.is_down and not closed(held)  # held: failed by the signal, closed on give-back
    await held.aclose()
    await clients.closes_done()
    assert closed(held)
    liveness.mark_up(A)
    fresh = await clients.lease(A, "127.0.0.1:1", "s")
    assert fresh._http is not held._http and not fresh.is_down
    assert other._http is idle._http and not closed(other)  # another agent's: untouched
    await clients.aclose()


async def test_a_client_down_before_its_listener_ran_is_replaced_on_lease() -> None:
    """The signal of an old epoch (down, then up again) stays set: such a client is never
    handed out again, as the per-chat dial never reused one."""
    liveness = AgentLiveness()
    clients = cache(liveness=liveness)
    first = await clients.lease(A, "127.0.0.1:1", "s")
    liveness.remove_listener(clients._agent_down)  # only the signal tells
    liveness.mark_down(A, "gone")
    liveness.mark_up(A)
    second = await clients.lease(A, "127.0.0.1:1", "s")
    assert second._http is not first._http and not second.is_down
    await first.aclose()
    await clients.closes_done()
    assert closed(first) and not closed(second)
    await clients.aclose()
    assert closed(second)


async def test_a_closed_cache_refuses_leases_and_late_give_backs_are_harmless() -> None:
    clients = cache()
    held = await clients.lease(A, "127.0.0.1:1", "s")
    await clients.aclose()
    assert closed(held)
    await held.aclose()
    with pytest.raises(AgentTransportError):
        await clients.lease(A, "127.0.0.1:1", "s")
