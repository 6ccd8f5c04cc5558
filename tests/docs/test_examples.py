"""The documented examples, imported and driven over a real socket.

Every example under ``examples/`` runs here under a real uvicorn server on a free
loopback port (`tempest_ws.testing.serve()`) and is driven with the ``websockets``
client, asserting what the docs promise about it. Sections between ``--8<--`` markers
are included verbatim in ``docs/testing.md``.

No assertion depends on timing: waits are bounded (``asyncio.timeout``) only so that a
regression fails instead of hanging, and "did not receive X" is proven with a later
frame, because per-connection order is publish order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from uuid import uuid4

from websockets.exceptions import InvalidStatus

from examples import custom_resolver
from tempest_ws import CloseCode
from tempest_ws.envelope import PING_FRAME
from tests.helpers.quickstart import quickstart_loader
from tests.helpers.support import make_settings, token, until, ws_url
from tests.helpers.ws_client import BOUND, bearer, close_code, recv, refused_with, send

# isort: split
# --8<-- [start:imports]
import json
import warnings

import httpx
import pytest
from websockets.asyncio.client import connect

from examples import http_push
from tempest_ws import WebSocketSettings
from tempest_ws.testing import make_token, serve
from tests.helpers.support import SECRET  # a test secret of at least 32 bytes

# --8<-- [end:imports]

pytestmark = pytest.mark.e2e

# -- examples/minimal.py: the seed's minimum setup ------------------------------------


@pytest.fixture
def load_minimal(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Iterator[Callable[..., Any]]:
    """``load_minimal(WS_X=value)`` imports ``examples.minimal`` with that environment."""
    yield from quickstart_loader(monkeypatch, tmp_path)


async def test_minimal_setup_runs_the_seed_recipe(load_minimal: Callable[..., Any]) -> None:
    minimal = load_minimal(WS_HEARTBEAT_SECONDS=20, WS_HEARTBEAT_TIMEOUT_SECONDS=50)
    alice, bob, carol = uuid4(), uuid4(), uuid4()
    async with serve(minimal.app, settings=minimal.ws_settings) as base:
        url = ws_url(base)
        async with (
            connect(url, subprotocols=bearer(alice)) as a,
            connect(url, subprotocols=bearer(bob)) as b,
            connect(url, subprotocols=bearer(carol)) as c,
        ):
            assert a.subprotocol == "bearer"  # echoed, never the token
            hello = await recv(a)
            assert hello["type"] == "hello"
            assert hello["request_id"] is None
            assert hello["data"] == {
                "connection_id": hello["data"]["connection_id"],
                "heartbeat_seconds": 20.0,
                "heartbeat_timeout_seconds": 50.0,
                "max_message_bytes": 65536,
            }
            await recv(b)
            await recv(c)
            minimal.room_members["elsewhere"] = {carol}  # room:lobby is open to everyone
            # Each client subscribes, then sees its own message: its subscription is live.
            for ws, room in ((b, "lobby"), (a, "lobby"), (c, "elsewhere")):
                await send(ws, "subscribe", {"topic": f"room:{room}"})
                await send(ws, "chat.message", {"room": room, "text": "ready"})
                assert (await recv(ws))["type"] == "chat.message"
            assert (await recv(b))["data"]["from"] == str(alice)  # alice's "ready"

            await send(a, "chat.message", {"room": "lobby", "text": "hi"})
            expected = {
                "type": "chat.message",
                "data": {"from": str(alice), "text": "hi"},
                "request_id": None,
            }
            assert await recv(a) == expected
            assert await recv(b) == expected
            # carol is not in the lobby: the next frame she gets is her own room's.
            await send(c, "chat.message", {"room": "elsewhere", "text": "solo"})
            assert (await recv(c))["data"] == {"from": str(carol), "text": "solo"}


async def test_minimal_accepts_the_three_token_carriers(load_minimal: Callable[..., Any]) -> None:
    minimal = load_minimal()
    user = uuid4()
    async with serve(minimal.app, settings=minimal.ws_settings) as base:
        url = ws_url(base)
        carriers: list[tuple[str, dict[str, Any]]] = [
            (url, {"subprotocols": bearer(user)}),
            (url, {"additional_headers": {"Authorization": f"Bearer {token(str(user))}"}}),
            (f"{url}?token={token(str(user))}", {}),
        ]
        for target, kwargs in carriers:
            async with connect(target, **kwargs) as ws:
                assert (await recv(ws))["type"] == "hello"
        await until(lambda: minimal.hub.stats().connections == 0)


async def test_minimal_query_token_can_be_turned_off(load_minimal: Callable[..., Any]) -> None:
    minimal = load_minimal(WS_ALLOW_QUERY_TOKEN="false")
    user = uuid4()
    async with serve(minimal.app, settings=minimal.ws_settings) as base:
        url = ws_url(base)
        assert await refused_with(f"{url}?token={token(str(user))}") == CloseCode.UNAUTHORIZED
        async with connect(url, subprotocols=bearer(user)) as ws:
            assert (await recv(ws))["type"] == "hello"


@pytest.mark.parametrize(
    "subprotocols",
    [
        pytest.param(None, id="no-token"),
        pytest.param(["bearer", "garbage"], id="garbage"),
        pytest.param(
            ["bearer", make_token(str(uuid4()), secret="another-secret-0123456789abcdef-0123")],
            id="wrong-key",
        ),
        pytest.param(bearer(uuid4(), expires_in=-60), id="expired"),
        pytest.param(bearer("not-a-uuid"), id="subject-not-a-uuid"),
    ],
)
async def test_minimal_refuses_bad_tokens_with_4401(
    load_minimal: Callable[..., Any], subprotocols: list[Any] | None
) -> None:
    minimal = load_minimal()
    async with serve(minimal.app, settings=minimal.ws_settings) as base:
        code = await refused_with(ws_url(base), subprotocols=subprotocols)
    assert code == CloseCode.UNAUTHORIZED


async def test_minimal_per_user_cap_comes_from_settings(load_minimal: Callable[..., Any]) -> None:
    minimal = load_minimal(WS_MAX_CONNECTIONS_PER_USER=1)
    assert minimal.hub.max_per_user == 1
    user = uuid4()
    async with serve(minimal.app, settings=minimal.ws_settings) as base:
        url = ws_url(base)
        async with connect(url, subprotocols=bearer(user)) as first:
            await recv(first)
            async with connect(url, subprotocols=bearer(user)) as second:
                assert (await recv(second))["type"] == "hello"
                assert await close_code(first) == CloseCode.TOO_MANY_CONNECTIONS
                assert minimal.hub.stats().connections == 1


async def test_minimal_inbound_guard(load_minimal: Callable[..., Any]) -> None:
    minimal = load_minimal(WS_MAX_MESSAGE_BYTES=1024)
    user = uuid4()
    async with serve(minimal.app, settings=minimal.ws_settings) as base:
        url = ws_url(base)
        async with connect(url, subprotocols=bearer(user)) as ws:
            await recv(ws)
            expected = [
                ("not json", "invalid_json", "frame is not valid JSON"),
                (b"\x00\x01", "binary_not_supported", "send JSON text frames"),
                ("[1, 2]", "invalid_envelope", "envelope must be a JSON object"),
                ('{"data": {}}', "invalid_envelope", "invalid envelope field(s): type"),
            ]
            for frame, code, message in expected:
                await ws.send(frame)
                assert await recv(ws) == {
                    "type": "error",
                    "data": {"code": code, "message": message},
                    "request_id": None,
                }
            # A ping from the client is answered with a pong carrying its request_id.
            await send(ws, "ping", request_id="r-1")
            assert await recv(ws) == {"type": "pong", "data": {}, "request_id": "r-1"}
            # The connection is still usable, until a frame is over the limit.
            minimal.room_members["t"] = {user}
            await send(ws, "subscribe", {"topic": "room:t"})
            await send(ws, "chat.message", {"room": "t", "text": "still here"})
            assert (await recv(ws))["data"]["text"] == "still here"
            await ws.send(json.dumps({"type": "chat.message", "data": {"text": "x" * 2000}}))
            assert await close_code(ws) == CloseCode.MESSAGE_TOO_BIG

        async with connect(url, subprotocols=bearer(user)) as ws:
            await recv(ws)
            for _ in range(10):  # max_invalid_frames defaults to 10 per connection
                await ws.send("{not json")
            assert await close_code(ws) == CloseCode.POLICY_VIOLATION
        await until(lambda: minimal.hub.stats().connections == 0)


async def test_minimal_answers_bad_data_with_an_error_envelope(
    load_minimal: Callable[..., Any],
) -> None:
    minimal = load_minimal()
    user = uuid4()
    async with serve(minimal.app, settings=minimal.ws_settings) as base:
        async with connect(ws_url(base), subprotocols=bearer(user)) as ws:
            await recv(ws)
            refused = [
                ("subscribe", {}, "invalid_data"),
                ("subscribe", {"topic": 7}, "invalid_data"),
                ("subscribe", {"topic": ["room:lobby"]}, "invalid_data"),
                ("subscribe", {"topic": "x" * 257}, "invalid_data"),
                ("subscribe", {"topic": ""}, "invalid_data"),
                ("subscribe", [1, 2], "invalid_data"),
                ("chat.message", {"room": "lobby"}, "invalid_data"),
                ("chat.message", {"room": {"$ne": 1}, "text": "hi"}, "invalid_data"),
                ("chat.message", {"room": "lobby", "text": "before joining"}, "not_subscribed"),
            ]
            for n, (kind, data, code) in enumerate(refused):
                await ws.send(json.dumps({"type": kind, "data": data, "request_id": str(n)}))
                reply = await recv(ws)
                assert (reply["type"], reply["data"]["code"], reply["request_id"]) == (
                    "error",
                    code,
                    str(n),
                )
            # Still open and usable after every refusal.
            await send(ws, "subscribe", {"topic": "room:lobby"})
            await send(ws, "chat.message", {"room": "lobby", "text": "still here"})
            assert (await recv(ws))["data"] == {"from": str(user), "text": "still here"}
        await until(lambda: minimal.hub.stats().connections == 0)
        assert minimal.hub.stats().subscriptions == 0


async def test_minimal_topics_are_closed_but_your_inbox_and_rooms(
    load_minimal: Callable[..., Any],
) -> None:
    minimal = load_minimal()
    alice, bob = uuid4(), uuid4()
    minimal.room_members["team"] = {alice}
    async with serve(minimal.app, settings=minimal.ws_settings) as base:
        url = ws_url(base)
        async with (
            connect(url, subprotocols=bearer(alice)) as a,
            connect(url, subprotocols=bearer(bob)) as b,
        ):
            await recv(a)
            await recv(b)
            for topic in (f"inbox:{alice}", "room:team", "room:Lobby", "lobby", "inbox:"):
                await send(b, "subscribe", {"topic": topic}, request_id=topic)
                reply = await recv(b)
                assert (reply["data"]["code"], reply["request_id"]) == ("forbidden", topic)
            # bob cannot post into a room he is not in either.
            await send(b, "chat.message", {"room": "team", "text": "let me in"})
            assert (await recv(b))["data"]["code"] == "not_subscribed"
            await send(b, "subscribe", {"topic": f"inbox:{bob}"})  # his own inbox
            await until(lambda: len(minimal.hub.subscribers(f"inbox:{bob}")) == 1)
            await send(a, "subscribe", {"topic": "room:team"})
            await send(a, "chat.message", {"room": "team", "text": "only me"})
            assert (await recv(a))["data"]["text"] == "only me"
            assert [c.user_id for c in minimal.hub.subscribers("room:team")] == [alice]
            await send(b, "subscribe", {"topic": "room:lobby"})  # open to everyone
            await send(b, "chat.message", {"room": "lobby", "text": "hello"})
            assert (await recv(b))["data"]["text"] == "hello"
            assert minimal.hub.stats().subscriptions == 3


async def test_minimal_origin_allow_list(load_minimal: Callable[..., Any]) -> None:
    minimal = load_minimal(WS_ALLOWED_ORIGINS="https://app.example.com, https://*.example.org")
    user = uuid4()
    async with serve(minimal.app, settings=minimal.ws_settings) as base:
        url = ws_url(base)
        for origin in ("https://app.example.com", "https://eu.shop.example.org"):
            async with connect(url, subprotocols=bearer(user), origin=origin) as ws:
                assert (await recv(ws))["type"] == "hello"
        for origin in (
            "https://example.com.evil.net",
            "https://evilexample.org",
            "http://app.example.com",
            "https://app.example.com:8443",
            "null",
        ):
            with pytest.raises(InvalidStatus) as refused:
                await connect(url, subprotocols=bearer(user), origin=origin)
            assert refused.value.response.status_code == 403, origin


async def test_minimal_heartbeat(load_minimal: Callable[..., Any]) -> None:
    minimal = load_minimal(WS_HEARTBEAT_SECONDS=0.1, WS_HEARTBEAT_TIMEOUT_SECONDS=1.5)
    async with serve(minimal.app, settings=minimal.ws_settings) as base:
        url = ws_url(base)
        # A client answering every ping stays connected well past the timeout.
        async with connect(url, subprotocols=bearer(uuid4())) as ws:
            await recv(ws)
            pings = 0
            async with asyncio.timeout(BOUND):
                while pings < 20:  # 20 pings take at least 2 s, beyond the 1.5 s timeout
                    frame = await ws.recv()
                    assert frame == PING_FRAME
                    pings += 1
                    await send(ws, "pong")
            assert ws.close_code is None
        # A silent client gets pings, then 4408.
        async with connect(url, subprotocols=bearer(uuid4())) as ws:
            assert await close_code(ws) == CloseCode.HEARTBEAT_TIMEOUT


# -- examples/http_push.py: HTTP handlers pushing through the hub ----------------------


PUBLISHER = {
    "Authorization": f"Bearer {token('backend', claims={'roles': ['publisher']}, expires_in=3600)}"
}
"""HTTP headers of a caller with the ``publisher`` role. Signed at import, so it lasts an
hour: the whole suite outlasts the default five minutes."""


@contextlib.asynccontextmanager
async def http_push_server(
    rooms: dict[str, set[str]] | None = None,
) -> AsyncIterator[tuple[str, httpx.AsyncClient, Any]]:
    """The example on a real server, and an HTTP client that calls it as a publisher."""
    settings = make_settings()
    app = http_push.create_app(settings, rooms=rooms)
    async with (
        serve(app, settings=settings) as base,
        httpx.AsyncClient(base_url=base, headers=PUBLISHER) as http,
    ):
        yield base, http, app.state.hub


async def test_http_push_send_to_reaches_every_tab_of_one_user() -> None:
    async with http_push_server() as (base, http, _hub):
        url = ws_url(base)
        async with (
            connect(url, subprotocols=bearer("alice")) as tab1,
            connect(url, subprotocols=bearer("alice")) as tab2,
            connect(url, subprotocols=bearer("bob")) as bob,
        ):
            for ws in (tab1, tab2, bob):
                await recv(ws)
            response = await http.post("/users/alice/notify", json={"text": "hi"})
            assert response.json() == {"local_recipients": 2}
            for ws in (tab1, tab2):
                assert await recv(ws) == {
                    "type": "notification",
                    "data": {"text": "hi"},
                    "request_id": None,
                }
            # exclude_users: alice's tabs are skipped; bob's next frame proves he got
            # no notification before it.
            response = await http.post("/announce?exclude_user=alice", json={"n": 1})
            assert response.json() == {"local_recipients": 1}
            assert await recv(bob) == {"type": "announcement", "data": {"n": 1}, "request_id": None}
            response = await http.post("/announce", json={"n": 2})
            assert response.json() == {"local_recipients": 3}
            for ws in (tab1, tab2, bob):
                assert (await recv(ws))["data"] == {"n": 2}
            online = (await http.get("/online")).json()
            assert online == {"users": ["alice", "bob"], "connections": 3}


# --8<-- [start:serve]
async def test_topic_subscribers_get_http_pushes_in_order() -> None:
    settings = WebSocketSettings(_env_file=None, WS_JWT_SECRET=SECRET)  # ignore any .env
    app = http_push.create_app(settings, rooms={"orders": {"alice"}})  # alice is a member
    backend = make_token("backend", secret=SECRET, claims={"roles": ["publisher"]})
    async with (
        serve(app, settings=settings) as base_url,  # real uvicorn on a free port
        httpx.AsyncClient(
            base_url=base_url, headers={"Authorization": f"Bearer {backend}"}
        ) as http,
    ):
        url = base_url.replace("http://", "ws://") + "/ws"
        token = make_token("alice", secret=SECRET)
        async with connect(url, subprotocols=["bearer", token]) as ws:
            assert ws.subprotocol == "bearer"
            assert json.loads(await ws.recv())["type"] == "hello"
            await ws.send(json.dumps({"type": "subscribe", "data": {"topic": "room:orders"}}))
            assert json.loads(await ws.recv())["type"] == "subscribed"

            for n in range(20):
                response = await http.post("/topics/room:orders/publish", json={"n": n})
                assert response.json() == {"local_recipients": 1}
            received = [json.loads(await ws.recv())["data"]["payload"]["n"] for _ in range(20)]
            assert received == list(range(20))  # publish order
            # --8<-- [end:serve]

            await ws.send(json.dumps({"type": "unsubscribe", "data": {"topic": "room:orders"}}))
            assert json.loads(await ws.recv())["type"] == "unsubscribed"
            response = await http.post("/topics/room:orders/publish", json={"n": 20})
            assert response.json() == {"local_recipients": 0}
            await ws.send(json.dumps({"type": "shout", "request_id": "q"}))
            reply = json.loads(await ws.recv())
            assert (reply["type"], reply["data"]["code"], reply["request_id"]) == (
                "error",
                "unknown_type",
                "q",
            )


async def test_http_push_topics_are_scoped() -> None:
    rooms = {"orders": {"alice"}, "billing": {"bob"}}
    async with http_push_server(rooms) as (base, http, hub):
        url = ws_url(base)
        async with (
            connect(url, subprotocols=bearer("alice")) as alice,
            connect(url, subprotocols=bearer("bob")) as bob,
        ):
            for ws, topic in ((alice, "room:orders"), (bob, "room:billing")):
                await recv(ws)
                await send(ws, "subscribe", {"topic": topic})
                assert (await recv(ws))["type"] == "subscribed"
            for ws, topic in ((alice, "room:billing"), (bob, "inbox:alice"), (bob, "orders")):
                await send(ws, "subscribe", {"topic": topic})  # not a member, not his
                assert (await recv(ws))["data"]["code"] == "forbidden"
            for topic in ("room:orders", "room:billing"):
                response = await http.post(f"/topics/{topic}/publish", json={})
                assert response.json()["local_recipients"] == 1
            assert (await recv(alice))["data"]["topic"] == "room:orders"
            assert (await recv(bob))["data"]["topic"] == "room:billing"  # never "orders"
            assert hub.stats().subscriptions == 2
        await until(lambda: hub.stats().connections == hub.stats().subscriptions == 0)


# --8<-- [start:testclient]
def test_unit_test_with_starlette_testclient() -> None:
    with warnings.catch_warnings():
        # Starlette 1.x warns when its TestClient runs on httpx rather than httpx2.
        warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
        from starlette.testclient import TestClient

    settings = WebSocketSettings(_env_file=None, WS_JWT_SECRET=SECRET)
    app = http_push.create_app(settings, rooms={"orders": {"alice"}})
    backend = make_token("backend", secret=SECRET, claims={"roles": ["publisher"]})
    with TestClient(app, headers={"Authorization": f"Bearer {backend}"}) as client:
        alice = make_token("alice", secret=SECRET)
        with client.websocket_connect("/ws", subprotocols=["bearer", alice]) as ws:
            assert ws.receive_json()["type"] == "hello"
            ws.send_json({"type": "subscribe", "data": {"topic": "room:orders"}})
            assert ws.receive_json()["type"] == "subscribed"
            published = client.post("/topics/room:orders/publish", json={"id": 7})
            assert published.json() == {"local_recipients": 1}
            assert ws.receive_json()["data"] == {"topic": "room:orders", "payload": {"id": 7}}

        from starlette.websockets import WebSocketDisconnect

        with (
            pytest.raises(WebSocketDisconnect) as closed,
            client.websocket_connect("/ws", subprotocols=["bearer", "garbage"]) as ws,
        ):
            ws.receive_json()
        assert closed.value.code == 4401


# --8<-- [end:testclient]


# -- examples/custom_resolver.py: a resolver backed by a token store ------------------


async def test_custom_resolver_login_connect_logout() -> None:
    settings = make_settings()
    users = custom_resolver.Users()
    users.add("carol", "correct horse")
    app = custom_resolver.create_app(settings, users=users)
    async with serve(app, settings=settings) as base, httpx.AsyncClient(base_url=base) as http:
        url = ws_url(base)
        form = {"user_id": "carol", "password": "correct horse"}
        issued = (await http.post("/login", json=form)).json()["token"]
        async with connect(url, subprotocols=["bearer", issued]) as ws:
            await recv(ws)
            await send(ws, "whoami", request_id="w")
            assert await recv(ws) == {
                "type": "whoami",
                "data": {"user_id": "carol"},
                "request_id": "w",
            }
            assert await refused_with(url, subprotocols=["bearer", "unknown"]) == 4401

            auth = {"Authorization": f"Bearer {issued}"}
            assert (await http.post("/logout", headers=auth)).json() == {"closed": 1}
            assert await close_code(ws) == CloseCode.UNAUTHORIZED
        assert await refused_with(url, subprotocols=["bearer", issued]) == 4401
        assert (await http.post("/logout", headers=auth)).status_code == 401


async def test_custom_resolver_refuses_expired_sessions() -> None:
    settings = make_settings()
    store = custom_resolver.TokenStore(ttl_seconds=-1)
    app = custom_resolver.create_app(settings, store)
    async with serve(app, settings=settings) as base:
        issued = await store.issue("dave")
        assert await refused_with(ws_url(base), subprotocols=["bearer", issued]) == 4401


async def test_a_resolver_that_raises_closes_4401(caplog: pytest.LogCaptureFixture) -> None:
    class BrokenStore(custom_resolver.TokenStore):
        async def lookup(self, token: str) -> custom_resolver.Session | None:
            raise ConnectionError("database unavailable")

    settings = make_settings()
    store = BrokenStore()
    app = custom_resolver.create_app(settings, store)
    async with serve(app, settings=settings) as base:
        issued = await store.issue("erin")
        assert await refused_with(ws_url(base), subprotocols=["bearer", issued]) == 4401
    raised = [r for r in caplog.records if r.name == "tempest_ws" and r.exc_info]
    assert len(raised) == 1
    assert issued not in caplog.text  # the token is never logged
    assert raised[0].levelno == logging.ERROR
