"""Liveness decisions and the shared heartbeat wheel, with an injected clock and timer."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tempest_ws.router._heartbeat import MAX_TICK, HeartbeatAction, HeartbeatWheel, Liveness


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
            state.pinged(float(now))


def test_timeout_wins_over_ping() -> None:
    state = Liveness.starting_at(0.0, interval=10, timeout=25)
    assert state.check(30) is HeartbeatAction.TIMEOUT


def test_a_late_ping_keeps_the_cadence_and_a_very_late_one_restarts_it() -> None:
    state = Liveness.starting_at(0.0, interval=10, timeout=100)
    state.pinged(13.0)  # due at 10, sent 3 late: the next one is still due at 20
    assert state.last_ping == 10
    assert state.next_deadline() == 20
    state.pinged(45.0)  # due at 20, more than an interval late: no catch-up burst
    assert state.last_ping == 45


class FakeTimer:
    """``call_at`` on a hand-driven clock: at most one pending call is expected."""

    def __init__(self) -> None:
        self.now = 0.0
        self.pending: list[tuple[float, Callable[[], None]]] = []
        self.armed = 0

    def call_at(self, when: float, callback: Callable[[], None]) -> FakeTimer.Handle:
        entry = (when, callback)
        self.pending.append(entry)
        self.armed += 1
        return FakeTimer.Handle(self, entry)

    def run_until(self, end: float) -> None:
        """Advance the clock to ``end``, firing every call that falls due on the way."""
        while self.pending:
            when, callback = min(self.pending, key=lambda e: e[0])
            if when > end:
                break
            self.pending.remove((when, callback))
            self.now = max(self.now, when)
            callback()
        self.now = end

    class Handle:
        def __init__(self, timer: FakeTimer, entry: tuple[float, Callable[[], None]]) -> None:
            self.timer, self.entry = timer, entry

        def cancel(self) -> None:
            if self.entry in self.timer.pending:
                self.timer.pending.remove(self.entry)


def make_wheel(
    timer: FakeTimer, *, interval: float = 1.0, timeout: float = 3.0, busy: set[str] | None = None
) -> tuple[HeartbeatWheel[str], dict[str, list[float]], dict[str, float]]:
    pings: dict[str, list[float]] = {}
    timeouts: dict[str, float] = {}
    wheel: HeartbeatWheel[str] = HeartbeatWheel(
        interval=interval,
        timeout=timeout,
        on_ping=lambda owner: pings.setdefault(owner, []).append(timer.now),
        on_timeout=lambda owner: timeouts.setdefault(owner, timer.now),
        is_busy=lambda owner: owner in (busy or set()),
        clock=lambda: timer.now,
        call_at=timer.call_at,
    )
    return wheel, pings, timeouts


def test_one_timer_pings_every_owner_on_a_fixed_cadence_and_times_out_the_silent() -> None:
    timer = FakeTimer()
    wheel, pings, timeouts = make_wheel(timer)
    beats = {}
    for i in range(100):
        timer.now = i * 0.0037  # connections arrive spread over a third of a second
        beats[f"c{i}"] = wheel.add(f"c{i}")
    assert len(timer.pending) == 1  # one timer for all of them
    for step in range(1, 321):  # 3.2 s: everyone but c0 answers its pings at once
        timer.run_until(step * 0.01)
        for owner, times in pings.items():
            if owner != "c0" and times and times[-1] >= timer.now - 0.01:
                beats[owner].touch()
    assert set(timeouts) == {"c0"}
    # Silent since 0.0: closed within one tick after its 3 s deadline.
    assert 3.0 <= timeouts["c0"] <= 3.0 + wheel.tick + 1e-9
    for owner, times in pings.items():
        start = int(owner[1:]) * 0.0037
        for k, at in enumerate(times, start=1):
            assert start + k <= at + 1e-9 <= start + k + wheel.tick + 1e-9
    assert wheel.tick == MAX_TICK


def test_a_stalled_loop_is_not_taken_for_silent_peers() -> None:
    """The loop is held for 5 s (a long garbage collection) with a 3 s timeout: nothing
    was read meanwhile, so nobody is closed at once; both get a ping, the one that
    answers stays, the silent one is closed 3 s after the stall."""
    timer = FakeTimer()
    wheel, pings, timeouts = make_wheel(timer)  # ping every 1 s, timeout 3 s
    alive = wheel.add("alive")
    wheel.add("dead")
    timer.run_until(0.5)
    timer.now = 5.5  # the stall: the timer due at 1.0 fires only now
    timer.run_until(5.5)
    assert timeouts == {}
    assert pings == {"alive": [5.5], "dead": [5.5]}
    timer.run_until(5.6)
    alive.touch()  # its pong, read once the loop runs again
    for step in range(57, 121):
        timer.run_until(step / 10)
        if pings["alive"][-1] >= timer.now - 0.1:
            alive.touch()
    assert set(timeouts) == {"dead"}
    # Silent since the start, 4.5 s of which the loop was held: closed at 4.5 + 3.
    assert 7.5 <= timeouts["dead"] <= 7.5 + wheel.tick + 1e-9


def test_busy_owner_counts_as_alive_and_stop_cancels() -> None:
    timer = FakeTimer()
    wheel, pings, timeouts = make_wheel(timer, interval=0.02, timeout=0.05, busy={"slow"})
    beat = wheel.add("slow")
    timer.run_until(1.0)
    assert len(pings["slow"]) >= 40
    assert not timeouts
    beat.stop()
    beat.stop()
    assert len(wheel) == 0
    assert timer.pending == []  # no owner left: the timer is gone
    timer.run_until(2.0)
    assert len(pings["slow"]) < 51


def test_stopping_one_owner_leaves_the_others_and_frees_it() -> None:
    timer = FakeTimer()
    wheel, pings, _ = make_wheel(timer)
    a, b = wheel.add("a"), wheel.add("b")
    a.stop()
    assert a.owner is None  # the wheel keeps no reference to a stopped owner
    timer.run_until(1.5)
    assert list(pings) == ["b"]
    b.stop()
    assert timer.pending == []


def test_a_failing_callback_does_not_starve_the_bucket(caplog: pytest.LogCaptureFixture) -> None:
    timer = FakeTimer()
    seen: list[str] = []

    def on_ping(owner: str) -> None:
        if owner == "bad":
            raise RuntimeError("boom")
        seen.append(owner)

    wheel: HeartbeatWheel[str] = HeartbeatWheel(
        interval=1.0,
        timeout=3.0,
        on_ping=on_ping,
        on_timeout=lambda _: None,
        clock=lambda: timer.now,
        call_at=timer.call_at,
    )
    wheel.add("bad")
    wheel.add("good")
    timer.run_until(2.5)
    assert seen == ["good", "good"]
    assert "heartbeat callback failed" in caplog.text
