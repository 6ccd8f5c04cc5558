"""The HTTP endpoints of the examples, called without the right to, over real uvicorn.

``examples/http_push.py`` takes the socket's bearer JWT on every HTTP endpoint: no
token, a bad one or a forged one is 401; a valid one without the ``publisher`` role is
403 for publishing, announcing, listing who is online and notifying anyone but
yourself. Nothing is delivered to anyone when a call is refused.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from examples import custom_resolver, http_push
from examples.chat import app as chat
from examples.scaleout import app as scaleout
from tempest_ws.testing import make_token, serve
from tests.helpers.hardening import next_of_type
from tests.helpers.support import make_settings, token, ws_url
from tests.security._support import forge_jwt

pytestmark = pytest.mark.e2e

PUSHES = [
    ("/topics/room:orders/publish", {}),
    ("/announce", {}),
    ("/users/alice/notify", {}),
]


def auth(subject: str, **kwargs: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(subject, **kwargs)}"}


PUBLISHER = auth("backend", claims={"roles": ["publisher"]}, expires_in=3600)  # outlives the suite


@contextlib.asynccontextmanager
async def http_push_app() -> AsyncIterator[tuple[httpx.AsyncClient, ClientConnection]]:
    """The example served for real, an anonymous HTTP client, and alice subscribed to
    ``room:orders`` (so a push that got through would reach her)."""
    settings = make_settings()
    app = http_push.create_app(settings, rooms={"orders": {"alice"}})
    async with (
        serve(app, settings=settings) as base,
        httpx.AsyncClient(base_url=base) as http,
        connect(ws_url(base), subprotocols=["bearer", token("alice")]) as alice,
    ):
        await next_of_type(alice, "hello")
        await alice.send(json.dumps({"type": "subscribe", "data": {"topic": "room:orders"}}))
        await next_of_type(alice, "subscribed")
        yield http, alice


async def nothing_was_delivered(http: httpx.AsyncClient, alice: ClientConnection) -> None:
    """alice's next frame is a marker pushed now: nothing refused reached her before it."""
    response = await http.post("/users/alice/notify", json={"marker": 1}, headers=PUBLISHER)
    assert response.json() == {"local_recipients": 1}
    frame = json.loads(await alice.recv())
    assert (frame["type"], frame["data"]) == ("notification", {"marker": 1})


async def test_unauthenticated_publish_gets_401() -> None:
    async with http_push_app() as (http, alice):
        for path, body in PUSHES:
            response = await http.post(path, json=body)
            assert response.status_code == 401, path
            assert response.headers["www-authenticate"] == "Bearer"
        assert (await http.get("/online")).status_code == 401
        await nothing_was_delivered(http, alice)


@pytest.mark.parametrize(
    "credentials",
    [
        pytest.param("Bearer garbage", id="garbage"),
        pytest.param("Bearer", id="no-credentials"),
        pytest.param("Basic YWxpY2U6cGFzcw==", id="basic-scheme"),
        pytest.param(f"Bearer {token('backend', expires_in=-60)}", id="expired"),
        pytest.param(
            "Bearer "
            + make_token(
                "backend",
                secret="another-secret-0123456789abcdef-0123",
                claims={"roles": ["publisher"]},
            ),
            id="wrong-key",
        ),
        pytest.param(
            "Bearer "
            + forge_jwt(
                {"alg": "none"},
                {"sub": "backend", "exp": int(time.time()) + 60, "roles": ["publisher"]},
            ),
            id="alg-none-with-role",
        ),
    ],
)
async def test_bad_token_on_publish_gets_401(credentials: str) -> None:
    async with http_push_app() as (http, alice):
        headers = {"Authorization": credentials}
        for path, body in PUSHES:
            assert (await http.post(path, json=body, headers=headers)).status_code == 401, path
        await nothing_was_delivered(http, alice)


