"""The chat demo (``examples/chat``): its HTTP API, its socket protocol, HTTP pushes
reaching sockets, the page in real Chromium, and ``python -m examples.chat`` itself."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from examples.chat.__main__ import parse_args
from examples.chat.app import create_app
from tempest_ws import CloseCode, ConfigurationError, jwt_bearer_resolver
from tempest_ws.testing import make_token, serve
from tests.helpers.browser import Chromium
from tests.helpers.support import make_settings, until, ws_url

pytestmark = pytest.mark.e2e

WAIT = 30.0
"""Bound, in seconds, of every wait."""
REPO = Path(__file__).resolve().parents[2]


async def login(base: str, name: str) -> str:
    async with httpx.AsyncClient(base_url=base) as http:
        response = await http.post("/api/login", json={"name": name})
    response.raise_for_status()
    token: str = response.json()["token"]
    return token


def publisher(app: Any) -> dict[str, str]:
    """HTTP headers with a token that has the ``publisher`` role for ``app``."""
    secret = app.state.settings.WS_JWT_SECRET.get_secret_value()
    signed = make_token("ops", secret=secret, claims={"roles": ["publisher"]})
    return {"Authorization": f"Bearer {signed}"}


async def next_of(ws: Any, kind: str) -> dict[str, Any]:
    """The next envelope of type ``kind`` on a ``websockets`` connection (others skipped)."""
    async with asyncio.timeout(WAIT):
        while True:
            envelope: dict[str, Any] = json.loads(await ws.recv())
            if envelope["type"] == kind:
                return envelope


async def test_login_signs_tokens_with_a_generated_secret_when_none_is_set() -> None:
    app = create_app(make_settings(WS_JWT_SECRET=None))
    secret = app.state.settings.WS_JWT_SECRET
    assert secret is not None
    assert len(secret.get_secret_value()) >= 64
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://chat.test") as http:
        response = await http.post("/api/login", json={"name": "ann"})
        assert response.status_code == 200
        body = response.json()
        assert body["user"] == "ann"
        assert await jwt_bearer_resolver(app.state.settings)(body["token"]) == "ann"
        for bad in ("", "<script>", "x" * 25, " padded"):
            response = await http.post("/api/login", json={"name": bad})
            assert response.status_code == 422, bad
        page = await http.get("/")
        assert page.status_code == 200
        assert 'from "/ws/client.js"' in page.text
        script = await http.get("/ws/client.js")
        assert "export class TempestWS" in script.text
    # Two apps without a configured secret do not share one.
    other = create_app(make_settings(WS_JWT_SECRET=None)).state.settings.WS_JWT_SECRET
    assert other is not None
    assert other.get_secret_value() != secret.get_secret_value()


def test_a_configured_secret_is_used_and_public_key_algorithms_are_refused() -> None:
    settings = make_settings()
    assert create_app(settings).state.settings.WS_JWT_SECRET == settings.WS_JWT_SECRET
    with pytest.raises(ConfigurationError):
        create_app(make_settings(WS_JWT_ALGORITHMS=["RS256"]))


async def until_reply(ws: Any, request_id: str) -> list[dict[str, Any]]:
    """Every envelope up to and including the one answering ``request_id``."""
    frames: list[dict[str, Any]] = []
    async with asyncio.timeout(WAIT):
        while not frames or frames[-1].get("request_id") != request_id:
            frames.append(json.loads(await ws.recv()))
    return frames


def presence_get(topic: str, request_id: str) -> str:
    return json.dumps({"type": "presence.get", "data": {"topic": topic}, "request_id": request_id})


async def test_http_announce_reaches_sockets_and_rooms_scope_messages() -> None:
    websockets = pytest.importorskip("websockets")
    app = create_app(make_settings(WS_ALLOW_QUERY_TOKEN=False))
    async with serve(app, settings=app.state.settings) as base:
        alice_token, bob_token = await login(base, "alice"), await login(base, "bob")
        async with (
            websockets.connect(ws_url(base), subprotocols=["bearer", alice_token]) as alice,
            websockets.connect(ws_url(base), subprotocols=["bearer", bob_token]) as bob,
        ):
            assert alice.subprotocol == bob.subprotocol == "bearer"
            await next_of(alice, "hello")
            await next_of(bob, "hello")

            await alice.send(json.dumps({"type": "subscribe", "data": {"topic": "room:lobby"}}))
            joined = await next_of(alice, "room.joined")
            assert joined["data"] == {"room": "lobby"}
            await alice.send(presence_get("room:lobby", "p0"))
            members = await next_of(alice, "ack")
            assert members == {
                "type": "ack",
                "data": {"type": "presence.get", "topic": "room:lobby", "users": ["alice"]},
                "request_id": "p0",
            }

            await alice.send(
                json.dumps({"type": "subscribe", "data": {"topic": "lobby"}, "request_id": "r0"})
            )
            refused = await next_of(alice, "error")
            assert refused["request_id"] == "r0"
            assert refused["data"]["code"] == "bad_room"

            async with httpx.AsyncClient(base_url=base) as http:
                anonymous = await http.post("/api/announce", json={"text": "x"})
                user = {"Authorization": f"Bearer {bob_token}"}  # the dev login grants no role
                not_allowed = await http.post("/api/announce", json={"text": "x"}, headers=user)
            async with httpx.AsyncClient(base_url=base, headers=publisher(app)) as http:
                everyone = await http.post("/api/announce", json={"text": "maintenance at 5"})
                lobby = await http.post(
                    "/api/announce", json={"text": "lobby only", "room": "lobby"}
                )
                bad = await http.post("/api/announce", json={"text": "x", "room": "Not A Room"})
                online = await http.get("/api/online")
            assert (anonymous.status_code, not_allowed.status_code) == (401, 403)
            assert everyone.json() == {"delivered": 2}
            assert lobby.json() == {"delivered": 1}
            assert bad.status_code == 422
            assert online.status_code == 404  # no global online list, not even over HTTP
            expected = {"text": "maintenance at 5", "room": None}
            assert (await next_of(alice, "announcement"))["data"] == expected
            assert (await next_of(bob, "announcement"))["data"] == expected
            assert (await next_of(alice, "announcement"))["data"]["text"] == "lobby only"

            # chat.send: acknowledged by request_id, delivered to the room only.
            send = {"type": "chat.send", "data": {"room": "lobby", "text": "hi"}}
            await alice.send(json.dumps({**send, "request_id": "r1"}))
            message = await next_of(alice, "chat.message")
            assert message["data"]["from"] == "alice"
            assert message["data"]["text"] == "hi"
            ack = await next_of(alice, "ack")
            assert ack == {"type": "ack", "data": {"delivered": 1}, "request_id": "r1"}
            await bob.send(json.dumps({**send, "request_id": "r2"}))
            refused = await next_of(bob, "error")
            assert refused["request_id"] == "r2"
            assert refused["data"]["code"] == "not_in_room"
            # Outside the room bob cannot ask who is in it, and he never got the lobby's
            # message or a word about alice (his next frame is the answer to presence.get).
            await bob.send(presence_get("room:lobby", "r3"))
            (answer,) = await until_reply(bob, "r3")
            assert answer["type"] == "error"
            assert answer["data"]["code"] == "not_subscribed"
            await bob.send(json.dumps({"type": "users", "data": {}, "request_id": "r4"}))
            (answer,) = await until_reply(bob, "r4")
            assert answer["data"]["code"] == "unknown_type"

            # Bob joins: alice (a member) hears presence.join; bob gets the member list.
            await bob.send(
                json.dumps(
                    {"type": "subscribe", "data": {"topic": "room:lobby"}, "request_id": "j1"}
                )
            )
            assert (await next_of(bob, "room.joined"))["request_id"] == "j1"
            assert (await next_of(alice, "presence.join"))["data"] == {
                "topic": "room:lobby",
                "user_id": "bob",
            }
            await bob.send(presence_get("room:lobby", "p1"))
            assert (await next_of(bob, "ack"))["data"]["users"] == ["alice", "bob"]

            await alice.send(json.dumps({"type": "unsubscribe", "data": {"topic": "room:lobby"}}))
            left = await next_of(alice, "room.left")
            assert left["data"] == {"room": "lobby"}
            assert (await next_of(bob, "presence.leave"))["data"] == {
                "topic": "room:lobby",
                "user_id": "alice",
            }
            assert [c.user_key for c in app.state.hub.subscribers("room:lobby")] == ["bob"]
            # Alice, no longer a member, hears nothing about the room (bob's frames neither
            # mention himself): her next frame answers her own request.
            await bob.send(presence_get("room:lobby", "p2"))
            bob_frames = await until_reply(bob, "p2")
            assert [f["type"] for f in bob_frames] == ["ack"]
            assert bob_frames[0]["data"]["users"] == ["bob"]
            await alice.send(presence_get("room:lobby", "p3"))
            (answer,) = await until_reply(alice, "p3")
            assert answer["data"]["code"] == "not_subscribed"

        await until(lambda: app.state.hub.stats().connections == 0, WAIT)


@pytest.mark.browser
async def test_demo_page_two_users_chat_in_chromium(chromium: Chromium) -> None:
    # Query tokens are refused: the page can only authenticate with the bearer subprotocol.
    app = create_app(make_settings(WS_ALLOW_QUERY_TOKEN=False))
    async with serve(app, settings=app.state.settings) as base:
        alice = await chromium.new_page(base + "/")
        handshakes = await chromium.handshakes(alice)
        bob = await chromium.new_page(base + "/")
        for page, name in ((alice, "alice"), (bob, "bob")):
            await page.get_by_test_id("name").fill(name)
            await page.get_by_test_id("login-form").locator("button").click()
            await page.wait_for_function(
                "() => document.querySelector('#status').dataset.state === 'open'", polling=50
            )
        await until(lambda: len(handshakes) == 1, WAIT)
        assert handshakes[0]["request"]["sec-websocket-protocol"].startswith("bearer, ey")
        assert handshakes[0]["response"]["sec-websocket-protocol"] == "bearer"
        assert await alice.evaluate("() => window.chat.client.protocol") == "bearer"

        # No global online list: each page shows the members of its current room only,
        # from presence.get (bob, joining second) and presence.join (alice).
        assert await alice.get_by_test_id("online").count() == 0
        members = {page: page.get_by_test_id("members") for page in (alice, bob)}
        for page, other in ((alice, "bob"), (bob, "alice")):
            await members[page].get_by_text(other, exact=True).wait_for()
        assert await members[alice].locator("li").all_inner_texts() == ["alice (you)", "bob"]
        assert await members[bob].locator("li").all_inner_texts() == ["alice", "bob (you)"]

        async def say(page: Any, text: str) -> None:
            await page.get_by_test_id("text").fill(text)
            await page.get_by_test_id("send-form").locator("button").click()

        await say(alice, "hi bob")
        await bob.get_by_test_id("log").get_by_text("hi bob").wait_for()
        assert "alice: hi bob" in await bob.get_by_test_id("log").inner_text()
        await say(bob, "hello alice")
        await alice.get_by_test_id("log").get_by_text("hello alice").wait_for()
        assert "bob: hello alice" in await alice.get_by_test_id("log").inner_text()

        # A room only bob is in: alice never sees its messages.
        await bob.get_by_test_id("room-name").fill("games")
        await bob.get_by_test_id("join-form").locator("button").click()
        await bob.get_by_test_id("room-title").get_by_text("# games").wait_for()
        await until(lambda: len(app.state.hub.subscribers("room:games")) == 1, WAIT)
        await members[bob].get_by_text("bob (you)").wait_for()
        assert await members[bob].locator("li").all_inner_texts() == ["bob (you)"]
        await say(bob, "secret move")
        await bob.get_by_test_id("log").get_by_text("secret move").wait_for()
        await bob.get_by_role("button", name="# lobby").click()
        await say(bob, "back in the lobby")
        await alice.get_by_test_id("log").get_by_text("back in the lobby").wait_for()
        texts = await alice.evaluate("() => window.chat.entries.map((e) => e.p.textContent)")
        assert "bob: secret move" not in texts
        # ... nor who is in it: alice only knows the lobby's members.
        known = await alice.evaluate("() => [...window.chat.members.keys()]")
        assert known == ["lobby"]
        await members[bob].get_by_text("alice", exact=True).wait_for()

        # A push from an HTTP handler shows up in both pages.
        async with httpx.AsyncClient(base_url=base, headers=publisher(app)) as http:
            response = await http.post("/api/announce", json={"text": "pizza in 5"})
        assert response.json() == {"delivered": 2}
        for page in (alice, bob):
            await page.get_by_test_id("log").get_by_text("pizza in 5").wait_for()

        # Bob leaves (his last tab closes): alice's member list follows (presence.leave).
        await bob.close()
        await members[alice].get_by_text("bob", exact=True).wait_for(state="detached")
        assert await members[alice].locator("li").all_inner_texts() == ["alice (you)"]


@pytest.mark.browser
async def test_demo_page_reports_an_unreachable_server_then_reconnected(chromium: Chromium) -> None:
    app = create_app(make_settings(WS_ALLOW_QUERY_TOKEN=False))
    async with serve(app, settings=app.state.settings) as base:
        page = await chromium.new_page()
        missing: list[str] = []
        page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
        await page.goto(base + "/")
        await page.get_by_test_id("name").fill("alice")
        await page.get_by_test_id("login-form").locator("button").click()
        await page.wait_for_function(
            "() => document.querySelector('#status').dataset.state === 'open'", polling=50
        )
        log = page.get_by_test_id("log")

        # The server "goes away": the socket is closed 1012 and logins fail at the network.
        await page.route("**/api/login", lambda route: route.abort())
        assert await app.state.hub.disconnect_user("alice", code=CloseCode.SERVICE_RESTART) == 1
        await log.get_by_text("the server is not reachable").first.wait_for()
        assert "could not get the URL or token" in await log.inner_text()

        # Back: the problem lines go, one "reconnected" line says so.
        await page.unroute("**/api/login")
        await log.get_by_text("reconnected", exact=True).wait_for()
        text = await log.inner_text()
        assert "connection problem" not in text
        assert text.count("reconnected") == 1
        await page.wait_for_function(
            "() => document.querySelector('#status').dataset.state === 'open'", polling=50
        )
        # Switching rooms redraws the log without the removed lines.
        await page.get_by_role("button", name="# lobby").click()
        assert "connection problem" not in await log.inner_text()
        assert missing == []  # no favicon (or other) 404


@pytest.mark.browser
async def test_minimal_client_page_connects_subscribes_and_requests(chromium: Chromium) -> None:
    app = create_app(make_settings(WS_ALLOW_QUERY_TOKEN=False))
    async with serve(app, settings=app.state.settings) as base:
        page = await chromium.new_page(base + "/minimal")
        out = page.get_by_test_id("out")
        await out.get_by_text('ack: {"delivered":1}').wait_for()
        text = await out.inner_text()
        assert "protocol bearer" in text
        assert 'message chat.message: {"room":"lobby","from":"minimal"' in text
        assert app.state.hub.subscribers("room:lobby")[0].user_key == "minimal"


def test_cli_reads_host_and_port_from_env_and_args(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHAT_HOST", raising=False)
    monkeypatch.delenv("CHAT_PORT", raising=False)
    args = parse_args([])
    assert (args.host, args.port) == ("127.0.0.1", 8000)
    monkeypatch.setenv("CHAT_PORT", "8123")
    assert parse_args([]).port == 8123
    assert parse_args(["--port", "9000", "--host", "::1"]).port == 9000
    with pytest.raises(SystemExit):
        parse_args(["--port", "0"])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_python_m_examples_chat_serves_the_demo_with_zero_config() -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WS_", "CHAT_"))}
    env["CHAT_PORT"] = str(port)
    process = subprocess.Popen(
        [sys.executable, "-m", "examples.chat", "--log-level", "warning"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + WAIT
        response = None
        while response is None and time.monotonic() < deadline and process.poll() is None:
            try:
                response = httpx.post(f"{base}/api/login", json={"name": "cli"}, timeout=5)
            except httpx.TransportError:
                time.sleep(0.1)  # polling for the port, bounded by the deadline
        assert response is not None, "the demo did not start listening"
        assert response.status_code == 200
        assert httpx.get(base + "/", timeout=5).status_code == 200
    finally:
        process.terminate()
        try:
            output, _ = process.communicate(timeout=WAIT)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
    text = output.decode(errors="replace")
    assert "generated a random secret" in text
    assert "Traceback" not in text
