"""FastAPI dependencies are never skipped for the WebSocket, over real uvicorn.

``app.include_router(router, dependencies=[Depends(check_tenant)])`` used to run
``check_tenant`` for ``GET /ws/client.js`` but never for the WebSocket. Every level
(app, ``APIRouter``, ``include_router``, the router's own) now runs before the
handshake is accepted, and one that raises refuses the handshake with an HTTP status.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, HTTPException, WebSocket, WebSocketException
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tempest_ws import (
    CloseCode,
    ConfigurationError,
    WebSocketHub,
    jwt_bearer_resolver,
    make_websocket_router,
)
from tempest_ws.testing import serve
from tests.helpers.hardening import next_of_type, until_closed
from tests.helpers.support import echo_handler, make_settings, token, until, ws_url

pytestmark = pytest.mark.e2e


class Recorder:
    """Dependencies that note which level ran, and refuse on ``?refuse=<level>``."""

    def __init__(self) -> None:
        self.ran: list[str] = []

    def level(self, name: str) -> Callable[..., Any]:
        async def dependency(refuse: str | None = None) -> None:
            self.ran.append(name)
            if refuse == f"{name}-ws":
                raise WebSocketException(code=CloseCode.FORBIDDEN, reason="tenant refused")
            if refuse == f"{name}-http":
                raise HTTPException(status_code=401, detail="tenant refused")

        return dependency


def build(recorder: Recorder, **router_options: Any) -> tuple[FastAPI, WebSocketHub]:
    """App deps -> APIRouter deps -> include_router deps -> the router's own deps."""
    settings = make_settings(**router_options.pop("settings", {}))
    hub = WebSocketHub.from_settings(settings)
    app = FastAPI(dependencies=[Depends(recorder.level("app"))])
    outer = APIRouter(dependencies=[Depends(recorder.level("apirouter"))])
    router = make_websocket_router(
        echo_handler,
        hub=hub,
        bearer_resolver=jwt_bearer_resolver(settings),
        settings=settings,
        dependencies=[Depends(recorder.level("route"))],
        **router_options,
    )
    outer.include_router(router, dependencies=[Depends(recorder.level("include"))])
    app.include_router(outer)
    return app, hub


@pytest.fixture
async def served() -> AsyncIterator[tuple[str, Recorder, WebSocketHub]]:
    recorder = Recorder()
    app, hub = build(recorder)
    async with serve(app) as base:
        yield base, recorder, hub


LEVELS = ["app", "apirouter", "include", "route"]


