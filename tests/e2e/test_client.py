"""``tempest_ws.client`` against real servers on loopback ports.

The tempest_ws app runs under a real uvicorn server, in-process (``serve``) or, where the
server must die without a close frame, in its own OS process killed by PID. Plain
``websockets`` servers stand in for a hand-written envelope peer and a third-party
service (raw mode). Waits are bounded polls or ``asyncio.timeout`` blocks that only
expire when something is broken; no assertion depends on timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi import FastAPI, WebSocket
from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.exceptions import ConnectionClosed

from tempest_ws import CloseCode, ConfigurationError, ConnectionClosedError, WSEnvelope
from tempest_ws.client import (
    Backoff,
    ClientGaveUpError,
    Disconnect,
    RawWebSocketClient,
    RequestTimeoutError,
    SendQueueFullError,
    UnauthorizedError,
    WebSocketClient,
)
from tempest_ws.testing import serve
from tests.helpers.server_process import ROOT, ServerProcess, build_client_app, free_port
from tests.helpers.support import make_settings, token, ws_url

pytestmark = pytest.mark.e2e

BOUND = 30.0
"""Upper bound of any single wait; reached only when something is broken."""
FAST = Backoff(min_delay=0.02, max_delay=0.2, factor=2.0)


async def until(predicate: Callable[[], bool], what: str, timeout: float = BOUND) -> None:
    """Poll ``predicate`` (bounded by ``timeout``); fail naming ``what``."""
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.01)
    except TimeoutError:
        pytest.fail(f"timed out waiting for {what}")


async def next_of_type(client: WebSocketClient, kind: str) -> WSEnvelope:
    """The next envelope of type ``kind`` (others are skipped), within `BOUND`."""
    async with asyncio.timeout(BOUND):
        async for envelope in client:
            if envelope.type == kind:
                return envelope
    pytest.fail(f"client ended before a {kind!r} envelope")


async def drain(client: WebSocketClient) -> list[WSEnvelope]:
    """Everything the client yields until its iterator ends."""
    return [envelope async for envelope in client]


def client_for(url: str, **kwargs: Any) -> WebSocketClient:
    options: dict[str, Any] = {
        "token": token(),
        "backoff": FAST,
        "long_backoff": FAST,
        "rng": random.Random(4),
        "open_timeout": BOUND,
    }
    options.update(kwargs)
    return WebSocketClient(url, **options)


@dataclass
class AppServer:
    url: str
    received: list[Any] = field(default_factory=list)


@pytest.fixture
async def app_server() -> AsyncIterator[AppServer]:
    settings = make_settings()
    received: list[Any] = []
    app, _ = build_client_app(settings, received=received)
    async with serve(app, settings=settings) as base:
        yield AppServer(ws_url(base), received)


def client_tasks() -> set[asyncio.Task[Any]]:
    return {t for t in asyncio.all_tasks() if t.get_name().startswith("tempest_ws client")}


# -- heartbeats and the iterator ------------------------------------------------------


async def test_answers_pings_with_the_bearer_subprotocol_and_hides_heartbeats() -> None:
    """A hand-written envelope peer: it sees the bearer subprotocol and gets its pong."""
    handshake: list[tuple[str | None, str | None]] = []
    pongs: list[dict[str, Any]] = []

    async def peer(conn: ServerConnection) -> None:
        assert conn.request is not None
        handshake.append((conn.request.headers.get("Sec-WebSocket-Protocol"), conn.subprotocol))
        hello = {"heartbeat_seconds": 30, "heartbeat_timeout_seconds": 60}
        await conn.send(json.dumps({"type": "hello", "data": hello}))
        await conn.send(json.dumps({"type": "ping", "data": {}, "request_id": "srv-1"}))
        async for raw in conn:
            envelope = json.loads(raw)
            if envelope["type"] == "ping":  # the client's latency probe
                pong = {"type": "pong", "data": {}, "request_id": envelope["request_id"]}
                await conn.send(json.dumps(pong))
            elif envelope["type"] == "pong":
                pongs.append(envelope)
                await conn.send(json.dumps({"type": "note", "data": {"after": "pong"}}))

    jwt = token()
    async with ws_serve(peer, "127.0.0.1", 0, subprotocols=["bearer"]) as server:  # type: ignore[list-item]
        port = server.sockets[0].getsockname()[1]
        async with client_for(f"ws://127.0.0.1:{port}/ws", token=jwt) as client:
            first = await asyncio.wait_for(client.receive(), BOUND)
            assert first == WSEnvelope(type="note", data={"after": "pong"})
            assert pongs == [{"type": "pong", "data": {}, "request_id": "srv-1"}]
            await until(lambda: client.latency is not None, "a latency measurement")
            assert client.latency is not None
            assert client.latency >= 0
    assert handshake == [(f"bearer, {jwt}", "bearer")]


async def test_silent_server_is_detected_and_the_client_reconnects() -> None:
    """A server that sends hello with a short cadence and then nothing at all."""
    accepted: list[int] = []
    app = FastAPI()

    @app.websocket("/ws")
    async def silent(ws: WebSocket) -> None:
        await ws.accept(subprotocol="bearer")
        accepted.append(1)
        hello = {"heartbeat_seconds": 0.1, "heartbeat_timeout_seconds": 0.3}
        await ws.send_json({"type": "hello", "data": hello})
        for _ in range(100_000):  # read (and ignore) until the client leaves
            if (await ws.receive())["type"] == "websocket.disconnect":
                return

    disconnects: list[Disconnect] = []
    async with serve(app) as base:
        client = client_for(ws_url(base), on_disconnect=disconnects.append)
        async with client:
            await until(lambda: len(accepted) >= 2, "a second connection")
        assert disconnects[0].code == CloseCode.HEARTBEAT_TIMEOUT
        assert not disconnects[0].by_user


# -- requests, hooks, subscriptions ----------------------------------------------------


async def test_request_reply_correlated_by_request_id(app_server: AppServer) -> None:
    async with client_for(app_server.url) as client:
        reply = await client.request("echo", {"x": 1}, timeout=BOUND)
        assert reply.type == "echo"
        assert reply.data == {"x": 1}
        assert reply.request_id is not None
        # Two replies held back by the server and released in reverse order still reach
        # the request that asked for each; neither is yielded by the iterator.
        first = asyncio.create_task(client.request("hold", {"n": 1}, timeout=BOUND))
        assert (await next_of_type(client, "holding")).data == {"count": 1}
        second = asyncio.create_task(client.request("hold", {"n": 2}, timeout=BOUND))
        assert (await next_of_type(client, "holding")).data == {"count": 2}
        released = await client.request("release", timeout=BOUND)
        assert released.type == "released"
        assert (await first).data == {"n": 1}
        assert (await second).data == {"n": 2}
        # The iterator sees only what nobody asked for.
        await client.send("echo", {"plain": True})
        assert (await next_of_type(client, "echo")).data == {"plain": True}
        with pytest.raises(RequestTimeoutError):
            await client.request("hold", {"never": "answered"}, timeout=0.2)
        await until(lambda: client.latency is not None, "a latency measurement")


async def test_request_fails_fast_when_the_connection_drops(app_server: AppServer) -> None:
    async with client_for(app_server.url) as client:
        pending = asyncio.create_task(client.request("hold", {}, timeout=BOUND))
        await next_of_type(client, "holding")  # the server has the request
        await client.send("close", {"code": CloseCode.SERVICE_RESTART})
        with pytest.raises(ConnectionClosedError, match="SERVICE_RESTART"):
            await pending
        await asyncio.wait_for(client.wait_connected(), BOUND)
        assert (await client.request("echo", {"back": 1}, timeout=BOUND)).data == {"back": 1}


async def test_subscriptions_restored_and_hooks_called(app_server: AppServer) -> None:
    connects: list[int] = []
    disconnects: list[Disconnect] = []
    resyncs: list[WSEnvelope] = []

    async def on_connect() -> None:
        connects.append(1)

    client = client_for(
        app_server.url,
        on_connect=on_connect,
        on_disconnect=disconnects.append,
        on_resync=resyncs.append,
    )
    async with client:
        await client.subscribe("room")
        await client.subscribe("room")  # once only
        assert (await next_of_type(client, "subscribed")).data == {"topic": "room"}
        await client.send("close", {"code": CloseCode.GOING_AWAY})
        # The new connection subscribes again before anything else.
        assert (await next_of_type(client, "subscribed")).data == {"topic": "room"}
        await client.send("publish", {"topic": "room", "payload": {"n": 1}})
        assert (await next_of_type(client, "published")).data == {"n": 1}
        await client.send("resync_me")
        assert (await next_of_type(client, "resync")).data == {"reason": "test"}
        assert [r.type for r in resyncs] == ["resync"]
        await client.unsubscribe("room")
        assert client.subscriptions == frozenset()
    assert len(connects) == 2
    assert [d.code for d in disconnects] == [CloseCode.GOING_AWAY, CloseCode.NORMAL]
    assert disconnects[-1].by_user


async def test_reconnects_after_the_server_process_is_killed_and_restarted() -> None:
    calls: list[int] = []
    disconnects: list[Disconnect] = []

    async def provider() -> str:
        calls.append(1)
        return token()

    async with ServerProcess() as server:
        client = client_for(
            server.ws_url,
            token=None,
            token_provider=provider,
            on_disconnect=disconnects.append,
        )
        async with client:
            await client.subscribe("room")
            await next_of_type(client, "subscribed")
            await server.kill()
            await until(lambda: not client.connected, "the client to notice the kill")
            await client.send("publish", {"topic": "room", "payload": "queued while down"})
            await server.start()  # the same port, a fresh process with no subscriptions
            await asyncio.wait_for(client.wait_connected(), BOUND)
            assert (await next_of_type(client, "subscribed")).data == {"topic": "room"}
            # Restored before the queued publish: the new process delivers it back to us.
            assert (await next_of_type(client, "published")).data == "queued while down"
    assert disconnects[0].code == CloseCode.ABNORMAL
    assert len(calls) >= 2  # the provider is asked again for every connection


async def test_a_url_function_moves_the_client_to_the_next_node() -> None:
    """Two nodes, no load balancer: an async URL function picks a node per attempt."""
    first, second = ServerProcess(), ServerProcess()
    await asyncio.gather(first.start(), second.start())
    nodes = [first, second]
    asked: list[str] = []

    async def url() -> str:
        asked.append(nodes[0].ws_url)  # the first node that is not known to be down
        return asked[-1]

    try:
        async with client_for(url) as client:
            await client.subscribe("room")
            assert client.safe_url == first.ws_url
            await first.kill()
            nodes.pop(0)
            await until(lambda: client.safe_url == second.ws_url, "an attempt on the second node")
            await asyncio.wait_for(client.wait_connected(), BOUND)
            assert client.subscriptions == {"room"}  # resubscribed on the second node
            await client.send("publish", {"topic": "room", "payload": "on node two"})
            assert (await next_of_type(client, "published")).data == "on node two"
        assert asked[0] == first.ws_url
        assert asked[-1] == second.ws_url
    finally:
        await asyncio.gather(first.kill(), second.kill())


async def test_a_url_function_that_raises_is_retried_and_a_bad_url_is_fatal(
    app_server: AppServer,
) -> None:
    answers: list[str | Exception] = [OSError("service discovery down"), app_server.url]

    def url() -> str:
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    async with client_for(url) as client:  # the OSError was retried with backoff
        assert (await client.request("echo", {"n": 1}, timeout=BOUND)).data == {"n": 1}
    assert answers == [app_server.url]
    bad = client_for(lambda: "http://127.0.0.1:1/ws")
    with pytest.raises(ClientGaveUpError) as raised:
        await asyncio.wait_for(bad.connect(), BOUND)
    assert raised.value.disconnect is not None
    assert isinstance(raised.value.disconnect.error, ConfigurationError)
    await bad.close()


async def test_a_wrong_path_says_no_websocket_route_answered(app_server: AppServer) -> None:
    wrong = client_for(app_server.url.replace("/ws", "/not-the-ws-path"))
    with pytest.raises(ClientGaveUpError, match="no WebSocket route answered at this URL"):
        await asyncio.wait_for(wrong.connect(), BOUND)
    await wrong.close()


# -- authentication ----------------------------------------------------------------------


async def test_4401_fetches_a_new_token_then_gives_up(app_server: AppServer) -> None:
    calls: list[int] = []

    async def provider() -> str:
        calls.append(1)
        return "not-a-valid-jwt"

    client = client_for(app_server.url, token=None, token_provider=provider, max_unauthorized=3)
    with pytest.raises(UnauthorizedError, match="3 times in a row") as raised:
        await asyncio.wait_for(client.connect(), BOUND)
    assert len(calls) == 3
    assert raised.value.code == CloseCode.UNAUTHORIZED
    assert raised.value.disconnect is not None
    assert raised.value.disconnect.code == CloseCode.UNAUTHORIZED
    with pytest.raises(UnauthorizedError):  # the iterator reports it too
        await client.receive()
    with pytest.raises(UnauthorizedError):
        await client.send("echo")
    await client.close()
    assert not client_tasks()


@pytest.mark.parametrize("auth", ["subprotocol", "header", "query"])
async def test_a_refreshed_token_is_used_after_4401(
    app_server: AppServer, auth: str, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("tempest_ws", "websockets.client"):
        caplog.set_level(logging.DEBUG, logger=name)
    tokens = ["expired-or-garbage", token(), token()]
    handed: list[str] = []

    async def provider() -> str:
        handed.append(tokens[min(len(handed), len(tokens) - 1)])
        return handed[-1]

    async with client_for(app_server.url, token=None, token_provider=provider, auth=auth) as c:
        assert (await c.request("echo", {"ok": True}, timeout=BOUND)).data == {"ok": True}
    assert handed[:2] == tokens[:2]
    client_records = [r for r in caplog.records if not r.name.startswith("uvicorn")]
    assert client_records  # the client did log its connects and the 4401
    assert all(tokens[1] not in r.getMessage() for r in client_records)


# -- offline queue -------------------------------------------------------------------------


async def test_offline_queue_drops_the_oldest_and_flushes_in_order(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = make_settings()
    received: list[Any] = []
    app, _ = build_client_app(settings, received=received)
    port = free_port()  # nothing listens yet: every attempt is refused
    client = client_for(f"ws://127.0.0.1:{port}/ws", queue_size=3)
    await client.connect(wait=False)
    with caplog.at_level(logging.WARNING, logger="tempest_ws.client"):
        for n in range(5):
            await client.send("note", {"n": n})
    dropped = [r for r in caplog.records if "dropped the oldest" in r.getMessage()]
    assert len(dropped) == 2
    assert all("note" not in r.getMessage() for r in dropped)  # no message bodies in logs
    async with serve(app, settings=settings, port=port):
        await asyncio.wait_for(client.wait_connected(), BOUND)
        await client.send("note", {"n": "live"})
        await until(lambda: len(received) == 4, "the flushed and the live notes")
        await client.close()
    assert received == [{"n": 2}, {"n": 3}, {"n": 4}, {"n": "live"}]


async def test_offline_queue_raise_mode() -> None:
    settings = make_settings()
    received: list[Any] = []
    app, _ = build_client_app(settings, received=received)
    port = free_port()
    client = client_for(f"ws://127.0.0.1:{port}/ws", queue_size=2, queue_overflow="raise")
    await client.send("note", {"n": 0})  # queued before the client even started
    await client.connect(wait=False)
    await client.send("note", {"n": 1})
    with pytest.raises(SendQueueFullError):
        await client.send("note", {"n": 2})
    async with serve(app, settings=settings, port=port):
        await asyncio.wait_for(client.wait_connected(), BOUND)
        await until(lambda: len(received) == 2, "the queued notes")
        await client.close()
    assert received == [{"n": 0}, {"n": 1}]


# -- policy and lifecycle ------------------------------------------------------------------


async def test_fatal_close_code_stops_unless_the_hook_says_otherwise(
    app_server: AppServer,
) -> None:
    client = client_for(app_server.url)
    await client.connect()
    await client.send("close", {"code": CloseCode.FORBIDDEN})
    with pytest.raises(ClientGaveUpError, match="FORBIDDEN"):
        await asyncio.wait_for(drain(client), BOUND)
    await client.close()

    disconnects: list[Disconnect] = []
    lenient = client_for(
        app_server.url, is_fatal=lambda disconnect: False, on_disconnect=disconnects.append
    )
    async with lenient:
        await lenient.send("close", {"code": CloseCode.FORBIDDEN})
        await until(lambda: len(disconnects) == 1, "the 4403 close")
        assert disconnects[0].code == CloseCode.FORBIDDEN
        assert (await lenient.request("echo", {"again": 1}, timeout=BOUND)).data == {"again": 1}


async def test_close_is_clean_and_final(app_server: AppServer) -> None:
    disconnects: list[Disconnect] = []
    client = client_for(app_server.url, on_disconnect=disconnects.append)
    async with client:
        await client.send("echo", {"last": True})
        assert (await next_of_type(client, "echo")).data == {"last": True}
        assert client_tasks()
    assert not client_tasks()
    assert [d.by_user for d in disconnects] == [True]
    assert [envelope async for envelope in client] == []
    with pytest.raises(ConnectionClosedError):
        await client.send("echo")
    with pytest.raises(ConnectionClosedError):
        await client.connect()
    await client.close()  # idempotent


async def test_configuration_errors() -> None:
    with pytest.raises(ConfigurationError):
        WebSocketClient("ws://127.0.0.1:1/ws", token="a", token_provider=lambda: None)  # type: ignore[arg-type,return-value]
    with pytest.raises(ConfigurationError):
        WebSocketClient("http://127.0.0.1:1/ws")
    with pytest.raises(ConfigurationError):
        WebSocketClient("ws://127.0.0.1:1/ws", auth="cookie")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="queue_sise"):
        WebSocketClient("ws://127.0.0.1:1/ws", queue_sise=3)  # type: ignore[call-arg]
    with pytest.raises(ConfigurationError, match="open_timeout"):
        WebSocketClient("ws://127.0.0.1:1/ws", open_timeout=0)
    client = client_for("ws://127.0.0.1:1/ws", token="has spaces, not a token")
    with pytest.raises(ClientGaveUpError, match="ConfigurationError"):
        await asyncio.wait_for(client.connect(), BOUND)
    await client.close()


# -- raw mode -------------------------------------------------------------------------------


async def test_raw_mode_against_a_plain_websockets_server() -> None:
    handshakes: list[tuple[str | None, str | None]] = []

    async def service(conn: ServerConnection) -> None:
        assert conn.request is not None
        handshakes.append((conn.request.headers.get("X-Api-Key"), conn.subprotocol))
        with contextlib.suppress(ConnectionClosed):
            async for message in conn:
                if message == "restart":
                    await conn.close(CloseCode.SERVICE_RESTART)
                elif message == "big":
                    await conn.send("x" * 4096)
                else:
                    await conn.send(message)  # text stays text, bytes stay bytes

    disconnects: list[Disconnect] = []
    async with ws_serve(service, "127.0.0.1", 0, subprotocols=["v2.example"]) as server:  # type: ignore[list-item]
        port = server.sockets[0].getsockname()[1]
        client = RawWebSocketClient(
            f"ws://127.0.0.1:{port}/feed",
            headers={"X-Api-Key": "k-1"},
            subprotocols=["v2.example"],
            max_size=1024,
            backoff=FAST,
            rng=random.Random(1),
            on_disconnect=disconnects.append,
        )
        async with client:
            await client.send("plain text, not JSON")
            assert await asyncio.wait_for(client.receive(), BOUND) == "plain text, not JSON"
            await client.send(b"\x00\x01binary")
            assert await asyncio.wait_for(client.receive(), BOUND) == b"\x00\x01binary"
            await client.send("restart")
            await until(lambda: len(handshakes) == 2, "the reconnect after 1012")
            await client.send("big")  # over max_size: the client closes 1009, then returns
            await until(lambda: len(handshakes) == 3, "the reconnect after 1009")
            await client.send("still here")
            assert await asyncio.wait_for(client.receive(), BOUND) == "still here"
    assert handshakes == [("k-1", "v2.example")] * 3
    assert [d.code for d in disconnects] == [
        CloseCode.SERVICE_RESTART,
        CloseCode.MESSAGE_TOO_BIG,
        CloseCode.NORMAL,
    ]


# -- the documented example and the import promise ----------------------------------------


async def test_documented_example_against_the_chat_demo() -> None:
    from examples import python_client
    from examples.chat.app import create_app

    settings = make_settings()
    async with serve(create_app(settings), settings=settings) as base:
        async with python_client.build_client(base, "example") as client:
            messages = await asyncio.wait_for(python_client.chat(client, "lobby", "hi"), BOUND)
            assert client.subscriptions == {"room:lobby"}
        assert [(m.data["from"], m.data["text"]) for m in messages] == [("example", "hi")]
        await asyncio.wait_for(python_client.main(["--url", base, "--count", "1"]), BOUND)
    assert not client_tasks()


def test_importing_tempest_ws_does_not_import_websockets() -> None:
    code = "import sys, tempest_ws; assert 'websockets' not in sys.modules, 'imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=BOUND)


async def test_example_refreshing_token_reuses_and_forgets() -> None:
    from examples.python_client import RefreshingToken

    now = [0.0]
    fetched: list[str] = []

    async def fetch() -> tuple[str, float]:
        fetched.append(f"t{len(fetched)}")
        return fetched[-1], 100.0

    provider = RefreshingToken(fetch, margin=10.0, clock=lambda: now[0])
    assert [await provider(), await provider()] == ["t0", "t0"]  # reused across reconnects
    provider.forget(Disconnect(code=CloseCode.ABNORMAL))
    assert await provider() == "t0"  # only a refusal drops it
    provider.forget(Disconnect(code=CloseCode.UNAUTHORIZED))
    assert await provider() == "t1"
    now[0] = 95.0  # within the margin of its expiry
    assert await provider() == "t2"


async def test_token_expiring_mid_connection_is_replaced_by_a_reconnect(
    app_server: AppServer,
) -> None:
    """Without in-band refresh (``refresh_margin=None``) the server closes 4401 when the
    token's ``exp`` passes; the provider gives a new one for the reconnect."""
    handed: list[str] = []
    disconnects: list[Disconnect] = []

    async def provider() -> str:
        handed.append(token(expires_in=3 if not handed else 300))  # exp: whole seconds
        return handed[-1]

    client = client_for(
        app_server.url,
        token=None,
        token_provider=provider,
        refresh_margin=None,
        on_disconnect=disconnects.append,
    )
    async with client:
        await until(lambda: len(disconnects) == 1, "the close at the token's expiry")
        assert disconnects[0].code == CloseCode.UNAUTHORIZED
        assert disconnects[0].established
        await asyncio.wait_for(client.wait_connected(), BOUND)
        assert (await client.request("echo", {"still": "here"}, timeout=BOUND)).data == {
            "still": "here"
        }
    assert len(handed) == 2
