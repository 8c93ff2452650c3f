"""The agent's negative cache for failed MCP servers (issue #9 §3): a failed server is not
retried on every listing but after a backoff that doubles per failure in a row (injected
clock), retries never delay a listing, and a ``.mcp.json`` change or a successful connect
clears it. The servers are real short-lived processes that fail at once."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from tether.agent.mcphost import McpHost, _Connection
from tether.agent.schemas import McpToolList
from tether.testing.clock import FakeClock

ECHO_SERVER = Path(__file__).resolve().parents[2] / "fixtures" / "mcp_echo_server.py"
# Appends a line to argv[1] per start; exits 1 unless argv[2] exists, else runs the echo
# server (so a test can make a failing server work); with "dies", it exits once
# argv[2] + ".die" exists.
FLAKY = (
    "import os, runpy, sys, threading, time\n"
    "open(sys.argv[1], 'a').write('start\\n')\n"
    "if not os.path.exists(sys.argv[2]): sys.exit(1)\n"
    "def die_on(flag):\n"
    "    while not os.path.exists(flag): time.sleep(0.02)\n"
    "    os._exit(3)\n"
    "if sys.argv[3:] == ['dies']:\n"
    "    threading.Thread(target=die_on, args=(sys.argv[2] + '.die',), daemon=True).start()\n"
    f"sys.argv = [{str(ECHO_SERVER)!r}]\n"
    f"runpy.run_path({str(ECHO_SERVER)!r}, run_name='__main__')\n"
)


def status(listing: McpToolList, name: str = "flaky") -> str:
    return next(s.status for s in listing.servers if s.name == name)


class World:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.clock = FakeClock()
        self.starts = tmp / "starts.txt"
        self.healthy = tmp / "healthy"
        self.host = McpHost(
            directory=lambda: tmp,
            env=lambda: dict(os.environ),
            clock=self.clock,
            connect_timeout_s=20.0,
            retry_after_s=10.0,
            max_retry_after_s=40.0,
        )
        self.configure()

    def configure(self, *extra: str) -> None:
        args = ["-c", FLAKY, str(self.starts), str(self.healthy), *extra]
        config = {"mcpServers": {"flaky": {"command": sys.executable, "args": args}}}
        (self.tmp / ".mcp.json").write_text(json.dumps(config))

    @property
    def attempts(self) -> int:
        return self.starts.read_text().count("start") if self.starts.exists() else 0

    async def settled(self) -> McpToolList:
        """List (without waiting) until the server is no longer connecting (real time)."""
        async with asyncio.timeout(20):
            while True:
                listing = await self.host.list_tools(wait_s=0)
                if status(listing) != "pending":
                    return listing
                await asyncio.sleep(0.02)


@pytest.fixture
async def world(tmp_path: Path):  # type: ignore[no-untyped-def]
    w = World(tmp_path)
    yield w
    await w.host.close()


async def test_failed_server_backs_off_doubling_and_retries_never_wait(world: World) -> None:
    first = await world.host.list_tools()  # a first attempt is waited for
    assert status(first) == "error" and world.attempts == 1
    [server] = first.servers
    assert server.retry_in_s == 10.0

    for _ in range(3):  # within the backoff: answered from the negative cache
        assert status(await world.host.list_tools()) == "error"
    world.clock.advance(9.9)
    assert status(await world.host.list_tools()) == "error"
    assert world.attempts == 1

    world.clock.advance(0.1)
    for attempt, backoff in ((2, 20.0), (3, 40.0), (4, 40.0)):  # doubling, capped at 40
        retry = await world.host.list_tools(wait_s=30)
        assert status(retry) == "pending"  # a retry is never waited for
        listing = await world.settled()
        assert status(listing) == "error" and world.attempts == attempt
        assert listing.servers[0].retry_in_s == backoff
        world.clock.advance(backoff - 0.1)
        assert status(await world.host.list_tools()) == "error"  # not yet
        assert world.attempts == attempt
        world.clock.advance(0.1)


async def test_config_change_clears_the_negative_cache(world: World) -> None:
    assert status(await world.host.list_tools()) == "error"
    assert status(await world.host.list_tools()) == "error"
    assert world.attempts == 1
    world.configure("edited")  # same server, another .mcp.json: tried again at once
    listing = await world.host.list_tools()
    assert status(listing) == "error" and world.attempts == 2
    assert listing.servers[0].retry_in_s == 10.0  # a fresh count, not the doubled one


async def test_successful_connect_clears_the_backoff(world: World) -> None:
    assert status(await world.host.list_tools()) == "error"
    world.healthy.touch()
    world.clock.advance(10.0)
    assert status(await world.host.list_tools(wait_s=0)) == "pending"
    listing = await world.settled()
    assert status(listing) == "ok"
    assert "flaky__echo" in {t.name for t in listing.tools}
    assert world.host.backoff_s("flaky") is None
    assert world.attempts == 2


async def test_server_that_dies_after_connecting_is_not_restarted_on_every_listing(
    world: World,
) -> None:
    world.healthy.touch()
    world.configure("dies")
    assert status(await world.host.list_tools()) == "ok"
    die = world.tmp / "healthy.die"
    die.touch()  # the server process exits
    async with asyncio.timeout(20):
        while True:
            result = await world.host.call("flaky__echo", {"text": "still there?"})
            if result.is_error:
                break
    assert "closed" in (result.content[0].text or "").lower()
    listing = await world.host.list_tools()
    assert status(listing) == "error" and world.attempts == 1
    assert listing.servers[0].error == "the server closed the connection"
    assert listing.servers[0].retry_in_s == 10.0
    for _ in range(3):  # not restarted on every listing
        assert status(await world.host.list_tools()) == "error"
    die.unlink()
    world.clock.advance(10.0)
    assert status(await world.host.list_tools(wait_s=30)) == "pending"  # a background retry
    assert status(await world.settled()) == "ok"
    assert world.attempts == 2


async def test_a_lost_server_whose_shutdown_is_slow_is_retried_after_the_backoff(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dead connection's shutdown runs in the background; however long it takes (held
    here until the end), the server counts as disconnected from the moment it was lost."""
    release = asyncio.Event()
    close = _Connection.close

    async def slow_close(conn: _Connection) -> None:
        await release.wait()
        await close(conn)

    monkeypatch.setattr(_Connection, "close", slow_close)
    world.healthy.touch()
    world.configure("dies")
    assert status(await world.host.list_tools()) == "ok"
    die = world.tmp / "healthy.die"
    die.touch()
    try:
        async with asyncio.timeout(20):
            while not (await world.host.call("flaky__echo", {"text": "?"})).is_error:
                pass
        assert status(await world.host.list_tools()) == "error"
        die.unlink()
        world.clock.advance(10.0)
        assert status(await world.host.list_tools(wait_s=30)) == "pending"
        assert status(await world.settled()) == "ok"
        assert world.attempts == 2
    finally:
        release.set()
