"""The servers under test, each run alone in its own process: ``python -m bench.server KIND``.

KIND is one of:

* ``bare``: a FastAPI route under uvicorn that keeps its sockets in a dict; a broadcast is
  ``for ws in sockets: await ws.send_text(pre_serialized)``.
* ``native``: the ``websockets`` library's own asyncio server (no ASGI), broadcasting with
  ``websockets.broadcast()``.
* ``picows``: picows (a WebSocket library written in Cython) with its own asyncio server
  (no ASGI); a broadcast is ``for t in transports: t.send(TEXT, pre_encoded_bytes)``.
* ``tempest``: tempest_ws's router and hub under the same uvicorn; a broadcast is
  ``await hub.broadcast(envelope)`` and a per-user send ``await hub.send_to(user, ...)``.
* ``floor``: the ``tempest`` server with its broadcast cut to the floor of this stack: the
  frame encoded once and written to every registered connection's transport in a bare
  loop, none of the checks a real broadcast makes (closing, flow control, order with other
  writes). Unsafe by design, for ``bench.ceiling``: what a fan-out over uvicorn and
  uvloop can reach at most.

The process listens on a free loopback port, prints ``{"event": "ready", "port": ...}``
and then takes one JSON command per line on stdin (the publishing loops below run inside
the server's own event loop, as an application's would), answering one JSON line each.
Every loop is bounded by a count and a deadline.

Development aids, off by default: ``BENCH_PROFILE=<op>`` writes a cProfile of that
publishing op to ``/tmp/bench-<kind>-<op>.prof``; the ``tracemalloc`` command reports the
top allocation sites; ``internals`` counts tempest_ws connections on the direct write
path; ``BENCH_GC=off`` disables the cyclic garbage collector (to tell its pauses apart);
``BENCH_LISTEN_BACKLOG=<n>`` sets the listen queue's length (by default
``WS_LISTEN_BACKLOG``'s, as ``uvicorn_options()`` gives uvicorn; for every server kind).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import gc
import json
import logging
import os
import socket
import sys
import time
import weakref
from typing import Any

from fastapi import FastAPI, WebSocket

from ._storm import task_census
from ._wire import ENVELOPE_BYTES, SEQ_BASE, body, frame_text
from .loadgen import raise_fd_limit, reply

FRAME = ENVELOPE_BYTES + 4  # one benchmark envelope as a frame on the wire (16-bit length)

STALLED = "stalled"


def listen_backlog() -> int:
    """The listen queue's length (the kernel caps it at net.core.somaxconn); tempest_ws is
    imported only when it is needed, so the bare servers' memory stays bare."""
    if os.environ.get("BENCH_LISTEN_BACKLOG"):
        return int(os.environ["BENCH_LISTEN_BACKLOG"])
    from tempest_ws import WebSocketSettings

    return int(WebSocketSettings.model_fields["WS_LISTEN_BACKLOG"].default)


SEND_TIMEOUT = 0.25  # a send blocked this long means the peer's buffers are full


class Target:
    """What the command loop needs from a server kind."""

    kind = ""

    async def start(self, sock: socket.socket) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    def count(self) -> int:
        raise NotImplementedError

    async def broadcast(self, seq: int, t_ns: int) -> None:
        raise NotImplementedError

    async def send_each(self, seq: int, t_ns: int, users: int) -> None:
        raise NotImplementedError

    async def prefill_stalled(self, overflow_after: int, deadline: float) -> dict[str, Any]:
        raise NotImplementedError

    async def stalled_status(self) -> dict[str, Any]:
        raise NotImplementedError


class _Uvicorn(Target):
    """Shared by the two ASGI servers: uvicorn in this process's event loop."""

    app: Any

    async def start(self, sock: socket.socket) -> None:
        import uvicorn

        from tempest_ws import uvicorn_options

        from .run import bench_settings

        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="on",
            **uvicorn_options(bench_settings()),
        )
        self.server = uvicorn.Server(config)
        self.task = asyncio.create_task(self.server.serve(sockets=[sock]))
        while not self.server.started:
            if self.task.done():
                self.task.result()
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self.server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(self.task, 10)


