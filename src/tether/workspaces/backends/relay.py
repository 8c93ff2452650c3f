"""``python -m tether.workspaces.backends.relay <socket> <host> <port>``: a byte relay from a
unix socket to the server's TCP address.

A template with ``network: false`` gets a sandbox without network (``--unshare-net``); its
agent still needs its session to the server. The local backend starts one relay per such
workspace, outside the sandbox, listening on ``server.sock`` in the workspace's private
runtime dir (bound into that sandbox only); the agent connects its session there
(``TETHER_AGENT_SERVER_SOCKET``). The relay forwards bytes only to the one server address it
was started with, so the sandbox reaches nothing else. Like the agents, it is a detached
process that survives a server restart and carries the workspace marker, so stopping the
workspace stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys

CONNECT_TIMEOUT_S = 10.0
_CHUNK = 64 * 1024


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


async def _handle(
    host: str, port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        up_reader, up_writer = await asyncio.wait_for(
            asyncio.open_connection(host, port), CONNECT_TIMEOUT_S
        )
    except (OSError, TimeoutError):
        writer.close()
        return
    await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def serve(path: str, host: str, port: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _handle(host, port, reader, writer)

    server = await asyncio.start_unix_server(handle, path)
    # The runtime dir (0700, the sandbox's uid) is what guards the socket.
    os.chmod(path, 0o666)
    print("relay up", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    path, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    asyncio.run(serve(path, host, port))


if __name__ == "__main__":
    main()
