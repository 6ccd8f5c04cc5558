"""Subscriptions and built-in operations of ``WebSocketClient`` against the real router.

The server is the real router under uvicorn with every built-in on, a topic authorizer
that allows ``room:*`` and the caller's own ``inbox:<user>``, and presence for rooms.
Refusals come from the server itself (``forbidden``, ``invalid_data``,
``not_subscribed``, ``presence_disabled``). Waits are bounded; nothing sleeps to let
something happen.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tempest_ws import CloseCode, WebSocketHub, WSEnvelope
from tempest_ws.client import Backoff, RequestError, RequestTimeoutError, WebSocketClient
from tempest_ws.client._subscriptions import Subscriptions
from tempest_ws.envelope import decode_envelope
from tempest_ws.testing import serve
from tests.helpers.realtime_support import realtime_app, rooms_and_own_inbox
from tests.helpers.support import make_settings, token, ws_url

BOUND = 30.0
"""Upper bound of any single wait; reached only when something is broken."""
FAST = Backoff(min_delay=0.02, max_delay=0.2, factor=2.0)


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, WebSocketHub]]:
    settings = make_settings()
    hub = WebSocketHub(presence=lambda topic: topic.startswith("room:"))
    app = realtime_app(settings, hub, builtins=True, topic_authorizer=rooms_and_own_inbox)
    async with serve(app, settings=settings) as base:
        yield ws_url(base), hub


def client_for(url: str, user: str = "alice", **kwargs: Any) -> WebSocketClient:
    options: dict[str, Any] = {
        "token": token(user),
        "backoff": FAST,
        "rng": random.Random(7),
        "open_timeout": BOUND,
    }
    options.update(kwargs)
    return WebSocketClient(url, **options)


async def next_of(client: WebSocketClient, kind: str, **fields: Any) -> WSEnvelope:
    """The next envelope of type ``kind`` whose ``data`` has ``fields`` (bounded)."""
    async with asyncio.timeout(BOUND):
        async for envelope in client:
            data = envelope.data if isinstance(envelope.data, dict) else {}
            if envelope.type == kind and all(data.get(k) == v for k, v in fields.items()):
                return envelope
    pytest.fail(f"client ended before a {kind!r} envelope")


# -- Subscriptions, without I/O ----------------------------------------------------------


def _reply(kind: str, request_id: str, **data: Any) -> WSEnvelope:
    return WSEnvelope(type=kind, data=data, request_id=request_id)


def test_only_the_first_reply_answers_and_ids_are_unique() -> None:
    subs = Subscriptions("c1")
    assert subs.add("a")
    assert not subs.add("a")
    first, frame = subs.request("a", {"topic": "a", "offset": 3, "epoch": "e"})
    second, _ = subs.request("a", {"topic": "a"})
    assert first != second
    sent = decode_envelope(frame)
    assert (sent.type, sent.data, sent.request_id) == (
        "subscribe",
        {"topic": "a", "offset": 3, "epoch": "e"},
        first,
    )
    answer = subs.answer(_reply("ack", second, type="subscribe"))
    assert answer is not None
    assert answer.error is None
    assert subs.answer(_reply("recovery", second)) is None  # the ack answered it already
    assert subs.answer(_reply("ack", "someone-else")) is None


def test_a_refusal_removes_the_topic_unless_a_newer_subscribe_is_pending() -> None:
    subs = Subscriptions("c1")
    subs.add("a")
    stale, _ = subs.request("a", {"topic": "a"})
    fresh, _ = subs.request("a", {"topic": "a"})
    answer = subs.answer(_reply("error", stale, code="forbidden", message="no", topic="a"))
    assert answer is not None
    assert answer.error is not None
    assert not answer.removed
    assert subs.topics == {"a": None}
    answer = subs.answer(_reply("error", fresh, code="forbidden", message="no", topic="a"))
    assert answer is not None
    assert answer.removed
    assert answer.error is not None
    assert (answer.error.code, answer.error.topic, answer.error.reason) == ("forbidden", "a", "no")
    assert subs.topics == {}


def test_a_new_connection_forgets_what_was_pending() -> None:
    subs = Subscriptions("c1")
    subs.add("a")
    request_id, _ = subs.request("a", {"topic": "a"})
    subs.new_connection()
    assert subs.answer(_reply("error", request_id, code="forbidden")) is None
    assert subs.topics == {"a": None}


# -- against the router ------------------------------------------------------------------


@pytest.mark.e2e
async def test_subscribe_awaits_the_ack_and_raises_the_refusal(
    server: tuple[str, WebSocketHub],
) -> None:
    url, hub = server
    async with client_for(url) as client:
        await client.subscribe("room:a")
        ack = await next_of(client, "ack", type="subscribe")  # also yielded, as before
        assert ack.data["topic"] == "room:a"
        assert await client.presence("room:a") == {"alice"}  # the server subscribed us

        with pytest.raises(RequestError) as refused:
            await client.subscribe("inbox:bob")
        assert refused.value.code == "forbidden"
        assert refused.value.topic == "inbox:bob"
        with pytest.raises(RequestError) as invalid:
            await client.subscribe("x" * 300)
        assert invalid.value.code == "invalid_data"
        assert client.subscriptions == {"room:a"}  # refused topics are not kept

        first = client.connection_id
        await hub.disconnect_user("alice", code=CloseCode.GOING_AWAY, reason="test")
        async with asyncio.timeout(BOUND):
            while client.connection_id in (None, first):
                await client.wait_connected()
                await asyncio.sleep(0.01)
        assert await client.presence("room:a") == {"alice"}  # resubscribed on the new one
        with pytest.raises(RequestError) as not_member:
            await client.presence("inbox:bob")
        assert not_member.value.code == "not_subscribed"


@pytest.mark.e2e
async def test_a_refusal_of_a_topic_sent_on_connect_goes_to_the_hook(
    server: tuple[str, WebSocketHub],
) -> None:
    url, _ = server
    refused: list[tuple[str, RequestError]] = []
    client = client_for(url, on_subscribe_error=lambda topic, error: refused.append((topic, error)))
    await client.subscribe("inbox:bob")  # not started: remembered, sent on connect
    await client.subscribe("room:a")
    assert client.subscriptions == {"inbox:bob", "room:a"}
    async with client:
        error = await next_of(client, "error", code="forbidden")  # yielded too
        assert error.data["topic"] == "inbox:bob"
        assert [(topic, e.code) for topic, e in refused] == [("inbox:bob", "forbidden")]
        assert client.subscriptions == {"room:a"}
        assert await client.presence("room:a") == {"alice"}


@pytest.mark.e2e
async def test_presence_typing_and_receipts(server: tuple[str, WebSocketHub]) -> None:
    url, _ = server
    async with client_for(url, "alice") as alice, client_for(url, "bob") as bob:
        await alice.subscribe("room:a")
        await bob.subscribe("room:a")
        await alice.subscribe("inbox:alice")
        assert await alice.presence("room:a") == {"alice", "bob"}

        await alice.typing("room:a")
        typing = await next_of(bob, "typing")
        assert typing.data == {"topic": "room:a", "user_id": "alice", "typing": True}
        await alice.typing("room:a", typing=False)
        assert (await next_of(bob, "typing")).data["typing"] is False

        await bob.receipt("room:a", "m-1", "read")
        receipt = await next_of(alice, "receipt")
        assert receipt.data == {
            "topic": "room:a",
            "user_id": "bob",
            "message_id": "m-1",
            "status": "read",
        }

        with pytest.raises(RequestError) as disabled:
            await alice.presence("inbox:alice")
        assert disabled.value.code == "presence_disabled"
        with pytest.raises(RequestError) as outsider:
            await alice.typing("room:b")
        assert outsider.value.code == "not_subscribed"
        with pytest.raises(RequestError) as invalid:
            await alice.receipt("room:a", 7, "Read!")
        assert invalid.value.code == "invalid_data"
        assert invalid.value.envelope is not None
        assert invalid.value.envelope.type == "error"


@pytest.mark.e2e
async def test_a_handler_that_never_answers_needs_confirm_false() -> None:
    """Without the built-in, this handler answers ``seen`` without the ``request_id``."""
    settings = make_settings()
    hub = WebSocketHub()
    async with (
        serve(realtime_app(settings, hub), settings=settings) as base,
        client_for(ws_url(base)) as client,
    ):
        with pytest.raises(RequestTimeoutError, match=r"builtins=True.*confirm=False"):
            await client.subscribe("room:a", timeout=0.2)
        assert client.subscriptions == {"room:a"}  # sent, so kept
        await client.subscribe("room:b", confirm=False)
        assert client.subscriptions == {"room:a", "room:b"}
        seen = [(await next_of(client, "seen")).data["type"] for _ in range(2)]
        assert seen == ["subscribe", "subscribe"]