class Bare(_Uvicorn):
    kind = "bare"

    def __init__(self) -> None:
        self.sockets: dict[Any, str] = {}
        self.stalled_ws: Any = None
        app = FastAPI()

        @app.websocket("/ws")
        async def endpoint(ws: WebSocket) -> None:
            await ws.accept()
            user = ws.query_params.get("token", "")
            self.sockets[ws] = user
            if user == STALLED:
                self.stalled_ws = ws
            try:
                while (await ws.receive())["type"] != "websocket.disconnect":
                    pass
            finally:
                self.sockets.pop(ws, None)

        self.app = app

    def count(self) -> int:
        return len(self.sockets)

    async def broadcast(self, seq: int, t_ns: int) -> None:
        frame = frame_text(seq, t_ns)
        for ws in list(self.sockets):
            try:
                await ws.send_text(frame)
            except Exception:
                self.sockets.pop(ws, None)

    async def send_each(self, seq: int, t_ns: int, users: int) -> None:
        for ws, user in list(self.sockets.items())[:users]:
            try:
                await ws.send_text(frame_text(seq, t_ns, f"{user}:"))
            except Exception:
                self.sockets.pop(ws, None)

    async def prefill_stalled(self, overflow_after: int, deadline: float) -> dict[str, Any]:
        ws, sent = self.stalled_ws, 0
        frame = frame_text(SEQ_BASE - 1, time.time_ns())
        while ws is not None and sent < 100_000 and time.monotonic() < deadline:
            try:
                await asyncio.wait_for(ws.send_text(frame), SEND_TIMEOUT)
            except TimeoutError:
                return {"sent": sent, "blocked": True}
            sent += 1
        return {"sent": sent, "blocked": False}

    async def stalled_status(self) -> dict[str, Any]:
        return {"still_registered": self.stalled_ws in self.sockets, "closed_code": None}


class Native(Target):
    kind = "native"

    def __init__(self) -> None:
        self.conns: dict[Any, str] = {}
        self.stalled_conn: Any = None

    async def start(self, sock: socket.socket) -> None:
        from websockets.asyncio.server import serve

        async def handler(conn: Any) -> None:
            query = conn.request.path.partition("?token=")[2]
            self.conns[conn] = query
            if query == STALLED:
                self.stalled_conn = conn
            try:
                async for _ in conn:
                    pass
            except Exception:
                pass
            finally:
                self.conns.pop(conn, None)

        self.server = await serve(handler, sock=sock, compression=None, max_queue=16)

    async def stop(self) -> None:
        self.server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.server.wait_closed(), 10)

    def count(self) -> int:
        return len(self.conns)

    async def broadcast(self, seq: int, t_ns: int) -> None:
        from websockets.asyncio.server import broadcast

        broadcast(self.conns, frame_text(seq, t_ns))

    async def send_each(self, seq: int, t_ns: int, users: int) -> None:
        for conn, user in list(self.conns.items())[:users]:
            try:
                await conn.send(frame_text(seq, t_ns, f"{user}:"))
            except Exception:
                self.conns.pop(conn, None)

    async def prefill_stalled(self, overflow_after: int, deadline: float) -> dict[str, Any]:
        conn, sent = self.stalled_conn, 0
        frame = frame_text(SEQ_BASE - 1, time.time_ns())
        while conn is not None and sent < 100_000 and time.monotonic() < deadline:
            try:
                await asyncio.wait_for(conn.send(frame), SEND_TIMEOUT)
            except TimeoutError:
                return {"sent": sent, "blocked": True}
            sent += 1
        return {"sent": sent, "blocked": False}

    async def stalled_status(self) -> dict[str, Any]:
        conn = self.stalled_conn
        return {
            "still_registered": conn in self.conns,
            "closed_code": getattr(conn, "close_code", None),
            "write_buffer": conn.transport.get_write_buffer_size() if conn else None,
        }


