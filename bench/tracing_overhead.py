"""``python -m bench.tracing_overhead [--frames N] [--rounds R]``: what tracing costs.

Micro benchmarks of the paths the tracing hooks touch, in one process, best of ``R``
rounds, in nanoseconds per operation:

- ``encode_packet`` / ``decode_packet`` on the fast path (a topic delivery, no
  exclusions), and with a trace context (what a traced delivery pays);
- ``hub.broadcast`` to a topic with no local member (packet built and published on the
  in-memory backplane), with tracing on: outside any span, and inside one (the
  ``tp`` header is written);
- the session's read loop: ``N`` envelopes read, inspected and delivered to a handler
  that takes them with ``receive_envelope``, per frame.

Each is measured with tracing off, and (when this tempest_ws has ``tempest_ws.tracing``
and opentelemetry-sdk is installed) with tracing on, spans going to a no-op processor.
Run it against another checkout with ``PYTHONPATH=<checkout>`` to compare with the code
before tracing existed (``docs/tracing.md`` reports both).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
import timeit
from collections.abc import Callable
from typing import Any

from tempest_ws import WebSocketHub, receive_envelope
from tempest_ws.backplane.packet import decode_packet, encode_packet
from tempest_ws.router._session import HandlerChannel, SessionLimits

try:
    from tempest_ws.tracing import Tracing
except ImportError:  # a checkout from before tracing
    Tracing = None  # type: ignore[assignment,misc]

NODE = "3f9c0a1b2c4d"
FRAME = json.dumps({"type": "chat.message", "data": {"room": "r1", "text": "hello " * 8}})
CARRIER = {"traceparent": "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"}


def best(fn: Callable[[], object], number: int, rounds: int) -> float:
    """Nanoseconds per call, best of ``rounds``."""
    return min(timeit.repeat(fn, number=number, repeat=rounds)) / number * 1e9


def packets(rounds: int) -> dict[str, float]:
    plain = encode_packet(NODE, "topic", "room:1", FRAME)
    results = {
        "encode_packet": best(
            lambda: encode_packet(NODE, "topic", "room:1", FRAME), 200_000, rounds
        ),
        "decode_packet": best(lambda: decode_packet(plain), 200_000, rounds),
    }
    if Tracing is not None:
        traced = encode_packet(NODE, "topic", "room:1", FRAME, trace=CARRIER)
        results["encode_packet traced"] = best(
            lambda: encode_packet(NODE, "topic", "room:1", FRAME, trace=CARRIER), 200_000, rounds
        )
        results["decode_packet traced"] = best(lambda: decode_packet(traced), 200_000, rounds)
    return results


async def broadcast(rounds: int, tracing: Any, *, in_span: bool = False) -> float:
    hub = WebSocketHub() if tracing is None else WebSocketHub(tracing=tracing)
    await hub.start()
    scope = tracing.tracer.start_as_current_span("caller") if in_span else contextlib.nullcontext()
    envelope = {"type": "chat.message", "data": {"n": 1}}
    number = 20_000
    timings = []
    try:
        with scope:
            for _ in range(rounds):
                start = time.perf_counter()
                for _ in range(number):
                    await hub.broadcast(envelope, topic="room:1")
                timings.append(time.perf_counter() - start)
                await asyncio.sleep(0)
    finally:
        await hub.stop()
    return min(timings) / number * 1e9


class _Heartbeat:
    def touch(self) -> None:
        pass


async def read_loop(frames: int, tracing: Any) -> float:
    """Nanoseconds per frame through the read loop and the handler's receive."""
    hub = WebSocketHub()
    await hub.start()
    texts = [
        json.dumps({"type": "chat.send", "data": {"n": n}, "request_id": None})
        for n in range(frames)
    ]
    feed = iter(texts)

    async def raw_receive() -> dict[str, Any]:
        text = next(feed, None)
        if text is None:
            return {"type": "websocket.disconnect", "code": 1000}
        return {"type": "websocket.receive", "text": text}

    async def raw_send(message: Any) -> None:
        pass

    channel = HandlerChannel(raw_receive, raw_send)
    connection = hub.create_connection("bench", send=raw_send)
    channel.attach(connection)
    if tracing is not None:
        channel.tracer = tracing.session(connection.connection_id)
    limits = SessionLimits(
        max_message_bytes=1 << 20,
        accept_binary=False,
        max_invalid_frames=10,
        heartbeat_seconds=25,
        heartbeat_timeout=60,
    )

    class _WS:  # the part of starlette's WebSocket receive_envelope uses
        receive = staticmethod(channel.receive)

    async def handler() -> None:
        with contextlib.suppress(Exception):
            while True:
                await receive_envelope(_WS)  # type: ignore[arg-type]

    start = time.perf_counter()
    task = asyncio.create_task(handler())
    await channel.read_loop(connection, _Heartbeat(), limits)  # type: ignore[arg-type]
    await task
    elapsed = time.perf_counter() - start
    tracer = getattr(channel, "tracer", None)  # None before tracing existed
    if tracer is not None:
        tracer.close()
    await hub.stop()
    return elapsed / frames * 1e9


def tracing_on() -> Any:
    if Tracing is None:
        return None
    try:
        from opentelemetry.sdk.trace import TracerProvider
    except ImportError:
        return None
    return Tracing(tracer_provider=TracerProvider())  # sampled spans, no exporter


async def main(frames: int, rounds: int) -> None:
    results = packets(rounds)
    results["hub.broadcast"] = await broadcast(rounds, None)
    results["read loop per frame"] = min([await read_loop(frames, None) for _ in range(rounds)])
    on = tracing_on()
    if on is not None:
        results["hub.broadcast traced (no span)"] = await broadcast(rounds, on)
        results["hub.broadcast traced (in a span)"] = await broadcast(rounds, on, in_span=True)
        results["read loop per frame traced"] = min(
            [await read_loop(frames, on) for _ in range(rounds)]
        )
    for name, value in results.items():
        print(f"{name:36s} {value:10.0f} ns")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.tracing_overhead")
    parser.add_argument("--frames", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    options = parser.parse_args()
    asyncio.run(main(options.frames, options.rounds))
