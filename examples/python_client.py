"""A Python client for the chat demo: token refresh, a room, a request, reconnection.

Start the demo (``make demo``, which serves http://127.0.0.1:8000), then::

    python -m examples.python_client --name alice --room lobby --say "hello"

The client logs in through the demo's ``POST /api/login`` for a token, reuses it until
shortly before it expires, and logs in again after the server refuses it (close 4401),
so an expired or revoked token is replaced without any code of yours. Stop the demo
while the client waits for messages and start it again: the client reconnects, joins
the room again and carries on.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
import urllib.request
from collections.abc import Awaitable, Callable

from tempest_ws import WSEnvelope
from tempest_ws.client import Backoff, Disconnect, WebSocketClient

logger = logging.getLogger("examples.python_client")


# --8<-- [start:refresh]
class RefreshingToken:
    """A token provider that reuses its token until shortly before it expires.

    The client awaits the provider before every connection attempt. ``fetch`` returns
    ``(token, lifetime_seconds)``; `forget()` (wired to ``on_disconnect`` for 4401)
    makes the next attempt fetch a new token even if the old one has not expired.
    """

    def __init__(
        self,
        fetch: Callable[[], Awaitable[tuple[str, float]]],
        *,
        margin: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._margin = margin
        self._clock = clock
        self._token: str | None = None
        self._renew_at = 0.0

    async def __call__(self) -> str:
        if self._token is None or self._clock() >= self._renew_at:
            token, lifetime = await self._fetch()
            self._token, self._renew_at = token, self._clock() + lifetime - self._margin
        return self._token

    def forget(self, disconnect: Disconnect) -> None:
        """``on_disconnect`` hook: drop the token the server refused."""
        if disconnect.unauthorized:
            self._token = None


def demo_login(base_url: str, name: str) -> Callable[[], Awaitable[tuple[str, float]]]:
    """``fetch`` for the demo: ``POST /api/login`` (use your identity provider instead)."""

    def login() -> tuple[str, float]:
        request = urllib.request.Request(
            f"{base_url}/api/login",
            data=json.dumps({"name": name}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body = json.load(response)
        return str(body["token"]), float(body["expires_in"])

    async def fetch() -> tuple[str, float]:
        return await asyncio.to_thread(login)  # urllib blocks: keep it off the event loop

    return fetch


# --8<-- [end:refresh]


def build_client(base_url: str, name: str) -> WebSocketClient:
    """A client for the demo at ``base_url`` (``http://host:port``), logged in as ``name``."""
    token = RefreshingToken(demo_login(base_url, name))

    def on_disconnect(disconnect: Disconnect) -> None:
        logger.info("disconnected: %s", disconnect.describe())
        token.forget(disconnect)  # a 4401: the next attempt logs in again

    return WebSocketClient(
        base_url.replace("http", "ws", 1) + "/ws",  # https -> wss
        token_provider=token,  # awaited before every connection attempt
        backoff=Backoff(min_delay=0.5, max_delay=30.0, factor=2.0),
        max_unauthorized=3,  # then UnauthorizedError: the login itself is broken
        queue_size=100,  # messages sent while offline wait here (oldest dropped first)
        on_connect=lambda: logger.info("connected"),
        on_disconnect=on_disconnect,
        on_resync=lambda envelope: logger.info("server asked for a resync"),
    )


async def chat(
    client: WebSocketClient, room: str, text: str, *, messages: int = 1
) -> list[WSEnvelope]:
    """Join ``room``, say ``text`` and return the first ``messages`` chat messages seen."""
    await client.subscribe(f"room:{room}")  # sent again after every reconnect
    ack = await client.request("chat.send", {"room": room, "text": text}, timeout=10)
    logger.info("%s: delivered to %s sockets", ack.type, ack.data.get("delivered"))
    seen: list[WSEnvelope] = []
    async for envelope in client:  # application envelopes only: no hello, ping or pong
        if envelope.type == "chat.message":
            seen.append(envelope)
            if len(seen) >= messages:
                break
    return seen


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Chat with the tempest_ws demo.")
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--name", default="python")
    parser.add_argument("--room", default="lobby")
    parser.add_argument("--say", default="hello from Python")
    parser.add_argument("--count", type=int, default=3, help="messages to wait for")
    args = parser.parse_args(argv)
    async with build_client(args.url, args.name) as client:
        for message in await chat(client, args.room, args.say, messages=args.count):
            logger.info("[%s] %s", message.data["from"], message.data["text"])


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(main())
