"""The load generator: many raw WebSocket clients in one process, driven over stdin/stdout.

Run as ``python -m bench.loadgen``; the driver sends one JSON command per line and reads
one JSON reply per line. Clients are bare ``asyncio.Protocol`` objects on uvloop that parse
just enough RFC 6455 to count frames, check their order, read the embedded timestamp and
answer pings (protocol pings and tempest_ws ``ping`` envelopes), so one process can take
the traffic of thousands of sockets. Its own CPU is read by the driver from ``/proc``: when
it nears one full core, the figures describe the load generator, not the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import resource
import socket
import sys
import time
from array import array
from typing import Any

from ._client import Client, Phase
from ._storm import Storm
from ._wire import handshake

MAX_DRAIN_BYTES = 64 << 20


async def _dial(port: int, source: str | None) -> socket.socket:
    """A socket connected to the loopback ``port`` from ``source``. The port is picked at
    connect, not at bind (``IP_BIND_ADDRESS_NO_PORT``): a bind to port 0 searches the
    ports in use, which costs a loader holding tens of thousands of sockets most of its
    CPU in a reconnect storm."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        if source is not None:
            sock.setsockopt(socket.IPPROTO_IP, getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24), 1)
            sock.bind((source, 0))
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    except BaseException:
        sock.close()
        raise
    return sock


