"""Commands written and answered on one kept Redis connection, in the caller's own step.

A publish (and a history append) is awaited by its caller, so what one round trip costs
in Python is on that caller's path.
[`KeptConnection`][tempest_ws.backplane._redis_rounds.KeptConnection] packs the commands
of a round here, writes them in one call and reads one reply per command, on a
connection it takes once from the client's pool and keeps.

The kept connection has no socket timeout of its own: redis-py runs each write under a
socket timeout in a new task (``asyncio.wait_for``), which puts the write behind
everything the event loop already has scheduled, such as the connection writers a
fan-out just woke. Without it the command reaches the socket before the caller yields,
so Redis works while those writers run. Callers bound each round themselves
(``asyncio.timeout``); a round cut short leaves the connection closed by redis-py, and the
next round connects again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ResponseError

__all__ = ["KeptConnection", "packed"]


def packed(args: Sequence[bytes]) -> bytes:
    """One command in the Redis protocol (RESP2): ``args`` as an array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        parts += (b"$%d\r\n" % len(arg), arg, b"\r\n")
    return b"".join(parts)


class KeptConnection:
    """One connection of a client's pool, kept for rounds of packed commands."""

    def __init__(self) -> None:
        self._client: Redis | None = None
        self._connection: AbstractConnection | None = None

    async def round(self, client: Redis, commands: list[bytes]) -> list[Any]:
        """Write ``commands`` (packed) in one call; return one reply per command, or the
        `ResponseError` Redis answered it with.

        Raises:
            RedisError, OSError: the connection failed (redis-py closed it).
        """
        connection = self._connection
        if connection is None or self._client is not client:  # a new client: a new pool
            connection = await client.connection_pool.get_connection()  # type: ignore[no-untyped-call]
            connection.socket_timeout = None  # see the module docstring
            self._client, self._connection = client, connection
        await connection.send_packed_command(commands[0] if len(commands) == 1 else commands)
        replies: list[Any] = []
        for _ in commands:
            try:
                replies.append(await connection.read_response())
            except ResponseError as exc:  # this command's error; the connection is fine
                replies.append(exc)
        return replies

    def forget(self) -> None:
        """Drop the kept connection (its pool is being closed with its client)."""
        self._client = self._connection = None
