"""The life of one accepted connection: read, guard, run the handler, clean up.

The session owns reading. One loop takes every inbound frame from the server, counts it
as proof of life, enforces the size limit, answers and swallows heartbeat envelopes,
rejects malformed frames with an error envelope, and hands the rest to the handler
through a bounded inbox. Because reading never depends on the handler, a handler that
only pushes still has its client's pongs seen, and a peer that vanishes is noticed at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass
from typing import Any

from starlette.websockets import WebSocketDisconnect

from ._types import Message, Receive, Send
from .codes import CloseCode
from .connection import WebSocketConnection
from .envelope import PING, PONG, decode_envelope, encode_envelope, error_envelope
from .exceptions import EnvelopeError
from .heartbeat import HeartbeatTimer

logger = logging.getLogger("tempest_ws.session")

INBOX_SIZE = 64


@dataclass(frozen=True, slots=True)
class SessionLimits:
    """Inbound limits the session enforces."""

    max_message_bytes: int
    accept_binary: bool
    max_invalid_frames: int
    heartbeat_seconds: float
    heartbeat_timeout: float


def _disconnect(code: int) -> Message:
    return {"type": "websocket.disconnect", "code": code}


def _frame_size(message: Message) -> int:
    text = message.get("text")
    if text is not None:
        # len(text) <= UTF-8 length <= 4 * len(text): encode only when it could matter.
        return len(text) if len(text) * 4 <= 1 << 16 else len(text.encode())
    data = message.get("bytes")
    return len(data) if data is not None else 0


class HandlerChannel:
    """The ASGI ``receive``/``send`` pair behind the ``WebSocket`` given to the handler.

    Until :meth:`attach` it passes the handshake through to the server. After it,
    ``receive`` reads the session's inbox and ``send`` routes a close through the
    connection, so the handler's ``ws.close(code)`` and a server-side close are the same
    single, idempotent operation.
    """

    def __init__(self, receive: Receive, send: Send) -> None:
        self._raw_receive = receive
        self._raw_send = send
        self._connection: WebSocketConnection | None = None
        self._inbox: deque[Message] = deque()
        self._has_mail = asyncio.Event()
        self._has_room = asyncio.Event()
        self._has_room.set()

    def attach(self, connection: WebSocketConnection) -> None:
        """Switch from handshake pass-through to the guarded session."""
        self._connection = connection

    @property
    def backlog(self) -> int:
        """Frames read from the socket and not yet taken by the handler."""
        return len(self._inbox)

    async def receive(self) -> Message:
        """Next frame for the handler, or a disconnect message once the connection closed."""
        connection = self._connection
        if connection is None:
            return await self._raw_receive()
        while not self._inbox:
            if connection.closing:
                return _disconnect(connection.close_code or CloseCode.ABNORMAL)
            self._has_mail.clear()
            waiter = asyncio.ensure_future(self._has_mail.wait())
            watched: set[asyncio.Future[Any]] = {waiter, connection.closing_future()}
            await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
        message = self._inbox.popleft()
        if len(self._inbox) < INBOX_SIZE:
            self._has_room.set()
        return message

    async def send(self, message: Message) -> None:
        """Send for the handler; a close goes through the connection."""
        connection = self._connection
        if connection is None:
            await self._raw_send(message)
            return
        if message["type"] == "websocket.close":
            await connection.close(
                message.get("code", CloseCode.NORMAL), message.get("reason") or ""
            )
            return
        if connection.closing:
            raise WebSocketDisconnect(connection.close_code or CloseCode.ABNORMAL)
        await self._raw_send(message)

    async def deliver(self, message: Message) -> None:
        """Put a frame in the inbox, waiting while the handler is ``INBOX_SIZE`` behind."""
        while len(self._inbox) >= INBOX_SIZE:
            self._has_room.clear()
            await self._has_room.wait()
        self._inbox.append(message)
        self._has_mail.set()

    async def read_loop(
        self, connection: WebSocketConnection, heartbeat: HeartbeatTimer, limits: SessionLimits
    ) -> None:
        """Read until the peer leaves or the connection closes; guard every frame."""
        closing = connection.closing_future()
        invalid = 0
        while True:
            receiving = asyncio.ensure_future(self._raw_receive())
            watched: set[asyncio.Future[Any]] = {receiving, closing}
            await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
            if not receiving.done():
                receiving.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await receiving
                return
            message = receiving.result()
            kind = message["type"]
            if kind == "websocket.disconnect":
                connection.peer_closed(int(message.get("code", CloseCode.NO_STATUS)))
                return
            if kind != "websocket.receive":
                continue
            heartbeat.touch()
            size = _frame_size(message)
            if size > limits.max_message_bytes:
                logger.warning(
                    "connection %s sent %d bytes (limit %d); closing",
                    connection.connection_id,
                    size,
                    limits.max_message_bytes,
                )
                connection.close_soon(CloseCode.MESSAGE_TOO_BIG, "message too big")
                return
            problem = self._inspect(connection, message, limits)
            if problem is None:
                await self.deliver(message)
                continue
            if problem == "":
                continue  # a heartbeat envelope, answered here
            invalid += 1
            if invalid >= limits.max_invalid_frames:
                logger.warning(
                    "connection %s sent %d invalid frames; closing",
                    connection.connection_id,
                    invalid,
                )
                connection.close_soon(CloseCode.POLICY_VIOLATION, "too many invalid frames")
                return

    def _inspect(
        self, connection: WebSocketConnection, message: Message, limits: SessionLimits
    ) -> str | None:
        """``None``: hand to the handler; ``""``: swallowed; else the error code sent back."""
        text = message.get("text")
        if text is None:
            if limits.accept_binary:
                return None
            return self._reject(connection, "binary_not_supported", "send JSON text frames")
        try:
            envelope = decode_envelope(text)
        except EnvelopeError as exc:
            return self._reject(connection, str(exc.code), exc.reason)
        if envelope.type == PONG:
            return ""
        if envelope.type == PING:
            reply: dict[str, object] = {"type": PONG, "data": {}, "request_id": envelope.request_id}
            connection.enqueue(encode_envelope(reply))
            return ""
        return None

    @staticmethod
    def _reject(connection: WebSocketConnection, code: str, reason: str) -> str:
        logger.warning("connection %s sent an invalid frame: %s", connection.connection_id, code)
        connection.enqueue(error_envelope(code, reason))
        return code