class Generator:
    """The process: its clients, the stalled socket, and the command handlers."""

    def __init__(self) -> None:
        self.phase = Phase()
        self.clients: list[Client] = []
        self.stalled: socket.socket | None = None

    async def open_client(
        self, port: int, path: str, token: str, source: str | None, limit_s: float = 10.0
    ) -> Client:
        """One client connected (from ``source``, if given) and handshaken, or failed:
        ``client.handshaken`` tells which; a failed one is aborted.

        A client counts only if ``create_connection`` returned. When the timeout
        cancels it just after the protocol got ``connection_made`` (the wake-up and the
        timeout in one loop tick), uvloop closes the transport without ever calling
        ``connection_lost``; if the server's 101 arrived in that same tick, the client
        looks handshaken and open, but has no socket: a reconnect storm counted such
        clients as back."""
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[bool] = loop.create_future()
        client = Client(self.phase, handshake(port, path, token), ready)
        client.target = (port, source or "", token)
        connected = False
        try:
            async with asyncio.timeout(limit_s):
                await loop.create_connection(lambda: client, sock=await _dial(port, source))
                connected = True
                await ready
        except (OSError, TimeoutError):
            pass
        if not connected:  # a timed-out attempt, whatever the protocol saw
            client.handshaken = False
            client.status = 0
        if not client.handshaken and client.transport is not None:
            client.transport.abort()
        return client

    async def connect(
        self,
        port: int,
        path: str,
        n: int,
        prefix: str,
        concurrency: int,
        ports: list[int] | None = None,
        sources: list[str] | None = None,
        start: int | None = None,
        retry_503_s: float = 0.0,
        rate: float | None = None,
    ) -> dict[str, Any]:
        """Open ``n`` clients with tokens ``prefix + i``; round robin over ``ports`` and
        over the source addresses ``sources`` when given (each source address has its own
        range of ephemeral ports). With ``retry_503_s``, a client answered HTTP 503 (too
        many handshakes in progress) tries again after 5 to 10 s (its ``Retry-After``),
        for at most that many seconds. With ``rate``, at most that many first attempts
        start per second (a paced arrival instead of a flood; ``concurrency`` still bounds
        the handshakes in flight)."""
        gate = asyncio.Semaphore(concurrency)
        started = time.monotonic()
        failed = 0
        retried = 0
        targets = ports or [port]
        rng = random.Random(start or 0)
        base = len(self.clients) if start is None else start

        async def one(i: int) -> None:
            nonlocal failed, retried
            source = sources[i % len(sources)] if sources else None
            if rate:
                await asyncio.sleep(max(0.0, started + (i - base) / rate - time.monotonic()))
            while True:
                async with gate:
                    client = await self.open_client(
                        targets[i % len(targets)], path, f"{prefix}{i}", source
                    )
                if client.handshaken:
                    self.clients.append(client)
                    return
                if client.status != 503 or time.monotonic() - started > retry_503_s:
                    failed += 1
                    return
                retried += 1
                await asyncio.sleep(rng.uniform(5.0, 10.0))

        await asyncio.gather(*(one(base + i) for i in range(n)))
        return {
            "connected": len(self.clients),
            "failed": failed,
            "retried_503": retried,
            "seconds": time.monotonic() - started,
        }

    def arm(self, seq0: int, rounds: int, latency: bool, pings: bool = False) -> dict[str, Any]:
        phase = self.phase
        phase.seq0 = seq0
        phase.expected = rounds
        phase.record_latency = latency
        phase.record_pings = pings
        phase.pings_since = time.monotonic()
        phase.latencies = array("q")
        phase.complete = 0
        phase.total = 0
        phase.order_errors = 0
        phase.last_ns = 0
        for client in self.clients:
            client.arm()
            client.ping_times.clear()
        return {"armed": len(self.clients)}

    async def wait(self, seconds: float, raw: bool = False) -> dict[str, Any]:
        phase = self.phase
        live = [c for c in self.clients if not c.lost]
        deadline = time.monotonic() + seconds
        while phase.complete < len(live) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)  # polled: a per-frame event would cost the hot path
        counts = sorted(c.count for c in live)
        lat = sorted(phase.latencies)
        report: dict[str, Any] = {
            "clients": len(live),
            "lost": len(self.clients) - len(live),
            "complete": phase.complete,
            "delivered": phase.total,
            "expected_each": phase.expected,
            "min_count": counts[0] if counts else 0,
            "median_count": counts[len(counts) // 2] if counts else 0,
            "order_errors": phase.order_errors,
            "last_ns": phase.last_ns,
            "timed_out": phase.complete < len(live),
        }
        if raw:  # every sample, for a driver that merges several load generators
            report["latencies_us"] = [v // 1000 for v in lat]
        if lat:
            report["latency_ms"] = {
                "p50": lat[len(lat) // 2] / 1e6,
                "p99": lat[min(len(lat) - 1, int(len(lat) * 0.99))] / 1e6,
                "max": lat[-1] / 1e6,
                "samples": len(lat),
            }
        return report

    def pings(self, interval: float) -> dict[str, Any]:
        """The pings recorded since ``arm(pings=True)``. A gap between two pings longer
        than ``interval`` (+10 % + 50 ms) is late; so is the first ping of a client that
        connected after the arm if it came that long after the handshake, and a ping
        still missing now (``overdue``: no ping for that long, counted from the last
        ping, from the handshake, or from the arm)."""
        gaps: list[float] = []
        counts: list[int] = []
        limit = interval * 1.1 + 0.05
        now = time.monotonic()
        armed = self.phase.pings_since
        overdue = 0
        for client in self.clients:
            times = client.ping_times
            counts.append(len(times))
            gaps.extend(b - a for a, b in itertools.pairwise(times))
            if client.since >= armed and times:
                gaps.append(times[0] - client.since)
            if not client.lost:
                # connected before the arm: its last ping (or handshake) came before it
                ref = times[-1] if times else max(client.since, armed)
                overdue += now - ref > limit
        gaps.sort()
        late = sum(1 for g in gaps if g > limit) + overdue
        return {
            "pings": sum(counts),
            "min_pings_per_client": min(counts) if counts else 0,
            "overdue": overdue,
            "gap_p50_s": gaps[len(gaps) // 2] if gaps else None,
            "gap_p99_s": gaps[min(len(gaps) - 1, int(len(gaps) * 0.99))] if gaps else None,
            "gap_max_s": gaps[-1] if gaps else None,
            "late": late,
            "lost": sum(1 for c in self.clients if c.lost),
            "close_codes": sorted({c.close_code for c in self.clients if c.close_code}),
        }

    async def stall_open(self, port: int, path: str, token: str) -> dict[str, Any]:
        """A raw socket that completes the handshake and then never reads again."""
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", port))
        await loop.sock_sendall(sock, handshake(port, path, token))
        head = b""
        deadline = time.monotonic() + 10
        while b"\r\n\r\n" not in head and time.monotonic() < deadline:
            head += await asyncio.wait_for(loop.sock_recv(sock, 1024), 10)
        self.stalled = sock
        return {"ok": head.startswith(b"HTTP/1.1 101")}

    def stall_check(self) -> dict[str, Any]:
        """Drain the stalled socket now: did the server close it (code) or drop it?"""
        sock = self.stalled
        if sock is None:
            return {"state": "none"}
        data = bytearray()
        state = "open"
        while len(data) < MAX_DRAIN_BYTES:
            try:
                chunk = sock.recv(1 << 20)
            except BlockingIOError:
                break
            except ConnectionResetError:
                state = "reset"
                break
            if not chunk:
                state = "eof"
                break
            data += chunk
        code = None
        end = bytes(data).rfind(b"\x88")
        if end >= 0 and len(data) >= end + 4 and data[end + 1] & 0x7F >= 2:
            code = (data[end + 2] << 8) | data[end + 3]
        sock.close()
        self.stalled = None
        return {"state": state, "drained_bytes": len(data), "close_code": code}

    def close_all(self) -> dict[str, Any]:
        for client in self.clients:
            if client.transport is not None:
                client.transport.abort()
        n = len(self.clients)
        self.clients.clear()
        return {"closed": n}


async def serve_commands() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    gen = Generator()
    storm = Storm(gen)
    reply({"event": "ready"})
    while True:
        line = await reader.readline()
        if not line:
            break
        cmd = json.loads(line)
        op = cmd.pop("op")
        if op == "quit":
            storm.stop()
            gen.close_all()
            reply({"ok": True})
            break
        try:
            if op == "connect":
                result = await gen.connect(**cmd)
            elif op == "arm":
                result = gen.arm(**cmd)
            elif op == "wait":
                result = await gen.wait(**cmd)
            elif op == "pings":
                result = gen.pings(**cmd)
            elif op == "stall_open":
                result = await gen.stall_open(**cmd)
            elif op == "stall_check":
                result = gen.stall_check()
            elif op == "close_all":
                result = gen.close_all()
            elif op == "storm_arm":
                result = storm.arm(**cmd)
            elif op == "storm_status":
                result = storm.status()
            elif op == "storm_live":
                result = storm.live()
            else:
                result = {"error": f"unknown op {op}"}
        except Exception as exc:
            result = {"error": repr(exc)}
        reply(result)


def reply(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main() -> None:
    raise_fd_limit()
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve_commands())
    else:
        uvloop.run(serve_commands())


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
