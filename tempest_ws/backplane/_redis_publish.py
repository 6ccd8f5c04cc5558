"""The publishing side of [`RedisBackplane`][tempest_ws.backplane.RedisBackplane].

Packets reach Redis in call order, each one ``PUBLISH`` (``SPUBLISH`` on a cluster),
never retried: a failure is an error to the caller
([`BackplaneError`][tempest_ws.exceptions.BackplaneError]), never a duplicate.

On a standalone server, a publish made while none is waiting or in flight, after a round
that carried one publish alone (a sequential publisher's case), is sent by its caller,
in its own step, on a kept connection
([`KeptConnection`][tempest_ws.backplane._redis_rounds.KeptConnection]): its write
reaches the socket before the connection writers its fan-out just woke run, and Redis
answers meanwhile. Other publishes wait in the queue; one task sends them, pipelining
whatever accumulated while the previous round was in flight (concurrent publishers keep
batching: one of them sending alone would split each batch in two round trips).
On a cluster every publish goes through the queue and the cluster client.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from tempest_ws._bounded import cancel_tasks, lost_cancellation
from tempest_ws.backplane._redis_link import describe
from tempest_ws.backplane._redis_rounds import KeptConnection, packed
from tempest_ws.exceptions import BackplaneError

__all__ = ["Publishing"]

logger = logging.getLogger("tempest_ws.backplane")

MAX_BATCH = 512
ERRORS = (RedisError, OSError, TimeoutError)

Queued = tuple[bytes, bytes, "asyncio.Future[int]"]
"""A packet waiting: its Redis channel, the packet, the caller's future."""


class Publishing:
    """Publishes on one client, in call order (see the module docstring).

    Args:
        client: the backplane's command client.
        timeout: twice this bounds each publish (and batch): a connection, then the
            command, in seconds.
        max_pending: publishes queued before ``publish`` raises at once.
    """

    def __init__(self, client: Redis | RedisCluster, *, timeout: float, max_pending: int) -> None:
        self._client = client
        self._command = b"SPUBLISH" if isinstance(client, RedisCluster) else b"PUBLISH"
        self.timeout = timeout
        self.max_pending = max_pending
        self._kept = KeptConnection()
        self._queue: deque[Queued] = deque()
        self._batch: list[Queued] = []  # in flight: failed too if the task fails
        self._has_packets = asyncio.Event()
        self._sending = False  # a batch, or a publish sent by its caller, is in flight
        # The last round carried one publish and none came meanwhile: the caller is alone.
        self._alone = True
        self._task = asyncio.create_task(self._loop(), name="tempest_ws publisher")

    async def publish(self, channel: str, packet: bytes) -> int:
        """Publish ``packet`` on the Redis channel ``channel``; return the subscriber
        count Redis reported.

        Raises:
            BackplaneError: ``max_pending`` packets already waiting (at once), or Redis
                failed or did not answer within ``timeout`` (the packet may be lost, it
                is never sent twice).
        """
        queue = self._queue
        client = self._client
        if self._sending or queue or not self._alone or not isinstance(client, Redis):
            if self._task.done():
                raise BackplaneError("redis publisher stopped")
            if len(queue) >= self.max_pending:
                raise BackplaneError(f"{len(queue)} publishes already waiting for redis")
            done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            queue.append((channel.encode(), packet, done))
            self._has_packets.set()
            return await done
        self._sending = True
        try:
            async with asyncio.timeout(self.timeout * 2):  # a connection, then the command
                (reply,) = await self._kept.round(
                    client, [packed([self._command, channel.encode(), packet])]
                )
        except ERRORS as exc:
            logger.warning("publish failed (%s)", describe(exc))
            raise BackplaneError(f"redis publish failed ({describe(exc)})") from exc
        finally:
            self._sending = False
            if queue:  # queued meanwhile: their turn, and batches from now on
                self._alone = False
                self._has_packets.set()
        if isinstance(reply, Exception):
            raise BackplaneError(f"redis publish failed ({describe(reply)})")
        return int(reply)

    async def stop(self, limit: float) -> None:
        """Stop the task (bounded by ``limit``) and fail every publish still queued."""
        await cancel_tasks([self._task], "redis publisher", limit=limit)
        self._fail(BackplaneError("redis backplane stopped"))
        self._kept.forget()

    def _fail(self, error: BackplaneError) -> None:
        for _, _, done in self._batch:
            if not done.done():
                done.set_exception(error)
        self._batch = []
        while self._queue:
            _, _, done = self._queue.popleft()
            if not done.done():
                done.set_exception(error)

    async def _loop(self) -> None:
        try:
            await self._send_queued()
        except Exception:  # the task boundary: no caller may wait forever on a bug
            logger.exception("redis publisher failed")
            self._fail(BackplaneError("redis publish failed (internal error)"))

    async def _send_queued(self) -> None:
        queue = self._queue
        while True:
            lost_cancellation()
            await self._has_packets.wait()
            self._has_packets.clear()
            while queue and not self._sending:  # else woken when that one is answered
                batch = self._batch = [queue.popleft() for _ in range(min(len(queue), MAX_BATCH))]
                self._sending = True
                try:
                    async with asyncio.timeout(self.timeout * 2):
                        replies = await self._send(batch)
                except ERRORS as exc:
                    logger.warning("publish of %d packets failed (%s)", len(batch), describe(exc))
                    error = BackplaneError(f"redis publish failed ({describe(exc)})")
                    for _, _, done in batch:
                        if not done.done():
                            done.set_exception(error)
                    continue
                finally:
                    self._sending = False
                    self._alone = len(batch) == 1 and not queue
                for (_, _, done), reply in zip(batch, replies, strict=True):
                    if done.done():
                        continue
                    if isinstance(reply, Exception):
                        done.set_exception(
                            BackplaneError(f"redis publish failed ({describe(reply)})")
                        )
                    else:
                        done.set_result(int(reply))
                self._batch = []

    async def _send(self, batch: list[Queued]) -> list[Any]:
        client = self._client
        if isinstance(client, Redis):
            command = self._command
            return await self._kept.round(
                client, [packed([command, channel, packet]) for channel, packet, _ in batch]
            )
        pipe = client.pipeline(transaction=False)
        for channel, packet, _ in batch:  # the cluster client routes by the command's name
            pipe.execute_command("SPUBLISH", channel.decode(), packet)
        return list(await pipe.execute())
