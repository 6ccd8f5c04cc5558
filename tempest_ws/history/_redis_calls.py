"""The script calls of [`RedisHistory`][tempest_ws.history.redis.RedisHistory]'s appends.

[`ScriptCalls`][tempest_ws.history._redis_calls.ScriptCalls] sends a batch of ``EVALSHA``
calls of one script in one round on a kept connection
([`KeptConnection`][tempest_ws.backplane._redis_rounds.KeptConnection]): a sequential
publisher waits for every append, so what a call costs in Python is on its path, and
``execute_command`` and pipelines add, per call, the pool's lock, observability hooks and
retry wrappers, several times the packing and reading themselves.

Errors are redis-py's own: a connection that fails while writing or reading is closed
by it (and connected again by the next batch); a reply that is an error is that call's
result. Calls the server refused because its script cache was emptied (they did not
run) are sent again, in order, after loading the script on the same connection.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError, ResponseError

from tempest_ws.backplane._redis_rounds import KeptConnection, packed

__all__ = ["ScriptCalls"]

Call = tuple[tuple[bytes, bytes], list[bytes]]
"""One script call: its two keys, its arguments."""


class ScriptCalls:
    """``EVALSHA`` calls of ``script`` on one kept connection (see the module docstring).

    Args:
        script: the Lua script (loaded when the server does not know it).
        sha: its SHA1, hex, as bytes.
    """

    def __init__(self, script: str, sha: bytes) -> None:
        self._load = packed([b"SCRIPT", b"LOAD", script.encode()])
        self._head = [b"EVALSHA", sha, b"2"]
        self._kept = KeptConnection()

    async def call(self, client: Redis, calls: Sequence[Call]) -> list[Any]:
        """Send ``calls`` in one write; return one reply (or `ResponseError`) per call.

        Raises:
            RedisError, OSError: the connection failed (redis-py closed it).
        """
        head, kept = self._head, self._kept
        replies = await kept.round(client, [packed([*head, *k, *a]) for k, a in calls])
        again = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if again:
            (loaded,) = await kept.round(client, [self._load])
            if isinstance(loaded, ResponseError):
                raise loaded
            retried = [packed([*head, *calls[i][0], *calls[i][1]]) for i in again]
            for i, reply in zip(again, await kept.round(client, retried), strict=True):
                replies[i] = reply
        return replies

    def forget(self) -> None:
        """Drop the kept connection (its pool is being closed with its client)."""
        self._kept.forget()