class Picows(Target):
    kind = "picows"

    def __init__(self) -> None:
        self.conns: dict[Any, str] = {}
        self.stalled_conn: Any = None

    async def start(self, sock: socket.socket) -> None:
        from picows import WSListener, WSMsgType, ws_create_server

        target = self

        class Listener(WSListener):
            def __init__(self, user: str) -> None:
                self.user = user

            def on_ws_connected(self, transport: Any) -> None:
                target.conns[transport] = self.user
                if self.user == STALLED:
                    target.stalled_conn = transport

            def on_ws_disconnected(self, transport: Any) -> None:
                target.conns.pop(transport, None)

            def on_ws_frame(self, transport: Any, frame: Any) -> None:
                if frame.msg_type == WSMsgType.CLOSE:
                    transport.send_close(frame.get_close_code())
                    transport.disconnect()

        def factory(request: Any) -> Any:
            path = request.path.decode() if isinstance(request.path, bytes) else request.path
            return Listener(path.partition("?token=")[2])

        self.text = WSMsgType.TEXT
        self.server = await ws_create_server(factory, sock=sock)

    async def stop(self) -> None:
        self.server.close()
        for transport in list(self.conns):
            transport.disconnect()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.server.wait_closed(), 10)

    def count(self) -> int:
        return len(self.conns)

    async def broadcast(self, seq: int, t_ns: int) -> None:
        data, text = frame_text(seq, t_ns).encode(), self.text
        for transport in list(self.conns):
            transport.send(text, data)

    async def send_each(self, seq: int, t_ns: int, users: int) -> None:
        text = self.text
        for transport, user in list(self.conns.items())[:users]:
            transport.send(text, frame_text(seq, t_ns, f"{user}:").encode())

    async def prefill_stalled(self, overflow_after: int, deadline: float) -> dict[str, Any]:
        """picows' ``send`` never waits: fill until the transport buffers 64 KiB."""
        conn, sent = self.stalled_conn, 0
        data = frame_text(SEQ_BASE - 1, time.time_ns()).encode()
        while conn is not None and sent < 100_000 and time.monotonic() < deadline:
            if conn.underlying_transport.get_write_buffer_size() >= 64 * 1024:
                return {"sent": sent, "blocked": True}
            conn.send(self.text, data)
            sent += 1
            if sent % 64 == 0:
                await asyncio.sleep(0)
        return {"sent": sent, "blocked": False}

    async def stalled_status(self) -> dict[str, Any]:
        conn = self.stalled_conn
        return {
            "still_registered": conn in self.conns,
            "closed_code": None,
            "write_buffer": conn.underlying_transport.get_write_buffer_size() if conn else None,
        }


class Tempest(_Uvicorn):
    kind = "tempest"

    def __init__(
        self,
        heartbeat: float | None,
        queue_size: int | None,
        redis_url: str | None = None,
        topics: int = 0,
        max_connections: int | None = None,
    ) -> None:
        from tempest_ws import WebSocketConnection, WebSocketHub, make_websocket_router

        from .run import bench_settings

        settings = bench_settings(
            heartbeat=heartbeat,
            queue_size=queue_size,
            redis_url=redis_url,
            max_connections=max_connections,
        )
        self.topics = topics
        self.hub = hub = WebSocketHub.from_settings(settings)
        self.stalled_ref: weakref.ref[WebSocketConnection] | None = None
        self.stalled_code: int | None = None

        async def resolver(token: str) -> str:
            return token

        async def handler(ws: WebSocket, connection: WebSocketConnection, hub: Any) -> None:
            if topics and connection.user_key[1:].isdigit():  # user "u<i>" joins topic i % K
                await hub.subscribe(
                    connection.connection_id, f"t{int(connection.user_key[1:]) % topics}"
                )
            while True:
                await ws.receive_text()

        app = FastAPI()
        self.router = make_websocket_router(
            handler, hub=hub, bearer_resolver=resolver, settings=settings
        )
        app.include_router(self.router)
        self.app = app

    def count(self) -> int:
        return self.hub.stats().connections

    def internals(self) -> dict[str, int]:
        """How many connections use the direct path, hold a writer, hold a queue."""
        conns = list(self.hub._registry.connections.values())
        return {
            "connections": len(conns),
            "direct": sum(1 for c in conns if getattr(c, "_direct", None) is not None),
            "writer_alive": sum(
                1 for c in conns if (b := c._backlog) and b.writer and not b.writer.done()
            ),
            "queue_allocated": sum(1 for c in conns if getattr(c, "_queue", None) is not None),
        }

    async def broadcast(self, seq: int, t_ns: int) -> None:
        await self.hub.broadcast(body(seq, t_ns))

    async def broadcast_topics(self, seq: int, t_ns: int) -> None:
        """One message to each of the K topics (each client is in exactly one)."""
        envelope = body(seq, t_ns)
        for t in range(self.topics):
            await self.hub.broadcast(envelope, topic=f"t{t}")

    def drop_all(self, code: int) -> dict[str, Any]:
        """Close every connection of this process with ``code`` (a server restart)."""
        conns = list(self.hub._registry.connections.values())
        for conn in conns:
            conn.close_soon(code, "bench: server restart")
        return {"closed": len(conns)}

    async def send_each(self, seq: int, t_ns: int, users: int) -> None:
        for i in range(users):
            user = f"u{i}"
            await self.hub.send_to(user, body(seq, t_ns, f"{user}:"))

    async def prefill_stalled(self, overflow_after: int, deadline: float) -> dict[str, Any]:
        """Fill the stalled socket until its queue is ``overflow_after`` frames from full
        (in frames, or in bytes where the hub also bounds the queue's bytes)."""
        found = self.hub.connections_of(STALLED)
        if not found:
            return {"sent": 0, "error": "no stalled connection"}
        conn = found[0]
        self.stalled_ref = weakref.ref(conn)
        conn.add_close_callback(self._stalled_closed)
        target = max(0, self.hub.send_queue_size - overflow_after)
        budget = getattr(self.hub, "send_budget", None)  # absent in older trees
        byte_target = None if budget is None else budget.max_bytes - overflow_after * FRAME
        sent = 0
        while conn.pending < target and sent < 200_000 and time.monotonic() < deadline:
            if byte_target is not None and conn.pending_bytes >= byte_target:
                break
            await self.hub.send_to(STALLED, body(SEQ_BASE - 1, time.time_ns()))
            sent += 1
            await asyncio.sleep(0)
        return {
            "sent": sent,
            "pending": conn.pending,
            "pending_bytes": getattr(conn, "pending_bytes", None),
            "queue_size": self.hub.send_queue_size,
        }

    def _stalled_closed(self, connection: Any) -> None:
        self.stalled_code = connection.close_code

    async def stalled_status(self) -> dict[str, Any]:
        conn = self.stalled_ref() if self.stalled_ref else None
        if conn is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(conn.wait_closed(), 10)
            transport = conn._transport
            aborted = transport.is_closing() if transport is not None else None
            del conn, transport
        else:
            aborted = None
        gc.collect()
        await asyncio.sleep(0.2)
        gc.collect()
        stats = self.hub.stats()
        return {
            "closed_code": self.stalled_code,
            "transport_closed": aborted,
            "connection_object_freed": self.stalled_ref is not None and self.stalled_ref() is None,
            "still_registered": bool(self.hub.connections_of(STALLED)),
            "slow_consumers_closed": stats.slow_consumers_closed,
        }


