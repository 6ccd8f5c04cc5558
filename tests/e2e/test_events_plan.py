"""``async def`` dependencies over a real uvicorn socket: solved per message, with
sub-dependencies, FastAPI's per-message cache and the ``WebSocket``, and the app's
dependency overrides applied from the next message on, even when set while the
connection is open."""

from __future__ import annotations

import itertools
from typing import Annotated

from fastapi import Depends, FastAPI, WebSocket

from tempest_ws import WebSocketConnection, WebSocketHub, jwt_bearer_resolver, make_websocket_router
from tempest_ws.testing import live_server
from tests.helpers.support import make_settings, token

COUNTER = itertools.count(1)


async def next_number() -> int:
    """A fresh number per call: tells a cached value from a new call."""
    return next(COUNTER)


async def numbered(
    first: Annotated[int, Depends(next_number)], again: Annotated[int, Depends(next_number)]
) -> tuple[int, int]:
    """Asks twice for the same dependency: FastAPI calls it once per message."""
    return first, again


async def socket_path(websocket: WebSocket) -> str:
    return websocket.url.path


def build() -> FastAPI:
    settings = make_settings()
    app = FastAPI()
    router = make_websocket_router(
        hub=WebSocketHub.from_settings(settings),
        bearer_resolver=jwt_bearer_resolver(settings),
        settings=settings,
    )

    @router.on("numbers")
    async def numbers(
        pair: Annotated[tuple[int, int], Depends(numbered)],
        fresh: Annotated[int, Depends(next_number, use_cache=False)],
        path: Annotated[str, Depends(socket_path)],
        connection: WebSocketConnection,
    ) -> dict[str, object]:
        return {"pair": list(pair), "fresh": fresh, "path": path, "user": connection.user_id}

    @router.on("numbers.many", concurrent=True)
    async def numbers_many(pair: Annotated[tuple[int, int], Depends(numbered)]) -> list[int]:
        return list(pair)

    app.include_router(router)
    return app


async def test_async_dependencies_are_solved_per_message_with_fastapis_cache() -> None:
    app = build()
    async with (
        live_server(app, settings=make_settings()) as server,
        server.connect(token("ann")) as ann,
    ):
        seen: list[int] = []
        for n in range(3):
            await ann.send_envelope("numbers", request_id=str(n))
            reply = await ann.expect("numbers.reply")
            assert reply.request_id == str(n)
            data = reply.data
            assert isinstance(data, dict)
            first, again = data["pair"]
            assert first == again, "one message calls a cached dependency once"
            assert data["fresh"] == first + 1, "use_cache=False calls it again"
            assert (data["path"], data["user"]) == ("/ws", "ann")
            seen.append(first)
        assert seen[0] < seen[1] < seen[2], "every message solves its dependencies anew"
        for n in range(4):
            await ann.send_envelope("numbers.many", request_id=f"m{n}")
        pairs = [(await ann.expect("numbers.many.reply")).data for _ in range(4)]
        assert all(isinstance(p, list) and p[0] == p[1] for p in pairs)
        assert len({p[0] for p in pairs if isinstance(p, list)}) == 4


async def test_an_override_set_while_connected_applies_from_the_next_message() -> None:
    app = build()
    async with (
        live_server(app, settings=make_settings()) as server,
        server.connect(token("ann")) as ann,
    ):
        await ann.send_envelope("numbers.many", request_id="before")
        before = (await ann.expect("numbers.many.reply")).data
        assert isinstance(before, list)
        assert before[0] > 0

        async def minus_one() -> int:
            return -1

        app.dependency_overrides[next_number] = minus_one
        await ann.send_envelope("numbers.many", request_id="during")
        assert (await ann.expect("numbers.many.reply")).data == [-1, -1]
        app.dependency_overrides.clear()
        await ann.send_envelope("numbers.many", request_id="after")
        after = (await ann.expect("numbers.many.reply")).data
        assert isinstance(after, list)
        assert after[0] > before[0]
