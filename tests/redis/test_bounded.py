"""Stops never hang: a task that will not end, a collaborator whose ``stop``/``aclose``
never returns, a Redis server frozen with SIGSTOP. Each stop returns, and a WARNING on
``tempest_ws.shutdown`` names what it abandoned."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal

import pytest

from tempest_ws import WebSocketHub, allow_any_topic
from tempest_ws._bounded import bounded, cancel_tasks, lost_cancellation
from tempest_ws.backplane import InMemoryBackplane
from tempest_ws.history import HistoryPolicy, MemoryHistory
from tests.helpers.backplane_nodes import redis_backplane
from tests.helpers.redis_server import RedisServer
from tests.helpers.support import Peer, until

GUARD = 30.0  # the test fails, rather than hangs, if a stop is not bounded after all


class Stubborn:
    """Work that ignores ``cancel()`` until `release()` (as redis-py's uncancellable
    ``PubSub.aclose`` or a cancellation lost by ``asyncio.wait_for`` do)."""

    def __init__(self) -> None:
        self.released = asyncio.Event()
        self.cancels = 0

    def release(self) -> None:
        self.released.set()

    async def wait(self) -> None:
        while not self.released.is_set():
            try:
                await self.released.wait()
            except asyncio.CancelledError:
                self.cancels += 1  # swallowed: carry on waiting


class FrozenBackplane(InMemoryBackplane):
    """An in-memory backplane whose ``stop`` never returns on its own."""

    def __init__(self) -> None:
        super().__init__()
        self.frozen = Stubborn()

    async def stop(self) -> None:
        await self.frozen.wait()
        await super().stop()


class FrozenHistory(MemoryHistory):
    """A history store whose ``aclose`` never returns on its own."""

    def __init__(self, policy: HistoryPolicy) -> None:
        super().__init__(policy)
        self.frozen = Stubborn()

    async def aclose(self) -> None:
        await self.frozen.wait()


def abandoned(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "tempest_ws.shutdown" and r.levelno == logging.WARNING
    ]


async def others_done() -> None:
    """Wait until every task but this one has ended (abandoned work included)."""
    me = asyncio.current_task()
    await until(lambda: all(t is me or t.done() for t in asyncio.all_tasks()), 10)


async def test_bounded_returns_the_result_or_raises_what_the_work_raised() -> None:
    async def answer() -> int:
        return 42

    async def fail() -> None:
        raise ValueError("boom")

    assert await bounded(answer(), "an answer", limit=5) == 42
    with pytest.raises(ValueError, match="boom"):
        await bounded(fail(), "a failure", limit=5)


async def test_bounded_abandons_work_that_ignores_cancellation_and_names_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stubborn = Stubborn()
    try:
        async with asyncio.timeout(GUARD):
            assert await bounded(stubborn.wait(), "the stubborn close", limit=0.05) is None
        assert stubborn.cancels == 0  # left to finish on its own
        messages = abandoned(caplog)
        assert len(messages) == 1, messages
        assert "abandoned the stubborn close" in messages[0]
    finally:
        stubborn.release()
    await others_done()


async def test_cancel_tasks_abandons_a_task_that_keeps_running_and_names_the_task(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stubborn = Stubborn()
    task = asyncio.create_task(stubborn.wait(), name="stubborn worker")
    obedient = asyncio.create_task(asyncio.Event().wait(), name="obedient worker")
    await asyncio.sleep(0)  # both are waiting
    try:
        async with asyncio.timeout(GUARD):
            await cancel_tasks([task, obedient, None], "test task", limit=0.05)
        assert obedient.cancelled()
        assert not task.done()
        messages = abandoned(caplog)
        assert len(messages) == 1, messages
        assert "test task (stubborn worker)" in messages[0]
    finally:
        stubborn.release()
    await others_done()


async def test_a_loop_whose_cancellation_was_lost_ends_at_its_next_turn() -> None:
    turns = 0

    async def swallowing_write() -> None:
        # What asyncio.wait_for on Python 3.11 can do when the cancel arrives as the
        # awaited write completes: the caller sees a normal return.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(3600)

    async def loop() -> None:
        nonlocal turns
        while True:
            lost_cancellation()
            turns += 1
            await swallowing_write()

    task = asyncio.create_task(loop())
    await until(lambda: turns == 1)
    task.cancel()
    async with asyncio.timeout(GUARD):
        await asyncio.wait({task})
    assert task.cancelled()
    assert turns == 1  # no second turn


async def test_a_hub_whose_backplane_never_stops_still_stops(
    caplog: pytest.LogCaptureFixture,
) -> None:
    backplane = FrozenBackplane()
    hub = WebSocketHub(backplane=backplane, stop_timeout=0.1)
    await hub.start()
    connection = hub.create_connection("ann", send=Peer().send)
    await hub.register(connection)
    connection.start()
    try:
        async with asyncio.timeout(GUARD):
            await hub.stop()
        assert connection.close_code is not None
        assert hub.stats().connections == 0
        messages = abandoned(caplog)
        assert len(messages) == 1, messages
        assert "FrozenBackplane.stop" in messages[0]
    finally:
        backplane.frozen.release()
    await others_done()


async def test_a_hub_whose_history_store_never_closes_still_stops(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FrozenHistory(HistoryPolicy(topics=("chat:*",)))
    hub = WebSocketHub(history=store, topic_authorizer=allow_any_topic, stop_timeout=0.1)
    await hub.start()
    try:
        async with asyncio.timeout(GUARD):
            await hub.stop()
        messages = abandoned(caplog)
        assert len(messages) == 1, messages
        assert "FrozenHistory.aclose" in messages[0]
    finally:
        store.frozen.release()
    await others_done()


@pytest.mark.redis
async def test_a_hub_on_a_frozen_redis_stops_and_names_the_backplane_it_abandoned(
    redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    # The node's removal from presence waits for Redis's reply up to the command
    # timeout (1 s); the hub gives the backplane 0.1 s.
    hub = WebSocketHub(
        backplane=redis_backplane(redis.url),
        presence=True,
        topic_authorizer=allow_any_topic,
        stop_timeout=0.1,
    )
    await hub.start()
    connection = hub.create_connection("ann", send=Peer().send)
    await hub.register(connection)
    connection.start()
    assert await hub.subscribe(connection.connection_id, "room")
    assert redis.process is not None
    os.kill(redis.process.pid, signal.SIGSTOP)  # sockets stay open, nothing answers
    try:
        async with asyncio.timeout(GUARD):
            await hub.stop()
    finally:
        os.kill(redis.process.pid, signal.SIGCONT)
    assert connection.close_code is not None
    # Usually the node's removal is still waiting on the frozen Redis and is abandoned,
    # named; on a starved machine the link may already be marked down, so nothing waits.
    # Either way stop() returned within GUARD, and whatever was left is named.
    messages = abandoned(caplog)
    assert all("RedisBackplane.stop" in m or "presence" in m for m in messages), messages
    await others_done()  # the abandoned stop finishes on its own once Redis answers