class TempestFloor(Tempest):
    """``floor``: tempest_ws's server, router and registry, with a check-free broadcast."""

    kind = "floor"

    async def broadcast(self, seq: int, t_ns: int) -> None:
        from tempest_ws.wire._frames import encode_text_frame

        data = encode_text_frame(frame_text(seq, t_ns))
        for connection in self.hub._registry.connections.values():
            direct = connection._direct
            if direct is not None:  # the bench's clients all have one; no other check
                direct._transport.write(data)


async def rounds(target: Target, op: str, cmd: dict[str, Any]) -> dict[str, Any]:
    """Publish ``rounds`` messages; ``burst`` back to back (yielding to the event loop
    between two), ``tight`` back to back without yielding (all in one tick, as a batch job's
    loop does), ``paced`` one per ``interval``."""
    n, seq0 = int(cmd["rounds"]), int(cmd["seq0"])
    interval = float(cmd.get("interval", 0.0))
    deadline = time.monotonic() + float(cmd.get("timeout_s", 60))
    t0 = time.time_ns()
    tick = time.monotonic()
    done = 0
    for i in range(n):
        if time.monotonic() > deadline:
            break
        if op == "per_user":
            await target.send_each(seq0 + i, time.time_ns(), int(cmd["users"]))
        elif op == "topics" and isinstance(target, Tempest):
            await target.broadcast_topics(seq0 + i, time.time_ns())
        else:
            await target.broadcast(seq0 + i, time.time_ns())
        done += 1
        if interval > 0:
            tick = max(tick + interval, time.monotonic())
            await asyncio.sleep(tick - time.monotonic())
        elif op != "tight":
            await asyncio.sleep(0)
    return {"t0_ns": t0, "t1_ns": time.time_ns(), "rounds": done}