async def test_every_level_runs_for_the_websocket_in_order(
    served: tuple[str, Recorder, WebSocketHub],
) -> None:
    base, recorder, _ = served
    async with connect(ws_url(base), subprotocols=["bearer", token()]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "bearer"  # the route still echoes the subprotocol
        await next_of_type(ws, "hello")
        assert recorder.ran == LEVELS
        await ws.send(json.dumps({"type": "echo", "data": {"n": 1}}))
        assert (await next_of_type(ws, "echo"))["data"] == {"n": 1}
    # The client script keeps the app's and include_router's dependencies, as before;
    # make_websocket_router(dependencies=) is for the WebSocket route only.
    recorder.ran.clear()
    async with httpx.AsyncClient(base_url=base) as http:
        assert (await http.get("/ws/client.js")).status_code == 200
    assert recorder.ran == LEVELS[:-1]


@pytest.mark.parametrize("level", LEVELS)
async def test_a_websocket_exception_refuses_the_handshake_with_403(
    served: tuple[str, Recorder, WebSocketHub], level: str
) -> None:
    base, recorder, hub = served
    url = ws_url(base) + f"?refuse={level}-ws"
    with pytest.raises(InvalidStatus) as info:
        async with connect(url, subprotocols=["bearer", token()]):  # type: ignore[list-item]
            pass
    assert info.value.response.status_code == 403
    assert recorder.ran == LEVELS[: LEVELS.index(level) + 1]  # later levels never ran
    assert hub.stats().connections == 0  # the endpoint never ran


@pytest.mark.parametrize("level", LEVELS)
async def test_an_http_exception_refuses_the_handshake_with_its_status(
    served: tuple[str, Recorder, WebSocketHub], level: str
) -> None:
    base, recorder, hub = served
    url = ws_url(base) + f"?refuse={level}-http"
    with pytest.raises(InvalidStatus) as info:
        async with connect(url, subprotocols=["bearer", token()]):  # type: ignore[list-item]
            pass
    assert info.value.response.status_code == 401
    assert json.loads(info.value.response.body) == {"detail": "tenant refused"}
    assert recorder.ran == LEVELS[: LEVELS.index(level) + 1]
    assert hub.stats().connections == 0


async def test_the_router_checks_still_apply_after_the_dependencies() -> None:
    recorder = Recorder()
    app, hub = build(recorder, settings={"WS_ALLOWED_ORIGINS": ["https://app.example"]})
    async with serve(app) as base:
        with pytest.raises(InvalidStatus) as info:
            async with connect(
                ws_url(base),
                subprotocols=["bearer", token()],  # type: ignore[list-item]
                origin="https://evil.example",  # type: ignore[arg-type]
            ):
                pass
        assert info.value.response.status_code == 403
        assert recorder.ran == LEVELS
        recorder.ran.clear()
        async with connect(
            ws_url(base),
            subprotocols=["bearer", "not-a-token"],  # type: ignore[list-item]
            origin="https://app.example",  # type: ignore[arg-type]
        ) as ws:
            _, code, _ = await until_closed(ws)
        assert code == CloseCode.UNAUTHORIZED
        assert recorder.ran == LEVELS
    assert hub.stats().connections == 0


async def test_a_dependency_with_yield_lives_as_long_as_the_connection() -> None:
    events: list[str] = []

    async def session_scope(websocket: WebSocket) -> AsyncIterator[None]:
        events.append("enter")
        yield
        events.append("exit")

    settings = make_settings()
    hub = WebSocketHub.from_settings(settings)
    app = FastAPI()
    router = make_websocket_router(
        echo_handler, hub=hub, bearer_resolver=jwt_bearer_resolver(settings), settings=settings
    )
    app.include_router(router, dependencies=[Depends(session_scope)])
    async with (
        serve(app, settings=settings) as base,
        connect(ws_url(base), subprotocols=["bearer", token()]) as ws,  # type: ignore[list-item]
    ):
        await next_of_type(ws, "hello")
        assert events == ["enter"]
        await ws.send(json.dumps({"type": "close", "data": {"code": 1000}}))
        _, code, _ = await until_closed(ws)
        assert code == CloseCode.NORMAL
        # FastAPI closes the dependency once the endpoint returned.
        await until(lambda: events == ["enter", "exit"])


async def test_a_dependency_missing_a_required_parameter_refuses_with_403() -> None:
    seen: list[str] = []

    async def needs_tenant(tenant: str) -> None:
        seen.append(tenant)

    settings = make_settings()
    hub = WebSocketHub.from_settings(settings)
    app = FastAPI()
    router = make_websocket_router(
        echo_handler, hub=hub, bearer_resolver=jwt_bearer_resolver(settings), settings=settings
    )
    app.include_router(router, dependencies=[Depends(needs_tenant)])
    async with serve(app, settings=settings) as base:
        with pytest.raises(InvalidStatus) as info:
            async with connect(ws_url(base), subprotocols=["bearer", token()]):  # type: ignore[list-item]
                pass
        assert info.value.response.status_code == 403
        assert hub.stats().connections == 0
        url = ws_url(base) + "?tenant=acme"
        async with connect(url, subprotocols=["bearer", token()]) as ws:  # type: ignore[list-item]
            await next_of_type(ws, "hello")
    assert seen == ["acme"]


async def test_install_puts_the_websocket_route_on_the_app_with_every_level_in_order() -> None:
    """``router.install(app, dependencies=)``: the WebSocket route is the app's own (no
    included-router dispatch kept per connection), the levels run in the same order,
    and a refusal still comes before the handshake."""
    recorder = Recorder()
    settings = make_settings()
    hub = WebSocketHub.from_settings(settings)
    routes: list[Any] = []

    async def handler(ws: WebSocket, connection: Any, hub: WebSocketHub) -> None:
        routes.append(ws.scope.get("route"))
        await echo_handler(ws, connection, hub)

    app = FastAPI(dependencies=[Depends(recorder.level("app"))])
    router = make_websocket_router(
        handler,
        hub=hub,
        bearer_resolver=jwt_bearer_resolver(settings),
        settings=settings,
        dependencies=[Depends(recorder.level("route"))],
    )
    router.install(app, prefix="/rt", dependencies=[Depends(recorder.level("include"))])
    async with serve(app) as base:
        url = ws_url(base, "/rt/ws")
        async with connect(url, subprotocols=["bearer", token()]) as ws:  # type: ignore[list-item]
            await next_of_type(ws, "hello")
            assert recorder.ran == ["app", "include", "route"]
            await ws.send(json.dumps({"type": "echo", "data": {"n": 1}}))
            assert (await next_of_type(ws, "echo"))["data"] == {"n": 1}
        assert routes[0] in app.router.routes  # the app's own route, not an included copy
        assert app.url_path_for("tempest_ws") == "/rt/ws"
        recorder.ran.clear()
        with pytest.raises(InvalidStatus) as info:
            async with connect(url + "?refuse=include-ws", subprotocols=["bearer", token()]):  # type: ignore[list-item]
                pass
        assert info.value.response.status_code == 403
        assert recorder.ran == ["app", "include"]
        recorder.ran.clear()
        async with httpx.AsyncClient(base_url=base) as http:  # the rest comes included
            assert (await http.get("/rt/ws/client.js")).status_code == 200
        assert recorder.ran == ["app", "include"]
        await until(lambda: hub.stats().connections == 0)
    with pytest.raises(ConfigurationError):
        router.install(FastAPI(), prefix="rt/")
