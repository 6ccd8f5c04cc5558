"""The connection path over a real uvicorn server and a real ``websockets`` client.

Every close code the router sends is proven here on a real socket, because Starlette's
TestClient hides handshake behaviour (subprotocol echo, HTTP 403, close before accept).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, WebSocket
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tempest_ws import CloseCode, WebSocketConnection, WebSocketHub, WebSocketSettings
from tempest_ws.testing import serve
from tests.helpers.support import build_app, make_settings, stalled_socket, token, until, ws_url

pytestmark = pytest.mark.e2e


async def frames_until_close(ws: ClientConnection, limit: int = 1000) -> tuple[list[Any], int]:
    """Read envelopes until the server closes; return them and the close code."""
    seen: list[Any] = []
    try:
        async with asyncio.timeout(20):
            for _ in range(limit):
                seen.append(json.loads(await ws.recv()))
    except ConnectionClosed as closed:
        if closed.rcvd is None:
            raise AssertionError("closed without a close frame") from closed
        return seen, closed.rcvd.code
    raise AssertionError(f"not closed after {limit} frames")


async def next_of_type(ws: ClientConnection, kind: str) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while True:
            envelope: dict[str, Any] = json.loads(await ws.recv())
            if envelope["type"] == kind:
                return envelope


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, WebSocketHub, WebSocketSettings]]:
    settings = make_settings()
    app, hub = build_app(settings)
    async with serve(app, settings=settings) as base:
        yield ws_url(base), hub, settings
    assert hub.stats().connections == 0


async def test_bearer_subprotocol_is_echoed_and_hello_comes_first(server: Any) -> None:
    url, _hub, settings = server
    async with connect(url, subprotocols=["bearer", token("alice")]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "bearer"
        hello = json.loads(await ws.recv())
        assert hello["type"] == "hello"
        assert hello["data"]["heartbeat_seconds"] == settings.WS_HEARTBEAT_SECONDS
        assert hello["data"]["heartbeat_timeout_seconds"] == settings.WS_HEARTBEAT_TIMEOUT_SECONDS
        await ws.send(json.dumps({"type": "whoami"}))
        whoami = await next_of_type(ws, "whoami")
        assert whoami["data"]["user"] == "alice"
        assert whoami["data"]["id"] == hello["data"]["connection_id"]
        assert token("alice") not in ws.response.headers.get("sec-websocket-protocol", "")


async def test_authorization_header_and_query_token(server: Any) -> None:
    url, _, _ = server
    async with connect(url, additional_headers={"Authorization": f"Bearer {token('h')}"}) as ws:
        assert ws.subprotocol is None
        assert json.loads(await ws.recv())["type"] == "hello"
    async with connect(f"{url}?token={token('q')}") as ws:
        assert json.loads(await ws.recv())["type"] == "hello"


async def test_query_token_refused_when_disabled() -> None:
    settings = make_settings(WS_ALLOW_QUERY_TOKEN=False)
    app, _ = build_app(settings)
    async with (
        serve(app, settings=settings) as base,
        connect(f"{ws_url(base)}?token={token()}") as ws,
    ):
        frames, code = await frames_until_close(ws)
    assert code == CloseCode.UNAUTHORIZED
    assert frames == []


def _forged_tokens() -> list[str]:
    import base64
    import time

    import jwt

    def b64(part: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(part).encode()).decode().rstrip("=")

    exp = int(time.time()) + 60
    return [
        "garbage",
        jwt.encode({"sub": "a", "exp": exp}, "k" * 40, algorithm="HS256"),  # wrong key
        token("a", expires_in=-60),  # expired
        f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64({'sub': 'a', 'exp': exp})}.",
    ]


@pytest.mark.parametrize(
    "bad", [None, *_forged_tokens()], ids=["missing", "garbage", "wrong-key", "expired", "alg-none"]
)
async def test_bad_tokens_close_4401_after_accept(server: Any, bad: str | None) -> None:
    url, hub, _ = server
    subprotocols = ["bearer", bad] if bad else ["bearer"]
    async with connect(url, subprotocols=subprotocols) as ws:  # type: ignore[arg-type]
        assert ws.subprotocol == "bearer"
        frames, code = await frames_until_close(ws)
    assert code == CloseCode.UNAUTHORIZED
    assert frames == []
    assert hub.stats().connections == 0


async def test_resolver_exception_closes_4401(caplog: pytest.LogCaptureFixture) -> None:
    async def broken_resolver(token: str) -> str | None:
        raise RuntimeError("database down")

    from tempest_ws import make_websocket_router
    from tests.helpers.support import echo_handler

    settings = make_settings()
    hub = WebSocketHub.from_settings(settings)
    app = FastAPI()
    app.include_router(
        make_websocket_router(
            echo_handler, hub=hub, bearer_resolver=broken_resolver, settings=settings
        )
    )
    async with (
        serve(app, settings=settings) as base,
        connect(ws_url(base), subprotocols=["bearer", "t"]) as ws,
    ):  # type: ignore[list-item]
        _, code = await frames_until_close(ws)
    assert code == CloseCode.UNAUTHORIZED
    assert "bearer resolver raised" in caplog.text


@pytest.mark.parametrize(
    "origin",
    [
        "https://example.com.evil.net",
        "https://evilexample.com",
        "http://example.com",
        "https://example.com:8443",
        "null",
    ],
)
async def test_origin_bypass_attempts_get_http_403(
    origin: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(WS_ALLOWED_ORIGINS="https://example.com,https://*.example.com")
    app, _ = build_app(settings)
    async with serve(app, settings=settings) as base:
        async with connect(
            ws_url(base), origin="https://app.example.com", subprotocols=["bearer", token()]
        ) as ws:  # type: ignore[arg-type, list-item]
            assert json.loads(await ws.recv())["type"] == "hello"
        with pytest.raises(InvalidStatus) as info:
            async with connect(ws_url(base), origin=origin, subprotocols=["bearer", token()]):  # type: ignore[arg-type, list-item]
                pass
    assert info.value.response.status_code == 403
    assert "not allowed" in caplog.text


async def test_heartbeat_timeout_closes_4408_and_pongs_keep_it_open() -> None:
    settings = make_settings(WS_HEARTBEAT_SECONDS=0.1, WS_HEARTBEAT_TIMEOUT_SECONDS=0.4)
    app, hub = build_app(settings)
    async with serve(app, settings=settings) as base:
        url = ws_url(base)
        async with connect(url, subprotocols=["bearer", token("live")]) as alive:  # type: ignore[list-item]
            pings = 0

            async def answer_pings() -> None:
                nonlocal pings
                while True:
                    envelope = json.loads(await alive.recv())
                    if envelope["type"] == "ping":
                        pings += 1
                        await alive.send(json.dumps({"type": "pong", "data": {}}))

            answering = asyncio.create_task(answer_pings())
            async with connect(url, subprotocols=["bearer", token("silent")]) as silent:  # type: ignore[list-item]
                frames, code = await frames_until_close(silent)
            assert code == CloseCode.HEARTBEAT_TIMEOUT
            assert [f["type"] for f in frames][:2] == ["hello", "ping"]
            await until(lambda: pings >= 8, timeout=20)  # twice the timeout, answered
            answering.cancel()
            assert await hub.online_users() == {"live"}


async def test_push_only_handler_stays_alive_on_pongs() -> None:
    """Reading belongs to the router: a handler that never reads still sees the pongs."""

    async def push_only(ws: WebSocket, connection: WebSocketConnection, hub: WebSocketHub) -> None:
        await asyncio.Event().wait()

    settings = make_settings(WS_HEARTBEAT_SECONDS=0.1, WS_HEARTBEAT_TIMEOUT_SECONDS=0.3)
    app, hub = build_app(settings, handler=push_only)
    async with serve(app, settings=settings) as base:
        async with connect(ws_url(base), subprotocols=["bearer", token()]) as ws:  # type: ignore[list-item]
            for _ in range(6):
                await next_of_type(ws, "ping")
                await ws.send(json.dumps({"type": "pong", "data": {}}))
            assert hub.stats().connections == 1
        await until(lambda: hub.stats().connections == 0)


async def test_per_user_cap_evicts_oldest_with_4429() -> None:
    settings = make_settings(WS_MAX_CONNECTIONS_PER_USER=2)
    app, hub = build_app(settings)
    async with serve(app, settings=settings) as base:
        url = ws_url(base)
        tabs = []
        for _ in range(3):
            ws = await connect(url, subprotocols=["bearer", token("alice")])  # type: ignore[list-item]
            await next_of_type(ws, "hello")
            tabs.append(ws)
        _, code = await frames_until_close(tabs[0])
        assert code == CloseCode.TOO_MANY_CONNECTIONS
        assert len(hub.connections_of("alice")) == 2
        for ws in tabs[1:]:
            await ws.close()


async def test_global_cap_closes_newcomer_1013() -> None:
    settings = make_settings(WS_MAX_CONNECTIONS=1)
    app, _ = build_app(settings)
    async with serve(app, settings=settings) as base:
        url = ws_url(base)
        async with connect(url, subprotocols=["bearer", token("a")]) as first:  # type: ignore[list-item]
            await next_of_type(first, "hello")
            async with connect(url, subprotocols=["bearer", token("b")]) as second:  # type: ignore[list-item]
                frames, code = await frames_until_close(second)
            assert code == CloseCode.TRY_AGAIN_LATER
            assert frames == []


@pytest.mark.parametrize("server_limit", [False, True], ids=["router-guard", "uvicorn-ws-max-size"])
@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
async def test_oversized_frames_close_1009(server_limit: bool, binary: bool) -> None:
    settings = make_settings(WS_MAX_MESSAGE_BYTES=1024, WS_ACCEPT_BINARY=True)
    app, hub = build_app(settings)
    async with serve(app, settings=settings if server_limit else None) as base:
        async with connect(ws_url(base), subprotocols=["bearer", token()]) as ws:  # type: ignore[list-item]
            await next_of_type(ws, "hello")
            payload = '{"type":"echo","data":"' + "x" * 2000 + '"}'
            await ws.send(payload.encode() if binary else payload)
            frames, code = await frames_until_close(ws)
        assert code == CloseCode.MESSAGE_TOO_BIG
        assert all(f["type"] != "echo" for f in frames)
        await until(lambda: hub.stats().connections == 0)


async def test_handler_exception_closes_1011_and_is_logged(
    server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    url, _hub, _ = server
    async with connect(url, subprotocols=["bearer", token()]) as ws:  # type: ignore[list-item]
        hello = await next_of_type(ws, "hello")
        await ws.send(json.dumps({"type": "fail"}))
        _, code = await frames_until_close(ws)
    assert code == CloseCode.INTERNAL_ERROR
    record = next(r for r in caplog.records if "handler failed" in r.getMessage())
    assert hello["data"]["connection_id"] in record.getMessage()
    assert record.exc_info is not None


async def test_malformed_frames_get_error_envelopes_then_1008(
    server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    url, _, _ = server
    async with connect(url, subprotocols=["bearer", token()]) as ws:  # type: ignore[list-item]
        await next_of_type(ws, "hello")
        await ws.send("not json")
        assert (await next_of_type(ws, "error"))["data"]["code"] == "invalid_json"
        await ws.send(b"\x00\x01")
        assert (await next_of_type(ws, "error"))["data"]["code"] == "binary_not_supported"
        await ws.send(json.dumps({"data": {}}))
        assert (await next_of_type(ws, "error"))["data"]["code"] == "invalid_envelope"
        await ws.send(json.dumps({"type": "echo", "data": "still served"}))
        assert (await next_of_type(ws, "echo"))["data"] == "still served"
        for _ in range(7):
            await ws.send("{")
        _, code = await frames_until_close(ws)
    assert code == CloseCode.POLICY_VIOLATION
    assert "invalid frame" in caplog.text


async def test_pong_never_reaches_the_handler_and_client_pings_are_answered(server: Any) -> None:
    url, _, _ = server
    async with connect(url, subprotocols=["bearer", token()]) as ws:  # type: ignore[list-item]
        await next_of_type(ws, "hello")
        await ws.send(json.dumps({"type": "pong", "data": {}}))
        await ws.send(json.dumps({"type": "ping", "data": {}, "request_id": "r-7"}))
        pong = await next_of_type(ws, "pong")
        assert pong["request_id"] == "r-7"
        # The echo handler raises KeyError on unknown types it is handed: none arrived.
        await ws.send(json.dumps({"type": "echo", "data": 1}))
        assert (await next_of_type(ws, "echo"))["data"] == 1


async def test_handler_close_code_reaches_the_client(server: Any) -> None:
    url, hub, _ = server
    async with connect(url, subprotocols=["bearer", token()]) as ws:  # type: ignore[list-item]
        await next_of_type(ws, "hello")
        await ws.send(json.dumps({"type": "close", "data": {"code": 4000}}))
        _, code = await frames_until_close(ws)
    assert code == 4000
    await until(lambda: hub.stats().connections == 0)


async def test_topics_exclude_multi_tab_and_http_pushes() -> None:
    settings = make_settings()
    app, hub = build_app(settings)

    @app.post("/push/{user}")
    async def push(user: str) -> dict[str, int]:
        return {"sent": await hub.send_to(user, {"type": "notice", "data": user})}

    async with serve(app, settings=settings) as base:
        url = ws_url(base)
        alice1 = await connect(url, subprotocols=["bearer", token("alice")])  # type: ignore[list-item]
        alice2 = await connect(url, subprotocols=["bearer", token("alice")])  # type: ignore[list-item]
        bob = await connect(url, subprotocols=["bearer", token("bob")])  # type: ignore[list-item]
        for ws in (alice1, alice2, bob):
            await next_of_type(ws, "hello")
        for ws in (alice1, bob):
            await ws.send(json.dumps({"type": "subscribe", "data": {"topic": "room"}}))
            await next_of_type(ws, "subscribed")
        await bob.send(
            json.dumps(
                {
                    "type": "publish",
                    "data": {"topic": "room", "payload": "p1", "exclude_self": True},
                }
            )
        )
        assert (await next_of_type(alice1, "published"))["data"] == "p1"
        async with httpx.AsyncClient(base_url=base) as http:
            assert (await http.post("/push/alice")).json() == {"sent": 2}
        for ws in (alice1, alice2):
            assert (await next_of_type(ws, "notice"))["data"] == "alice"
        # bob excluded himself from p1 and was not pushed to: his next frame is his own echo.
        await bob.send(json.dumps({"type": "echo", "data": "bob-next"}))
        assert json.loads(await bob.recv())["data"] == "bob-next"
        # alice2 never subscribed: the topic message never reached her.
        await alice2.send(json.dumps({"type": "echo", "data": "a2-next"}))
        assert json.loads(await alice2.recv())["data"] == "a2-next"
        for ws in (alice1, alice2, bob):
            await ws.close()
        await until(lambda: hub.stats().connections == 0)


async def test_client_drop_cleans_up_everything(server: Any) -> None:
    url, hub, _ = server
    for _ in range(20):
        ws = await connect(url, subprotocols=["bearer", token()])  # type: ignore[list-item]
        await next_of_type(ws, "hello")
        await ws.send(json.dumps({"type": "subscribe", "data": {"topic": "t"}}))
        await next_of_type(ws, "subscribed")
        ws.transport.abort()  # no close frame: like a tab killed mid-flight
    await until(lambda: hub.stats().connections == 0)
    assert hub.stats().topics == 0
    tasks = [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("tempest_ws")]
    assert tasks == []


async def test_query_tokens_never_reach_uvicorn_logs() -> None:
    settings = make_settings()
    app, _ = build_app(settings)
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    secret_token = token("logged")
    async with serve(app, settings=settings, log_level="info") as base:
        handler = Collect()
        for name in ("uvicorn.error", "uvicorn.access"):
            logging.getLogger(name).addHandler(handler)
        try:
            async with connect(f"{ws_url(base)}?token={secret_token}") as ws:
                await next_of_type(ws, "hello")
        finally:
            for name in ("uvicorn.error", "uvicorn.access"):
                logging.getLogger(name).removeHandler(handler)
    joined = "\n".join(lines)
    assert "token=[redacted]" in joined
    assert secret_token not in joined


async def test_stalled_reader_never_delays_a_healthy_client() -> None:
    """A raw socket that completes the handshake and never reads again."""

    settings = make_settings(WS_SEND_QUEUE_SIZE=64, WS_CLOSE_TIMEOUT_SECONDS=0.5)
    app, hub = build_app(settings)
    rounds, payload = 3000, "x" * 3000
    async with serve(app, settings=settings) as base:
        raw = await stalled_socket(base, "stalled")
        await until(lambda: len(hub.connections_of("stalled")) == 1)
        stalled = hub.connections_of("stalled")[0]

        async with connect(
            ws_url(base), subprotocols=["bearer", token("healthy")], max_size=None
        ) as healthy:  # type: ignore[list-item]
            await next_of_type(healthy, "hello")
            got: list[int] = []

            async def read() -> None:
                while len(got) < rounds:
                    envelope = json.loads(await healthy.recv())
                    if envelope["type"] == "tick":
                        got.append(envelope["data"]["i"])

            reader = asyncio.create_task(read())
            for i in range(rounds):
                await hub.broadcast({"type": "tick", "data": {"i": i, "pad": payload}})
                if i % 32 == 31:
                    await until(lambda floor=i - 32: len(got) > floor, timeout=20)
            await asyncio.wait_for(reader, 30)
            assert got == list(range(rounds))
            await stalled.wait_closed()
            assert stalled.close_code == CloseCode.TRY_AGAIN_LATER
            assert hub.stats().slow_consumers_closed == 1
            assert hub.stats().connections == 1
        raw.close()
        await until(lambda: hub.stats().connections == 0)


async def test_server_shutdown_closes_sockets_and_empties_the_hub() -> None:
    settings = make_settings()
    app, hub = build_app(settings)
    async with serve(app, settings=settings) as base:
        ws = await connect(ws_url(base), subprotocols=["bearer", token()])  # type: ignore[list-item]
        await next_of_type(ws, "hello")
    # Leaving serve() shut uvicorn down and ran the router's lifespan (hub.stop()).
    _, code = await frames_until_close(ws)
    assert code in (CloseCode.SERVICE_RESTART, CloseCode.GOING_AWAY)
    assert hub.stats().connections == 0


async def test_size_limit_counts_utf8_bytes_not_characters() -> None:
    settings = make_settings(WS_MAX_MESSAGE_BYTES=1024)
    app, _ = build_app(settings)
    # No uvicorn ws_max_size here: the router's own guard decides.
    async with (
        serve(app) as base,
        connect(ws_url(base), subprotocols=["bearer", token()]) as ws,  # type: ignore[list-item]
    ):
        await next_of_type(ws, "hello")
        # 600 characters, 1,200 bytes of UTF-8: over the limit.
        await ws.send(json.dumps({"type": "echo", "data": "é" * 600}, ensure_ascii=False))
        frames, code = await frames_until_close(ws)
    assert code == CloseCode.MESSAGE_TOO_BIG
    assert all(f["type"] != "echo" for f in frames)


async def test_push_only_handler_ends_quietly_when_the_client_leaves(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sending = asyncio.Event()

    async def pusher(ws: WebSocket, connection: WebSocketConnection, hub: WebSocketHub) -> None:
        for i in range(100_000):
            await connection.send({"type": "tick", "data": i})
            sending.set()
            await asyncio.sleep(0.001)

    settings = make_settings()
    app, hub = build_app(settings, handler=pusher)
    async with serve(app, settings=settings) as base:
        async with connect(ws_url(base), subprotocols=["bearer", token()]) as ws:  # type: ignore[list-item]
            await next_of_type(ws, "tick")
        await until(lambda: hub.stats().connections == 0)
    assert sending.is_set()
    assert "handler failed" not in caplog.text


async def test_error_envelope_answers_the_request_that_caused_it(server: Any) -> None:
    url, _, _ = server
    async with connect(url, subprotocols=["bearer", token()]) as ws:  # type: ignore[list-item]
        await next_of_type(ws, "hello")
        await ws.send(json.dumps({"type": "t" * 300, "request_id": "req-9"}))
        error = await next_of_type(ws, "error")
    assert error["request_id"] == "req-9"
    assert error["data"]["code"] == "invalid_envelope"
