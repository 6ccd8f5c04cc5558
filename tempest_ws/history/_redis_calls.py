"""The script calls of [`RedisHistory`][tempest_ws.history.redis.RedisHistory]'s append task.

[`ScriptCalls`][tempest_ws.history._redis_calls.ScriptCalls] sends a batch of ``EVALSHA``
calls of one script on one connection it keeps from the client's pool, packed here in
one write, and reads one reply per call. A sequential publisher waits for every append,
so what a call costs in Python is on its path: ``execute_command`` and pipelines add, per
call, the pool's lock, observability hooks and retry wrappers, several times the
packing and reading themselves.

Errors are redis-py's own: a connection that fails while writing or reading is closed
by it (and connected again by the next batch); a reply that is an error is that call's
result. Calls the server refused because its script cache was emptied (they did not
run) are sent again, in order, after loading the script on the same connection.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import NoScriptError, ResponseError

__all__ = ["ScriptCalls", "packed"]

Call = tuple[tuple[bytes, bytes], list[bytes]]
"""One script call: its two keys, its arguments."""


def packed(args: Sequence[bytes]) -> bytes:
    """One command in the Redis protocol (RESP2): ``args`` as an array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        parts += (b"$%d\r\n" % len(arg), arg, b"\r\n")
    return b"".join(parts)


class ScriptCalls:
    """``EVALSHA`` calls of ``script`` on one kept connection (see the module docstring).

    Args:
        script: the Lua script (loaded when the server does not know it).
        sha: its SHA1, hex, as bytes.
    """

    def __init__(self, script: str, sha: bytes) -> None:
        self._load = packed([b"SCRIPT", b"LOAD", script.encode()])
        self._head = [b"EVALSHA", sha, b"2"]
        self._client: Redis | None = None
        self._connection: AbstractConnection | None = None

    async def call(self, client: Redis, calls: Sequence[Call]) -> list[Any]:
        """Send ``calls`` in one write; return one reply (or `ResponseError`) per call.

        Raises:
            RedisError, OSError: the connection failed (redis-py closed it).
        """
        connection = self._connection
        if connection is None or self._client is not client:  # a new client: a new pool
            connection = await client.connection_pool.get_connection()  # type: ignore[no-untyped-call]
            self._client, self._connection = client, connection
        head = self._head
        replies = await self._round(connection, [packed([*head, *k, *a]) for k, a in calls])
        again = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if again:
            (loaded,) = await self._round(connection, [self._load])
            if isinstance(loaded, ResponseError):
                raise loaded
            retried = [packed([*head, *calls[i][0], *calls[i][1]]) for i in again]
            for i, reply in zip(again, await self._round(connection, retried), strict=True):
                replies[i] = reply
        return replies

    def forget(self) -> None:
        """Drop the kept connection (its pool is being closed with its client)."""
        self._client = self._connection = None

    @staticmethod
    async def _round(connection: AbstractConnection, commands: list[bytes]) -> list[Any]:
        await connection.send_packed_command(commands[0] if len(commands) == 1 else commands)
        replies: list[Any] = []
        for _ in commands:
            try:
                replies.append(await connection.read_response())
            except ResponseError as exc:  # this call's error; the connection is fine
                replies.append(exc)
        return replies