def trace_memory(action: str, frames: int = 1, match: str = "") -> dict[str, Any]:
    """``start`` tracing allocations (``frames`` deep), or ``report`` the top sites since;
    with ``match``, the full tracebacks of the sites whose line contains it (a development
    aid)."""
    import tracemalloc

    if action == "start":
        tracemalloc.start(frames)
        return {"ok": True}
    if match:
        found = tracemalloc.take_snapshot().statistics("traceback")
        return {
            "top": [
                f"{stat.size / 1024:9.1f} KiB {stat.count:7d}\n    "
                + "\n    ".join(stat.traceback.format())
                for stat in found
                if match in str(stat.traceback[-1])
            ][:5]
        }
    gc.collect()
    snapshot = tracemalloc.take_snapshot()
    stats = snapshot.statistics("lineno")
    return {
        "total_kib": sum(stat.size for stat in stats) / 1024,
        "top": [
            f"{stat.size / 1024:9.1f} KiB {stat.count:7d} {stat.traceback}" for stat in stats[:80]
        ],
    }


async def profiled(work: Any, path: str) -> Any:
    """Run ``work`` under cProfile (``BENCH_PROFILE=<op>``, a development aid)."""
    import cProfile

    profile = cProfile.Profile()
    profile.enable()
    try:
        return await work
    finally:
        profile.disable()
        profile.dump_stats(path)


async def command_loop(target: Target) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(listen_backlog())
    await target.start(sock)
    reply({"event": "ready", "port": sock.getsockname()[1], "kind": target.kind})
    while True:
        line = await reader.readline()
        if not line:
            break
        cmd = json.loads(line)
        op = cmd.pop("op")
        if op == "quit":
            reply({"ok": True})
            break
        try:
            if op == "count":
                result: dict[str, Any] = {"connections": target.count()}
            elif op == "stats" and isinstance(target, Tempest):
                result = dataclasses.asdict(target.hub.stats())
                result["handshakes_shed"] = getattr(target.router, "handshakes_shed", 0)
            elif op in ("burst", "paced", "per_user") and os.environ.get("BENCH_PROFILE") == op:
                result = await profiled(
                    rounds(target, op, cmd), f"/tmp/bench-{target.kind}-{op}.prof"
                )
            elif op in ("burst", "tight", "paced", "per_user", "topics"):
                result = await rounds(target, op, cmd)
            elif op == "drop_all" and isinstance(target, Tempest):
                result = target.drop_all(int(cmd.get("code", 1012)))
            elif op == "prefill_stalled":
                result = await target.prefill_stalled(
                    int(cmd["overflow_after"]), time.monotonic() + float(cmd.get("timeout_s", 10))
                )
            elif op == "stalled_status":
                result = await target.stalled_status()
            elif op == "tasks":  # where the tasks wait (see bench._storm.task_census)
                result = {"tasks": task_census()}
            elif op == "internals" and isinstance(target, Tempest):
                result = target.internals()
            elif op == "tracemalloc":
                result = trace_memory(
                    cmd.get("action", "start"), int(cmd.get("frames", 1)), cmd.get("match", "")
                )
            elif op == "gc":
                gc.collect()
                result = {"ok": True}
            else:
                result = {"error": f"unknown op {op}"}
        except Exception as exc:
            result = {"error": repr(exc)}
        reply(result)
    await target.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.server")
    parser.add_argument("kind", choices=["bare", "native", "picows", "tempest", "floor"])
    parser.add_argument("--heartbeat", type=float, default=None)
    parser.add_argument("--queue-size", type=int, default=None)
    parser.add_argument("--redis-url", default=None)
    parser.add_argument("--topics", type=int, default=0, help="user u<i> joins topic t<i %% K>")
    parser.add_argument("--max-connections", type=int, default=None)
    args = parser.parse_args()
    raise_fd_limit()
    logging.getLogger("tempest_ws").setLevel(logging.ERROR)  # slow-consumer notices are expected
    if os.environ.get("BENCH_GC") == "off":  # a diagnosis aid: are pauses the collector's?
        gc.disable()
    target: Target
    if args.kind == "bare":
        target = Bare()
    elif args.kind == "native":
        target = Native()
    elif args.kind == "picows":
        target = Picows()
    else:
        target = (TempestFloor if args.kind == "floor" else Tempest)(
            args.heartbeat, args.queue_size, args.redis_url, args.topics, args.max_connections
        )
    try:
        import uvloop
    except ImportError:
        asyncio.run(command_loop(target))
    else:
        uvloop.run(command_loop(target))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
