"""A loopback TCP proxy for tests that cut the network between a client and a server.

`TcpProxy` listens on a free loopback port and forwards each connection to a
target port. `TcpProxy.freeze()` makes the link silently drop everything in both
directions (a network partition: both ends keep writing into the void);
`TcpProxy.cut()` then aborts every forwarded connection (RST), as a dead NAT entry
or a pulled cable eventually does. Every task is owned and cancelled by
`TcpProxy.close()`.
"""

from __future__ import annotations

import asyncio
import contextlib

HOST = "127.0.0.1"
_CHUNK = 65_536


class TcpProxy:
    """Forwards ``127.0.0.1:<port>`` to ``127.0.0.1:<target>``."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = 0
        self.frozen = False
        self.dropped = 0  # bytes dropped while frozen
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, HOST, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    @property
    def ws(self) -> str:
        return f"ws://{HOST}:{self.port}/ws"

    def freeze(self) -> None:
        """Drop every byte from now on, in both directions, without closing anything."""
        self.frozen = True

    def cut(self) -> None:
        """Abort every forwarded connection (both sides see a reset); new connections
        are forwarded again."""
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        self.frozen = False

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.cut()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> TcpProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(HOST, self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.get_running_loop().create_task(self._pipe(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            for _ in range(1_000_000):  # bounded: a test never moves this much
                data = await source.read(_CHUNK)
                if not data:
                    break
                if self.frozen:
                    self.dropped += len(data)
                    continue
                sink.write(data)
                await sink.drain()
        if not sink.transport.is_closing():
            sink.close()
