"""Liveness decisions with an injected clock, and the timer that drives them."""

from __future__ import annotations

import asyncio

from tempest_ws.heartbeat import HeartbeatAction, HeartbeatTimer, Liveness


def test_ping_then_timeout_on_a_silent_peer() -> None:
    state = Liveness.starting_at(100.0, interval=10, timeout=25)
    assert state.check(105) is HeartbeatAction.NOTHING
    assert state.next_deadline() == 110
    assert state.check(110) is HeartbeatAction.PING
    state.last_ping = 110
    assert state.next_deadline() == 120
    state.last_ping = 120
    # The deadline is the silence limit itself, not the next ping tick.
    assert state.next_deadline() == 125
    assert state.check(125) is HeartbeatAction.TIMEOUT


def test_inbound_frames_keep_it_alive() -> None:
    state = Liveness.starting_at(0.0, interval=10, timeout=25)
    for now in range(5, 200, 5):
        state.touch(float(now))
        assert state.check(float(now)) is not HeartbeatAction.TIMEOUT
        if state.check(float(now)) is HeartbeatAction.PING:
            state.last_ping = float(now)


def test_timeout_wins_over_ping() -> None:
    state = Liveness.starting_at(0.0, interval=10, timeout=25)
    assert state.check(30) is HeartbeatAction.TIMEOUT


async def test_timer_pings_and_times_out() -> None:
    pings = 0
    timed_out = asyncio.Event()

    def on_ping() -> None:
        nonlocal pings
        pings += 1

    timer = HeartbeatTimer(interval=0.02, timeout=0.15, on_ping=on_ping, on_timeout=timed_out.set)
    timer.start()
    await asyncio.wait_for(timed_out.wait(), 5)
    assert pings >= 2
    timer.stop()


async def test_busy_owner_counts_as_alive_and_stop_cancels() -> None:
    timed_out = asyncio.Event()
    pings = asyncio.Event()
    timer = HeartbeatTimer(
        interval=0.02,
        timeout=0.05,
        on_ping=pings.set,
        on_timeout=timed_out.set,
        is_busy=lambda: True,
    )
    timer.start()
    for _ in range(3):  # several timeouts' worth of pings without a timeout
        pings.clear()
        await asyncio.wait_for(pings.wait(), 5)
    assert not timed_out.is_set()
    timer.stop()
    timer.stop()
