"""``python -m bench.events [--frames N] [--rounds R] [--out FILE]``: what an event handler costs.

One process, no sockets: ``N`` ``chat.send`` envelopes go through the session's real
read loop (``HandlerChannel.read_loop``) into a real connection whose frames are
written to a counting ``send``, each answered with a ``chat.send.reply``. The same run
measures, alternating, best of ``R`` rounds, in microseconds per message:

- **classic**: the classic handler loop doing the work by hand: ``ws.receive_json()``,
  a check of the ``type`` (another type is answered with an error),
  ``ChatSend.model_validate(data)`` (a ``ValidationError`` is answered with an error),
  ``await get_db()``, the reply encoded and queued;
- **events**: ``@router.on("chat.send")`` with ``message: ChatSend`` and
  ``db: Annotated[Database, Depends(get_db)]``: validation, FastAPI's
  ``solve_dependencies``, the call and the reply, through the router's dispatch;
- **events without Depends**: the same handler without the dependency;
- **events with a yield Depends**: the same handler with ``get_db`` written as a
  ``yield`` dependency, so each message gets exit stacks of its own, closed after it;
- **classic with a yield dependency**: the classic loop entering that ``yield``
  dependency by hand (``async with asynccontextmanager(get_db_session)()``), the
  baseline of the previous variant.

It prints the ratio events / classic (the target is at most 1.10) and writes
``bench/results/events.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI
from pydantic import BaseModel, Field, ValidationError
from starlette.websockets import WebSocketState

from tempest_ws import WebSocketConnection, WebSocketHub, WebSocketSettings, make_websocket_router
from tempest_ws.router._handler_socket import HandlerWebSocket
from tempest_ws.router._session import HandlerChannel, SessionLimits
from tempest_ws.wire.envelope import encode_envelope

RESULTS = Path(__file__).resolve().parent / "results" / "events.json"
TARGET = 1.10


class ChatSend(BaseModel):
    room: str = Field(max_length=64)
    text: str = Field(max_length=2000)


class ChatSent(BaseModel):
    id: int
    room: str


class Database:
    def __init__(self) -> None:
        self.count = 0


DATABASE = Database()


async def get_db() -> Database:
    return DATABASE


async def get_db_session() -> AsyncIterator[Database]:
    yield DATABASE


class _Heartbeat:
    def touch(self) -> None:
        pass


def unknown_type(message: dict[str, Any]) -> dict[str, Any]:
    """The classic loop's answer to a type it does not handle."""
    data = {"code": "unknown_type", "message": f"unknown message type {message.get('type')!r}"}
    return {"type": "error", "data": data, "request_id": message.get("request_id")}


def invalid_data(message: dict[str, Any], exc: ValidationError) -> dict[str, Any]:
    """The classic loop's answer to ``data`` that does not validate."""
    data = {"code": "invalid_data", "message": str(exc)}
    return {"type": "error", "data": data, "request_id": message.get("request_id")}


def _frames(n: int) -> list[str]:
    return [
        json.dumps(
            {
                "type": "chat.send",
                "data": {"room": "lobby", "text": f"hello {i}"},
                "request_id": str(i),
            }
        )
        for i in range(n)
    ]


