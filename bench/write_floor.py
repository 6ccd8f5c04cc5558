"""The floor of a fan-out's write: CPU per frame of writing one frame to N loopback sockets.

Run ``.venv/bin/python -m bench.write_floor [N] [ROUNDS]`` (defaults 5,000 and 100).
Nothing of tempest_ws runs here: a uvloop server accepts N connections from a reader
child process (which drains them), then writes one 260-byte frame to every socket,
ROUNDS times per way, one round per event-loop tick, three times over, alternating:

``loop``         ``for transport in transports: transport.write(frame)``, the least a
                 Python fan-out on uvloop transports can do (picows' own broadcast is
                 this loop with its ``send``);
``loop_checks``  the same, skipping transports that are closing or hold unsent bytes;
``map``          the writes called from C (``map`` over the bound ``write`` methods);
``os_write``     ``os.write`` on each socket's descriptor, below uvloop.

Prints the median user and kernel CPU per frame of each way. Every phase is bounded by
its round count; the reader is killed by its PID at the end.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import operator
import os
import resource
import statistics
import subprocess
import sys
from collections.abc import Callable

READER = r"""
import selectors, socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
sel = selectors.DefaultSelector()
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ)
sys.stdout.write("connected\n")
sys.stdout.flush()
while sel.get_map():
    for key, _ in sel.select(1.0):
        try:
            if not key.fileobj.recv(1 << 20):
                sel.unregister(key.fileobj)
        except BlockingIOError:
            pass
"""

FRAME = b"\x81\x7e\x01\x00" + b"x" * 256  # one 256-byte text frame


class _Accepted(asyncio.Protocol):
    def __init__(self, transports: list[asyncio.Transport], n: int, all_in: asyncio.Event) -> None:
        self.transports = transports
        self.n = n
        self.all_in = all_in

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transports.append(transport)  # type: ignore[arg-type]
        if len(self.transports) >= self.n:
            self.all_in.set()


def _cpu() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def _ways(transports: list[asyncio.Transport]) -> dict[str, Callable[[], None]]:
    writes = [t.write for t in transports]
    fds = [t.get_extra_info("socket").fileno() for t in transports]

    def loop() -> None:
        for transport in transports:
            transport.write(FRAME)

    def loop_checks() -> None:
        for transport in transports:
            if not transport.is_closing() and not transport.get_write_buffer_size():
                transport.write(FRAME)

    def by_map() -> None:
        collections.deque(map(operator.call, writes, itertools.repeat(FRAME)), maxlen=0)

    def os_write() -> None:
        collections.deque(map(os.write, fds, itertools.repeat(FRAME)), maxlen=0)

    return {"loop": loop, "loop_checks": loop_checks, "map": by_map, "os_write": os_write}


async def measure(n: int, rounds: int) -> dict[str, tuple[float, float]]:
    """Median (user, kernel) µs per frame of each way."""
    loop = asyncio.get_running_loop()
    transports: list[asyncio.Transport] = []
    all_in = asyncio.Event()
    server = await loop.create_server(
        lambda: _Accepted(transports, n, all_in), "127.0.0.1", 0, backlog=4096
    )
    port = server.sockets[0].getsockname()[1]
    reader = await asyncio.create_subprocess_exec(
        sys.executable, "-c", READER, str(port), str(n), stdout=subprocess.PIPE
    )
    try:
        assert reader.stdout is not None
        async with asyncio.timeout(120):
            await reader.stdout.readline()
            await all_in.wait()
        samples: dict[str, list[tuple[float, float]]] = {}
        for _ in range(3):
            for name, way in _ways(transports).items():
                user0, kernel0 = _cpu()
                for _ in range(rounds):
                    way()
                    await asyncio.sleep(0)
                await asyncio.sleep(0.05)  # what the writes left buffered goes out
                user1, kernel1 = _cpu()
                frames = rounds * n / 1e6
                samples.setdefault(name, []).append(
                    ((user1 - user0) / frames, (kernel1 - kernel0) / frames)
                )
        return {
            name: (
                statistics.median(u for u, _ in values),
                statistics.median(k for _, k in values),
            )
            for name, values in samples.items()
        }
    finally:
        reader.kill()
        await reader.wait()
        server.close()
        for transport in transports:
            transport.abort()


def main() -> None:
    import uvloop

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5_000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    results = uvloop.run(measure(n, rounds))
    sys.stdout.write(f"one {len(FRAME)}-byte frame to {n} sockets, {rounds} rounds per way\n")
    for name, (user, kernel) in results.items():
        sys.stdout.write(f"{name:12s} user {user:.3f} µs  kernel {kernel:.3f} µs per frame\n")


if __name__ == "__main__":
    main()
