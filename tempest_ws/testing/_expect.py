"""Waiting for what a server sends: the next envelope of a type, or the close code.

`expect_envelope()` and `expect_close()` take a
[`LiveClient`][tempest_ws.testing.LiveClient] or a ``websockets`` client connection.
Each wait is bounded in time and in frames, so a regression fails instead of hanging.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Final, Protocol

from tempest_ws.exceptions import EnvelopeError
from tempest_ws.testing._probe import DEFAULT_TIMEOUT
from tempest_ws.wire.envelope import PING, PONG, WSEnvelope, decode_envelope, encode_envelope

__all__ = ["Socket", "expect_close", "expect_envelope"]

_MAX_FRAMES: Final = 10_000


class Socket(Protocol):
    """What the waits read from and answer pings on."""

    async def recv(self) -> str | bytes:
        """The next frame."""
        ...

    async def send(self, message: str) -> None:
        """Send one text frame."""
        ...


def _closed_types() -> tuple[type[BaseException], ...]:
    from websockets.exceptions import ConnectionClosed

    return (ConnectionClosed,)


def _close_of(exc: BaseException) -> str:
    received = getattr(exc, "rcvd", None)
    if received is None:
        return "without a close frame"
    return f"with {received.code} {received.reason!r}"


async def expect_envelope(
    ws: Socket,
    message_type: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109
    skip_others: bool = False,
    answer_pings: bool = True,
) -> WSEnvelope:
    """Read from ``ws`` until a ``message_type`` envelope arrives; return it.

    Heartbeat ``ping`` envelopes are skipped (and answered with a ``pong`` echoing their
    ``request_id`` unless ``answer_pings`` is false) unless ``message_type`` is ``ping``.
    Any other type fails the test, unless ``skip_others``. ``ws`` is a
    `LiveClient` or a ``websockets`` client connection.

    Raises:
        AssertionError: nothing matching within ``timeout`` seconds, the connection
            closed first (the message gives its close code), or an unexpected type came.
    """
    closed = _closed_types()
    try:
        async with asyncio.timeout(timeout):
            for _ in range(_MAX_FRAMES):
                envelope = decode_envelope(await ws.recv())
                if envelope.type == message_type:
                    return envelope
                if envelope.type == PING:
                    if answer_pings:
                        pong: dict[str, Any] = {
                            "type": PONG,
                            "data": {},
                            "request_id": envelope.request_id,
                        }
                        await ws.send(encode_envelope(pong))
                    continue
                if not skip_others:
                    raise AssertionError(
                        f"expected a {message_type!r} envelope, got {envelope.type!r}: "
                        f"{json.dumps(envelope.data)[:200]}"
                    )
    except TimeoutError:
        raise AssertionError(f"no {message_type!r} envelope within {timeout} s") from None
    except EnvelopeError as exc:
        raise AssertionError(f"the server sent a frame that is not an envelope: {exc}") from None
    except closed as exc:
        raise AssertionError(
            f"connection closed {_close_of(exc)} before a {message_type!r} envelope"
        ) from None
    raise AssertionError(f"no {message_type!r} envelope in {_MAX_FRAMES} frames")


async def expect_close(ws: Socket, *, timeout: float = DEFAULT_TIMEOUT) -> int:  # noqa: ASYNC109
    """Read (and drop) frames until the server closes; return the close code it sent.

    Raises:
        AssertionError: still open after ``timeout`` seconds, or the TCP connection
            dropped without a close frame.
    """
    closed = _closed_types()
    try:
        async with asyncio.timeout(timeout):
            for _ in range(_MAX_FRAMES):
                await ws.recv()
    except TimeoutError:
        raise AssertionError(f"connection still open after {timeout} s") from None
    except closed as exc:
        received = getattr(exc, "rcvd", None)
        if received is None:
            raise AssertionError("connection dropped without a close frame") from None
        return int(received.code)
    raise AssertionError(f"connection still open after {_MAX_FRAMES} frames")