async def _run(texts: list[str], kind: str) -> float:
    """Seconds for every frame to be read, handled and its reply written."""
    settings = WebSocketSettings(_env_file=None)  # type: ignore[call-arg]
    hub = WebSocketHub()
    await hub.start()
    feed = iter(texts)
    replies = 0
    done = asyncio.Event()

    async def raw_receive() -> dict[str, Any]:
        text = next(feed, None)
        if text is None:
            await done.wait()
            return {"type": "websocket.disconnect", "code": 1000}
        return {"type": "websocket.receive", "text": text}

    async def raw_send(message: Any) -> None:
        nonlocal replies
        replies += 1
        if replies == len(texts):
            done.set()

    async def resolver(token: str) -> str:
        return "bench"

    router = make_websocket_router(
        hub=hub, bearer_resolver=resolver, settings=settings, serve_client=False
    )
    if kind == "events":

        @router.on("chat.send")
        async def chat_send(
            message: ChatSend, db: Annotated[Database, Depends(get_db)]
        ) -> ChatSent:
            db.count += 1
            return ChatSent(id=db.count, room=message.room)

    elif kind == "events with a yield Depends":

        @router.on("chat.send")
        async def chat_send_yield(
            message: ChatSend, db: Annotated[Database, Depends(get_db_session)]
        ) -> ChatSent:
            db.count += 1
            return ChatSent(id=db.count, room=message.room)

    elif kind == "events without Depends":

        @router.on("chat.send")
        async def chat_send_plain(message: ChatSend) -> ChatSent:
            DATABASE.count += 1
            return ChatSent(id=DATABASE.count, room=message.room)

    endpoint = router._tempest_endpoint  # the bench drives the endpoint's parts directly
    channel = HandlerChannel(raw_receive, raw_send)
    connection = hub.create_connection("bench", send=raw_send)
    channel.attach(connection)
    connection.start()
    scope = {
        "type": "websocket",
        "path": "/ws",
        "headers": [],
        "query_string": b"",
        "app": FastAPI(),
    }
    ws = HandlerWebSocket(scope, channel.receive, channel.send, max_json_depth=32)
    ws.client_state = ws.application_state = WebSocketState.CONNECTED
    limits = SessionLimits(
        max_message_bytes=1 << 20,
        accept_binary=False,
        max_invalid_frames=10,
        heartbeat_seconds=25,
        heartbeat_timeout=60,
    )

    async def classic(ws: HandlerWebSocket, connection: WebSocketConnection, hub: Any) -> None:
        while True:
            message = await ws.receive_json()
            if message.get("type") != "chat.send":
                connection.enqueue(encode_envelope(unknown_type(message)))
                continue
            try:
                data = ChatSend.model_validate(message["data"])
            except ValidationError as exc:
                connection.enqueue(encode_envelope(invalid_data(message, exc)))
                continue
            db = await get_db()
            db.count += 1
            reply = ChatSent(id=db.count, room=data.room).model_dump(mode="json")
            frame = {"type": "chat.send.reply", "data": reply, "request_id": message["request_id"]}
            connection.enqueue(encode_envelope(frame))

    async def classic_yield(
        ws: HandlerWebSocket, connection: WebSocketConnection, hub: Any
    ) -> None:
        enter = asynccontextmanager(get_db_session)
        while True:
            message = await ws.receive_json()
            if message.get("type") != "chat.send":
                connection.enqueue(encode_envelope(unknown_type(message)))
                continue
            try:
                data = ChatSend.model_validate(message["data"])
            except ValidationError as exc:
                connection.enqueue(encode_envelope(invalid_data(message, exc)))
                continue
            async with enter() as db:
                db.count += 1
                reply = ChatSent(id=db.count, room=data.room).model_dump(mode="json")
            frame = {"type": "chat.send.reply", "data": reply, "request_id": message["request_id"]}
            connection.enqueue(encode_envelope(frame))

    classics = {"classic": classic, "classic with a yield dependency": classic_yield}
    handler = classics.get(kind, endpoint.handler)
    inbound = None if kind in classics else endpoint.inbound
    start = time.perf_counter()
    task = asyncio.ensure_future(handler(ws, connection, hub))
    await channel.read_loop(connection, _Heartbeat(), limits, inbound=inbound)  # type: ignore[arg-type]
    elapsed = time.perf_counter() - start
    assert replies == len(texts), (kind, replies)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await connection.close()
    await hub.stop()
    return elapsed


KINDS = (
    "classic",
    "events",
    "events without Depends",
    "events with a yield Depends",
    "classic with a yield dependency",
)


