"""Every module of ``docs_src/`` (the code the docs include) runs here.

Each test imports the snippets of one page and runs them as the page describes:
against a real uvicorn server on a free loopback port (:func:`tempest_ws.testing.serve`)
with the ``websockets`` client or the package's own clients, asserting what the page
says the code does.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI, WebSocket
from pydantic import BaseModel
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as websockets_serve

from docs_src import asyncapi as asyncapi_src
from docs_src import (
    authentication,
    index,
    lifecycle,
    messages,
    metrics,
    migrate_from_fastapi,
    python_client,
    realtime,
)
from docs_src import hub as hub_src
from docs_src import testing as testing_src
from tempest_ws import (
    CloseCode,
    InMemoryBackplane,
    RedisBackplane,
    WebSocketConnection,
    WebSocketHub,
    WSEnvelope,
    jwt_bearer_resolver,
    make_websocket_router,
)
from tempest_ws.client import RequestError
from tempest_ws.history import HistoryPolicy
from tempest_ws.testing import expect_close, expect_envelope, serve
from tests.helpers.server_process import free_port
from tests.helpers.support import SECRET, build_app, make_settings, token, until, ws_url

pytestmark = pytest.mark.e2e

BOUND = 15.0
ROOT = Path(__file__).resolve().parents[2]


@asynccontextmanager
async def tab(base: str, user: str, *, query: str = "") -> AsyncIterator[ClientConnection]:
    """A ``websockets`` connection as ``user`` (bearer subprotocol), past its ``hello``."""
    async with connect(
        ws_url(base) + query,
        subprotocols=["bearer", token(user)],
        proxy=None,  # type: ignore[list-item]
    ) as ws:
        await expect_envelope(ws, "hello")
        yield ws


async def ask(ws: ClientConnection, kind: str, data: Any, request_id: str) -> WSEnvelope:
    """Send a request envelope; return the answer carrying ``request_id``."""
    await ws.send(WSEnvelope(type=kind, data=data, request_id=request_id).model_dump_json())
    async with asyncio.timeout(BOUND):
        while True:
            envelope = await expect_envelope(ws, "ack", skip_others=True)
            if envelope.request_id == request_id:
                return envelope


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An empty working directory (no ``.env``) and no ``WS_*`` variable but the secret."""
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("WS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("WS_JWT_SECRET", SECRET)


# -- asyncapi.md, messages.md ------------------------------------------------------------


def test_asyncapi_and_messages_imports_work() -> None:
    registry = messages.MessageRegistry()

    @registry.inbound("note.add")
    class NoteAdd(BaseModel):
        text: str

    document = asyncapi_src.asyncapi_document(registry, settings=make_settings())
    assert document["asyncapi"].startswith("3.")
    assert "note.add" in str(document)
    assert callable(asyncapi_src.add_asyncapi_route)


# -- authentication.md -------------------------------------------------------------------


async def test_the_authorization_header_carries_the_token() -> None:
    app, _ = build_app(make_settings())
    async with serve(app) as base:
        hello = await authentication.hello_with_authorization_header(ws_url(base), token("ann"))
    assert hello["type"] == "hello"


async def test_the_resolver_reads_the_environment(clean_env: None) -> None:
    resolver = authentication.resolver_from_environment()
    assert await resolver(token("ann")) == "ann"
    assert await resolver("not-a-jwt") is None


def write_file(name: str, content: bytes) -> None:
    Path(name).write_bytes(content)


async def test_the_rs256_resolver_reads_the_public_key_file(clean_env: None) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    write_file("jwt-public.pem", public)
    resolver = authentication.rs256_resolver(make_settings())
    claims = {"sub": "ann", "exp": int(time.time()) + 60, "aud": "websocket"}
    good = jwt.encode({**claims, "iss": "https://auth.example.com"}, key, algorithm="RS256")
    foreign = jwt.encode({**claims, "iss": "https://evil.example.com"}, key, algorithm="RS256")
    assert await resolver(good) == "ann"
    assert await resolver(foreign) is None


async def test_every_dependency_level_runs_in_the_documented_order() -> None:
    calls: list[str] = []
    app, _ = authentication.app_with_dependencies(make_settings(), calls)
    async with serve(app) as base, tab(base, "ann"):
        pass
    assert calls == ["audit", "check_plan", "check_tenant", "check_region"]


# -- backplane.md ------------------------------------------------------------------------


async def test_the_backplane_page_builds_redis_and_shared_memory_hubs() -> None:
    from docs_src import backplane

    assert isinstance(backplane.hub.backplane, RedisBackplane)  # not connected until started
    assert isinstance(backplane.a.backplane, InMemoryBackplane)
    settings = make_settings()
    app_a, _ = build_app(settings, hub=backplane.a)
    app_b, _ = build_app(settings, hub=backplane.b)
    async with serve(app_a) as base_a, serve(app_b) as base_b, tab(base_b, "bob") as bob:
        await bob.send('{"type": "subscribe", "data": {"topic": "room:1"}}')
        await expect_envelope(bob, "subscribed")
        async with tab(base_a, "ann"):
            await backplane.a.broadcast({"type": "note", "data": "from a"}, topic="room:1")
        assert (await expect_envelope(bob, "note")).data == "from a"


# -- deployment.md -----------------------------------------------------------------------


def fresh(name: str) -> ModuleType:
    """Import ``name`` again, so module-level settings read the current environment."""
    sys.modules.pop(name, None)
    return importlib.import_module(name)


async def test_health_routes_answer_and_readiness_drops_while_draining(clean_env: None) -> None:
    deployment = fresh("docs_src.deployment")
    async with serve(deployment.app) as base, httpx.AsyncClient(base_url=base) as http:
        async with tab(base, "ann"):
            assert (await http.get("/healthz")).json() == {"connections": 1, "users": 1}
            ready = await http.get("/readyz")
            assert (ready.status_code, ready.json()) == (200, {"ready": True})
            await deployment.router.drain(grace=5)
        draining = await http.get("/readyz")
        assert (draining.status_code, draining.json()) == (503, {"ready": False})


def start_deployment_example(port: int, cwd: Path) -> subprocess.Popen[bytes]:
    """``python -m docs_src.deployment PORT`` with only the JWT secret set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WS_")}
    env["WS_JWT_SECRET"] = SECRET
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.Popen(
        [sys.executable, "-m", "docs_src.deployment", str(port)],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


async def test_the_draining_server_closes_1001_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    process = start_deployment_example(port, tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        async with asyncio.timeout(30), httpx.AsyncClient(base_url=base) as http:
            while True:
                try:
                    if (await http.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
        async with tab(base, "ann") as ws:
            process.send_signal(signal.SIGTERM)
            assert await expect_close(ws, timeout=BOUND) == CloseCode.GOING_AWAY
        # uvicorn re-raises the signal it handled once it has shut down.
        assert await asyncio.to_thread(process.wait, BOUND) in (0, -signal.SIGTERM)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        assert process.stderr is not None
        process.stderr.close()


# -- hub.md ------------------------------------------------------------------------------


async def test_hub_page_deliveries_reach_whom_the_page_says() -> None:
    settings = make_settings()
    hub, explicit = hub_src.build_hubs(settings)
    assert explicit.max_per_user == 5
    app, _ = build_app(settings, hub=hub)
    async with serve(app) as base, tab(base, "alice") as alice, tab(base, "bob") as bob:
        for ws, topics in ((alice, ["chat:lobby", "order:7"]), (bob, ["chat:lobby"])):
            for topic in topics:
                await ws.send(f'{{"type": "subscribe", "data": {{"topic": "{topic}"}}}}')
                await expect_envelope(ws, "subscribed")
        await hub_src.notify(hub, "alice")
        for _ in range(2):
            assert (await expect_envelope(alice, "notification")).data == {"text": "hi"}
        connection = hub.connections_of("alice")[0]
        line = {"type": "chat.line", "data": "x"}
        await hub_src.broadcasts(hub, connection, line, 7, "bob")
        await hub_src.post_to_room(hub, WSEnvelope(type="chat.line", data="y"), "chat:lobby")
        expected = {
            alice: ["system.announcement", "order.paid", "chat.line", "chat.line"],
            bob: ["system.announcement", "chat.line", "chat.line"],
        }
        for ws, kinds in expected.items():
            got = [(await expect_envelope(ws, kind)).type for kind in kinds]
            assert got == kinds


async def test_a_reply_keeps_the_request_id() -> None:
    settings = make_settings()
    app, _ = build_app(settings, handler=hub_src.order_handler)
    async with serve(app) as base, tab(base, "ann") as ws:
        answer = await ask(ws, "order.place", {"sku": "a"}, "r-1")
    assert answer.data == {"id": len(str({"sku": "a"}))}


async def test_the_tenant_authorizer_scopes_topics_and_topics_are_required() -> None:
    settings = make_settings()
    hub = hub_src.tenant_hub(settings)

    def on_connect(connection: WebSocketConnection, ws: WebSocket) -> None:
        connection.metadata["tenant"] = ws.query_params.get("tenant")

    app, _ = build_app(
        settings,
        handler=hub_src.order_handler,
        hub=hub,
        builtins=["subscribe"],
        on_connect=on_connect,
    )
    async with serve(app) as base, tab(base, "ann", query="?tenant=acme") as ws:
        await ws.send('{"type":"subscribe","data":{"topic":"tenant:acme:x"},"request_id":"1"}')
        assert (await expect_envelope(ws, "ack")).request_id == "1"
        await ws.send('{"type":"subscribe","data":{"topic":"tenant:other:x"},"request_id":"2"}')
        refused = await expect_envelope(ws, "error")
        assert (refused.request_id, refused.data["code"]) == ("2", "forbidden")
        with pytest.raises(ValueError, match="requires a topic"):
            await hub.broadcast({"type": "all"})


# -- index.md, lifecycle.md --------------------------------------------------------------


async def test_the_home_page_router_serves_an_authenticated_socket() -> None:
    async with serve(index.create_app(make_settings())) as base, tab(base, "ann") as ws:
        await ws.send('{"type": "echo.me", "data": 1}')
        assert (await expect_envelope(ws, "echo.me")).data == 1


async def test_a_handler_that_returns_closes_normally() -> None:
    app, _ = build_app(make_settings(), handler=lifecycle.handler)
    async with serve(app) as base, tab(base, "ann") as ws:
        assert await expect_close(ws, timeout=BOUND) == CloseCode.NORMAL


# -- metrics.md --------------------------------------------------------------------------


async def test_the_sampling_lifespan_syncs_the_hub_numbers() -> None:
    settings = make_settings()
    hub = WebSocketHub.from_settings(settings)
    app, sampled = metrics.create_app(hub)
    try:
        router = make_websocket_router(
            hub_src.order_handler,
            hub=hub,
            bearer_resolver=jwt_bearer_resolver(settings),
            settings=settings,
        )
        app.include_router(router)
        async with serve(app) as base, tab(base, "ann"):
            # No scrape, no explicit sync: only the sampler (every 5 s) can set the gauge.
            await until(
                lambda: sampled.registry.get_sample_value("tempest_ws_connections_open") == 1,
                timeout=BOUND,
            )
    finally:
        sampled.close()


# -- migrate-from-fastapi.md -------------------------------------------------------------


async def test_the_bare_fastapi_pattern_works_as_the_page_shows() -> None:
    app = migrate_from_fastapi.app
    async with serve(app) as base:
        url = ws_url(base) + "?token=ann"
        async with connect(url, proxy=None) as one, connect(url, proxy=None) as two:
            await until(lambda: len(migrate_from_fastapi.manager.active) == 2)
            await one.send("hello")
            assert [await one.recv(), await two.recv()] == ["ann: hello", "ann: hello"]
    assert migrate_from_fastapi.manager.active == []


# -- python-client.md --------------------------------------------------------------------


def alice() -> Any:
    async def get_token() -> str:
        return token("alice")

    return get_token


@asynccontextmanager
async def chat_server(hub: WebSocketHub | None = None, **options: Any) -> AsyncIterator[str]:
    """The python-client page's server: built-ins, presence, ``users`` answered."""
    settings = make_settings()
    hub = hub or WebSocketHub.from_settings(settings, presence=True)
    async with serve(python_client.create_app(settings, hub, **options)) as base:
        yield ws_url(base)


async def test_a_session_subscribes_sends_requests_and_reads() -> None:
    async with chat_server() as url:
        reply, envelope = await python_client.session(url, alice())
    assert reply.data == ["alice"]
    assert (envelope.type, envelope.data["text"]) == ("chat.message", "hi")


async def test_a_typed_request_returns_the_model_or_the_refusal() -> None:
    async with (
        chat_server() as url,
        python_client.WebSocketClient(url, token_provider=alice()) as client,
    ):
        sent = await python_client.post(client, "hi")
        assert isinstance(sent, python_client.ChatSent)
        assert sent.id == 1
        with pytest.raises(RequestError) as refused:
            await client.request(
                "chat.send",
                {"room": "lobby", "text": "x" * 2001},  # a dict: the server validates it
                response_model=python_client.ChatSent,
                timeout=BOUND,
            )
    assert refused.value.code == "invalid_data"
    assert [e["loc"] for e in refused.value.data["errors"]] == [["text"]]


async def test_the_builtin_helpers_answer() -> None:
    async with (
        chat_server() as url,
        python_client.WebSocketClient(url, token_provider=alice()) as client,
    ):
        await client.subscribe("room:lobby")
        assert await python_client.room_tools(client, "m-42") == {"alice"}


async def test_a_forgiving_policy_keeps_trying_after_4403() -> None:
    attempts: list[str] = []

    def refuse_first(connection: WebSocketConnection, ws: WebSocket) -> bool:
        attempts.append(connection.user_key)
        return len(attempts) > 1  # False: 4403

    async with (
        chat_server(on_connect=refuse_first) as url,
        python_client.forgiving_client(url, alice()) as client,
    ):
        assert (await client.request("users", timeout=BOUND)).data == ["alice"]
    assert attempts == ["alice", "alice"]


async def test_a_refused_token_is_fetched_again() -> None:
    fetched: list[str] = []

    async def fetch() -> tuple[str, float]:
        fetched.append("login")
        return ("revoked-token" if len(fetched) == 1 else token("alice")), 3600.0

    async with chat_server() as url, python_client.refreshing_client(url, fetch) as client:
        assert (await client.request("users", timeout=BOUND)).data == ["alice"]
    assert fetched == ["login", "login"]


async def test_round_robin_skips_a_dead_node() -> None:
    async with chat_server() as url:
        dead = f"ws://127.0.0.1:{free_port()}/ws"
        async with python_client.round_robin_client(alice(), urls=[dead, url]) as client:
            assert (await client.request("users", timeout=BOUND)).data == ["alice"]


class Room:
    """Records what :func:`docs_src.python_client.follow` applies."""

    def __init__(self) -> None:
        self.applied: list[tuple[Any, int]] = []

    def apply(self, data: Any, *, at: int) -> None:
        self.applied.append((data, at))


async def test_stamped_envelopes_are_applied_in_order() -> None:
    hub = WebSocketHub(history_policy=HistoryPolicy(topics=("chat:*",)))
    async with (
        chat_server(hub) as url,
        python_client.WebSocketClient(url, token_provider=alice()) as client,
    ):
        await client.subscribe("chat:1")
        room = Room()
        follower = asyncio.create_task(python_client.follow(client, {"chat:1": room}))
        for n in range(3):
            await hub.broadcast({"type": "chat.message", "data": n}, topic="chat:1")
        try:
            await until(lambda: len(room.applied) == 3, timeout=BOUND)
        finally:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
    assert [data for data, _ in room.applied] == [0, 1, 2]
    offsets = [at for _, at in room.applied]
    assert offsets == sorted(offsets)
    assert len(set(offsets)) == 3


async def test_the_raw_client_reads_a_plain_websocket_stream() -> None:
    seen: dict[str, Any] = {}

    async def feed(ws: ServerConnection) -> None:
        assert ws.request is not None
        seen["key"] = ws.request.headers.get("X-Api-Key")
        seen["subprotocol"] = ws.subprotocol
        seen["subscribe"] = json.loads(await ws.recv())
        for n in range(2):
            await ws.send(json.dumps({"trade": n}))
        await ws.wait_closed()

    trades: list[Any] = []
    async with websockets_serve(feed, "127.0.0.1", 0, subprotocols=["v2.feed"]) as server:
        port = server.sockets[0].getsockname()[1]
        url = f"ws://127.0.0.1:{port}/v2/feed"
        reader = asyncio.create_task(python_client.read_feed("k-1", trades.append, feed_url=url))
        try:
            await until(lambda: len(trades) == 2, timeout=BOUND)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
    assert trades == [{"trade": 0}, {"trade": 1}]
    assert seen == {
        "key": "k-1",
        "subprotocol": "v2.feed",
        "subscribe": {"op": "subscribe", "channel": "trades"},
    }


# -- realtime.md -------------------------------------------------------------------------


async def test_presence_is_kept_for_rooms_only() -> None:
    settings = make_settings()
    hub = realtime.presence_hub(settings)
    app, _ = build_app(settings, handler=hub_src.order_handler, hub=hub, builtins=True)
    async with serve(app) as base, tab(base, "ann", query="?topics=room:1,chat:1") as ws:
        await expect_envelope(ws, "ack")
        await expect_envelope(ws, "ack")
        answer = await ask(ws, "presence.get", {"topic": "room:1"}, "p-1")
        assert answer.data["users"] == ["ann"]
        await ws.send('{"type":"presence.get","data":{"topic":"chat:1"},"request_id":"p-2"}')
        refused = await expect_envelope(ws, "error")
        assert (refused.request_id, refused.data["code"]) == ("p-2", "presence_disabled")


async def test_the_lifecycle_hooks_run_and_may_refuse() -> None:
    settings = make_settings()
    hub = WebSocketHub.from_settings(settings)
    events: list[str] = []
    app = FastAPI()
    app.include_router(realtime.router_with_hooks(settings, hub, events))
    async with serve(app) as base:
        async with tab(base, "ann"):
            pass
        await until(lambda: len(events) == 3)
        assert events == ["connect ann", "audit ann", "release ann"]
        async with connect(
            ws_url(base),
            subprotocols=["bearer", token("banned")],
            proxy=None,  # type: ignore[list-item]
        ) as ws:
            assert await expect_close(ws, timeout=BOUND) == CloseCode.FORBIDDEN
    assert events[3:] == ["connect banned"]


# -- testing.md --------------------------------------------------------------------------


async def test_the_testing_recipes_read_the_close_and_wait_for_state() -> None:
    app, hub = build_app(make_settings())
    async with serve(app) as base:
        bad = ["bearer", "not-a-token"]
        async with connect(ws_url(base), subprotocols=bad, proxy=None) as ws:  # type: ignore[arg-type]
            await testing_src.expect_unauthorized(ws)
        async with tab(base, "ann"):
            assert hub.stats().connections == 1
        await testing_src.until_no_connections(hub)
    assert hub.stats().connections == 0