@pytest.mark.parametrize(
    "roles",
    [
        pytest.param(None, id="no-roles-claim"),
        pytest.param([], id="empty"),
        pytest.param(["viewer"], id="other-role"),
        pytest.param("publisher", id="a-string-not-a-list"),
        pytest.param(["Publisher"], id="other-case"),
    ],
)
async def test_publish_without_the_publisher_role_gets_403(roles: Any) -> None:
    claims = {} if roles is None else {"roles": roles}
    async with http_push_app() as (http, alice):
        headers = auth("mallory", claims=claims)
        for path in ("/topics/room:orders/publish", "/announce"):
            assert (await http.post(path, json={}, headers=headers)).status_code == 403, path
        assert (await http.get("/online", headers=headers)).status_code == 403
        await nothing_was_delivered(http, alice)


async def test_user_cannot_notify_another_user() -> None:
    async with http_push_app() as (http, alice):
        mallory = auth("mallory")
        response = await http.post("/users/alice/notify", json={"x": 1}, headers=mallory)
        assert response.status_code == 403
        await nothing_was_delivered(http, alice)
        # Notifying yourself needs no role.
        response = await http.post("/users/mallory/notify", json={}, headers=mallory)
        assert response.json() == {"local_recipients": 0}


async def test_user_cannot_subscribe_to_another_users_inbox_or_room() -> None:
    async with http_push_app() as (http, _alice):
        settings_token = token("mallory")
        base = str(http.base_url).rstrip("/")
        async with connect(ws_url(base), subprotocols=["bearer", settings_token]) as ws:
            await next_of_type(ws, "hello")
            for topic in ("inbox:alice", "room:orders", "orders", "", "x" * 300):
                await ws.send(json.dumps({"type": "subscribe", "data": {"topic": topic}}))
                assert (await next_of_type(ws, "error"))["data"]["code"] == "forbidden"
            for data in ({}, {"topic": 7}, [1]):
                await ws.send(json.dumps({"type": "subscribe", "data": data}))
                assert (await next_of_type(ws, "error"))["data"]["code"] == "invalid_data"
            await ws.send(json.dumps({"type": "subscribe", "data": {"topic": "inbox:mallory"}}))
            assert (await next_of_type(ws, "subscribed"))["data"] == {"topic": "inbox:mallory"}


async def test_login_without_the_right_password_gets_401() -> None:
    """``examples/custom_resolver.py`` hands out session tokens only for a password."""
    users = custom_resolver.Users()
    users.add("carol", "correct horse")
    settings = make_settings()
    app = custom_resolver.create_app(settings, users=users)
    async with serve(app, settings=settings) as base, httpx.AsyncClient(base_url=base) as http:
        refused = [
            {"user_id": "carol", "password": "wrong"},
            {"user_id": "carol", "password": "correct horse "},
            {"user_id": "mallory", "password": "correct horse"},  # no such user
        ]
        for form in refused:
            assert (await http.post("/login", json=form)).status_code == 401, form
        for form in ({"user_id": "carol"}, {"user_id": "carol", "password": ""}):
            assert (await http.post("/login", json=form)).status_code == 422, form
        assert (await http.post("/login", params={"user_id": "carol"})).status_code == 422
        accepted = await http.post("/login", json={"user_id": "carol", "password": "correct horse"})
        assert accepted.status_code == 200
        async with connect(ws_url(base), subprotocols=["bearer", accepted.json()["token"]]) as ws:
            await next_of_type(ws, "hello")


@pytest.mark.parametrize("example", [chat, scaleout], ids=["chat", "scaleout"])
async def test_demo_push_endpoints_need_the_publisher_role(example: Any) -> None:
    """The demos' HTTP pushes: 401 without a token, 403 with a dev-login token."""
    settings = make_settings()
    app = example.create_app(settings)
    calls = [("POST", "/api/announce", {"text": "hi"})]
    if example is scaleout:
        calls.append(("GET", "/api/online", None))
    async with serve(app, settings=settings) as base, httpx.AsyncClient(base_url=base) as http:
        dev_login = (await http.post("/api/login", json={"name": "mallory"})).json()["token"]
        for method, path, body in calls:
            anonymous = await http.request(method, path, json=body)
            assert anonymous.status_code == 401, path
            user = {"Authorization": f"Bearer {dev_login}"}
            assert (await http.request(method, path, json=body, headers=user)).status_code == 403
            allowed = await http.request(method, path, json=body, headers=PUBLISHER)
            assert allowed.status_code == 200, path