def markdown_section(r: dict[str, Any]) -> list[str]:
    """The event handlers section of ``docs/performance.md`` from a run's results."""
    us = r["us_per_message"]
    machine = r["machine"]
    by_hand = us.get("classic with a yield dependency")
    lines = [
        "",
        "## Event handlers",
        "",
        f"`{r['command']}` ({machine['cpus']} cores, Python {machine['python']}, load "
        f"average {machine['load_average'][0]:.1f} at the end). {r['frames']:,} `chat.send` "
        "envelopes go through the session's real read loop into a connection whose frames "
        "are counted, each answered with a `chat.send.reply`; the variants alternate "
        f"in one process and the best of {r['rounds']} rounds is shown, per message:",
        "",
        "| Variant | µs per message | × classic |",
        "|---|---|---|",
        "| classic loop: `receive_json`, a check of the `type`, `model_validate` (both "
        "answering an error when they fail), `await get_db()`, reply by hand "
        f"| {us['classic']:.1f} | 1.00 |",
        f"| `@router.on` with the model and `Depends(get_db)` | {us['events']:.1f} "
        f"| {r['ratio_events_vs_classic']:.2f} |",
        f"| `@router.on` with the model, no dependency | {us['events without Depends']:.1f} "
        f"| {r['ratio_plain_vs_classic']:.2f} |",
        f"| `@router.on` with the model and a `yield` dependency "
        f"| {us['events with a yield Depends']:.1f} | {r['ratio_yield_vs_classic']:.2f} |",
    ]
    if by_hand is not None:
        lines.append(
            "| classic loop entering the same `yield` dependency by hand "
            f"(`async with asynccontextmanager(get_db_session)()`) | {by_hand:.1f} "
            f"| {by_hand / us['classic']:.2f} |"
        )
    lines += [
        "",
        "With one `async def` dependency, dispatch, validation, the dependency and the "
        f"reply cost {r['ratio_events_vs_classic']:.2f}× the hand-written loop (the target "
        f"is at most {r['target']:.2f}×). tempest_ws reads a handler's dependency tree "
        "with FastAPI's `get_dependant` when the handler is registered; when every "
        "dependency in it is an `async def` whose parameters are other dependencies, the "
        "`WebSocket` or the `Response`, it also works out once, in FastAPI's order and with "
        "FastAPI's per-message cache rules, which functions a message calls, so a message "
        "only calls them. Any other tree (query, header or cookie parameters, `yield` "
        "dependencies, sync functions, classes, `Security` scopes) and any app with "
        "dependency overrides is solved by FastAPI's `solve_dependencies` per message, "
        "the same work it does per HTTP request.",
    ]
    if by_hand is not None:
        lines += [
            "",
            "A `yield` dependency is one of those: FastAPI enters it in the message's exit "
            "stack, with its cleanup shielded from cancellation, and closes it after the "
            f"message: {r['ratio_yield_vs_classic_yield']:.2f}× the classic loop that "
            "enters the same dependency by hand without that shielding. A handler that "
            "needs no per-message cleanup takes an `async def` dependency, the connection "
            "and the hub by type, or what it shares from its closure.",
        ]
    return lines


async def main(frames: int, rounds: int) -> dict[str, Any]:
    texts = _frames(frames)
    timings: dict[str, list[float]] = {kind: [] for kind in KINDS}
    await _run(texts[: frames // 10], "events")  # warm-up: imports, pydantic, FastAPI
    for _ in range(rounds):
        for kind in KINDS:
            timings[kind].append(await _run(texts, kind))
    per_message = {kind: min(values) / frames * 1e6 for kind, values in timings.items()}
    ratio = per_message["events"] / per_message["classic"]
    result = {
        "command": f"python -m bench.events --frames {frames} --rounds {rounds}",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average": list(os.getloadavg()),
        },
        "frames": frames,
        "rounds": rounds,
        "us_per_message": per_message,
        "ratio_events_vs_classic": ratio,
        "ratio_plain_vs_classic": per_message["events without Depends"] / per_message["classic"],
        "ratio_yield_vs_classic": per_message["events with a yield Depends"]
        / per_message["classic"],
        "ratio_yield_vs_classic_yield": per_message["events with a yield Depends"]
        / per_message["classic with a yield dependency"],
        "target": TARGET,
    }
    for kind, value in per_message.items():
        print(f"{kind:32s} {value:8.2f} µs/message")
    print(f"events / classic                 {ratio:8.3f}  (target <= {TARGET:.2f})")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.events")
    parser.add_argument("--frames", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--out", type=Path, default=RESULTS)
    options = parser.parse_args()
    outcome = asyncio.run(main(options.frames, options.rounds))
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(json.dumps(outcome, indent=2) + "\n")
