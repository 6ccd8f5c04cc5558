"""The client's reconnect logic without I/O: backoff delays, close-code policy, offline queue."""

from __future__ import annotations

import itertools
import logging
import random
import re
from pathlib import Path

import pytest

from tempest_ws import CloseCode, ConfigurationError
from tempest_ws.client import default_is_fatal
from tempest_ws.client._backoff import (
    Action,
    Backoff,
    Disconnect,
    OfflineQueue,
    ReconnectPolicy,
)
from tempest_ws.client._disconnect import retry_after
from tempest_ws.exceptions import SendQueueFullError


def take(backoff: Backoff, seed: int, count: int) -> list[float]:
    return list(itertools.islice(backoff.delays(random.Random(seed)), count))


def test_delays_are_bounded_and_follow_the_growing_ceiling() -> None:
    backoff = Backoff(min_delay=0.5, max_delay=8.0, factor=2.0)
    delays = take(backoff, seed=7, count=200)
    for attempt, delay in enumerate(delays):
        ceiling = min(8.0, 0.5 * 2.0 ** (attempt + 1))
        assert 0.5 <= delay <= ceiling
    assert max(delays) <= 8.0
    # Once the ceiling is reached the delays cover the whole range, not one value.
    tail = delays[10:]
    assert min(tail) < 2.0
    assert max(tail) > 6.0


def test_delays_are_jittered_and_reproducible_with_a_seed() -> None:
    backoff = Backoff(min_delay=1.0, max_delay=30.0, factor=2.0)
    assert take(backoff, seed=1, count=20) == take(backoff, seed=1, count=20)
    assert take(backoff, seed=1, count=20) != take(backoff, seed=2, count=20)
    firsts = {take(backoff, seed=seed, count=1)[0] for seed in range(50)}
    assert len(firsts) == 50  # the first delay is already random
    assert all(1.0 <= first <= 2.0 for first in firsts)
    assert len(set(take(backoff, seed=3, count=20))) == 20


def test_a_herd_of_clients_spreads_out() -> None:
    backoff = Backoff(min_delay=1.0, max_delay=30.0, factor=2.0)
    rng = random.Random(42)
    sixth = [list(itertools.islice(backoff.delays(rng), 6))[-1] for _ in range(200)]
    # 200 clients dropped together: the sixth retry is spread over [1, 30], not bunched.
    buckets = {int(delay // 5) for delay in sixth}
    assert buckets == {0, 1, 2, 3, 4, 5}


@pytest.mark.parametrize(
    "kwargs",
    [{"min_delay": 0}, {"min_delay": 2, "max_delay": 1}, {"factor": 0.5}],
)
def test_backoff_rejects_impossible_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigurationError):
        Backoff(**kwargs)


def policy(**kwargs: object) -> ReconnectPolicy:
    options: dict[str, object] = {
        "is_fatal": default_is_fatal,
        "backoff": Backoff(1.0, 10.0),
        "long_backoff": Backoff(50.0, 100.0),
        "rng": random.Random(0),
    }
    options.update(kwargs)
    return ReconnectPolicy(**options)  # type: ignore[arg-type]


def closed(code: int, **kwargs: object) -> Disconnect:
    return Disconnect(code=code, **kwargs)  # type: ignore[arg-type]


def test_user_close_stops_and_server_normal_close_reconnects() -> None:
    p = policy()
    assert p.decide(closed(CloseCode.NORMAL, by_user=True)).action is Action.STOP
    assert p.decide(closed(CloseCode.NORMAL)).action is Action.RECONNECT


@pytest.mark.parametrize(
    "code",
    [
        CloseCode.GOING_AWAY,
        CloseCode.ABNORMAL,
        CloseCode.INTERNAL_ERROR,
        CloseCode.HEARTBEAT_TIMEOUT,
        CloseCode.MESSAGE_TOO_BIG,
        4000,  # an application's own code
    ],
)
def test_transient_codes_reconnect_with_the_normal_backoff(code: int) -> None:
    decision = policy().decide(closed(code))
    assert decision.action is Action.RECONNECT
    assert 1.0 <= decision.delay <= 2.0


@pytest.mark.parametrize("code", [CloseCode.TOO_MANY_CONNECTIONS, CloseCode.TRY_AGAIN_LATER])
def test_busy_codes_wait_the_long_backoff(code: int) -> None:
    decision = policy().decide(closed(code))
    assert decision.action is Action.RECONNECT
    assert 50.0 <= decision.delay <= 100.0


def test_http_429_waits_the_long_backoff() -> None:
    decision = policy().decide(Disconnect(http_status=429, stage="connect"))
    assert decision.action is Action.RECONNECT
    assert decision.delay >= 50.0


@pytest.mark.parametrize(
    "code", [CloseCode.FORBIDDEN, CloseCode.POLICY_VIOLATION, CloseCode.UNSUPPORTED_DATA]
)
def test_codes_that_cannot_be_fixed_by_reconnecting_are_fatal(code: int) -> None:
    decision = policy().decide(closed(code))
    assert decision.action is Action.GIVE_UP
    assert CloseCode(code).name in decision.why


def test_is_fatal_hook_overrides_the_default() -> None:
    lenient = policy(is_fatal=lambda d: False)
    assert lenient.decide(closed(CloseCode.FORBIDDEN)).action is Action.RECONNECT
    strict = policy(is_fatal=lambda d: d.code == CloseCode.SERVICE_RESTART)
    assert strict.decide(closed(CloseCode.SERVICE_RESTART)).action is Action.GIVE_UP


def test_consecutive_unauthorized_give_up_after_the_limit() -> None:
    p = policy(max_unauthorized=3)
    assert p.decide(closed(CloseCode.UNAUTHORIZED)).action is Action.RECONNECT
    assert p.decide(closed(CloseCode.UNAUTHORIZED)).action is Action.RECONNECT
    final = p.decide(closed(CloseCode.UNAUTHORIZED))
    assert final.action is Action.GIVE_UP
    assert final.unauthorized
    assert "3 times" in final.why


def test_an_accepted_token_ends_the_unauthorized_streak() -> None:
    p = policy(max_unauthorized=2)
    assert p.decide(closed(CloseCode.UNAUTHORIZED)).action is Action.RECONNECT
    # The next connection got its hello (token accepted), then dropped.
    assert p.decide(closed(CloseCode.ABNORMAL, established=True)).action is Action.RECONNECT
    assert p.decide(closed(CloseCode.UNAUTHORIZED)).action is Action.RECONNECT
    assert p.decide(closed(CloseCode.UNAUTHORIZED)).action is Action.GIVE_UP
    # HTTP 401 at the handshake counts the same way.
    q = policy(max_unauthorized=1)
    assert q.decide(Disconnect(http_status=401, stage="connect")).unauthorized


def test_backoff_grows_until_a_connection_stays_up() -> None:
    p = policy(backoff=Backoff(1.0, 1000.0, 2.0), min_uptime=5.0)
    ceilings = []
    for attempt in range(6):
        delay = p.decide(closed(CloseCode.ABNORMAL, uptime=1.0)).delay
        ceilings.append(2.0 ** (attempt + 1))
        assert delay <= ceilings[-1]
    assert p.attempts == 6
    first_after_reset = p.decide(closed(CloseCode.ABNORMAL, uptime=60.0)).delay
    assert first_after_reset <= 2.0
    assert p.attempts == 1


def test_max_retries_gives_up() -> None:
    p = policy(max_retries=2)
    refused = Disconnect(error=ConnectionRefusedError(), stage="connect")
    assert p.decide(refused).action is Action.RECONNECT
    assert p.decide(refused).action is Action.RECONNECT
    decision = p.decide(refused)
    assert decision.action is Action.GIVE_UP
    assert "2 reconnect attempts" in decision.why


def test_default_is_fatal_for_handshake_errors() -> None:
    assert not default_is_fatal(Disconnect(error=ConnectionRefusedError(), stage="connect"))
    assert not default_is_fatal(Disconnect(error=TimeoutError(), stage="connect"))
    assert not default_is_fatal(Disconnect(error=RuntimeError("idp down"), stage="token"))
    assert default_is_fatal(Disconnect(error=ValueError("bad url"), stage="connect"))
    assert default_is_fatal(Disconnect(http_status=403, stage="connect"))
    assert default_is_fatal(Disconnect(http_status=404, stage="connect"))
    for status in (401, 429, 500, 502, 503, 504):
        assert not default_is_fatal(Disconnect(http_status=status, stage="connect"))


def test_disconnect_describe_names_the_code_without_secrets() -> None:
    assert closed(CloseCode.UNAUTHORIZED).describe() == "close 4401 (UNAUTHORIZED)"
    assert closed(4000).describe() == "close 4000 (unknown)"
    assert "HTTP 403" in Disconnect(http_status=403).describe()
    error = RuntimeError("secret-token-value")
    assert "secret" not in Disconnect(error=error, stage="token").describe()


def test_offline_queue_drops_the_oldest_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    queue: OfflineQueue[int] = OfflineQueue(3)
    with caplog.at_level(logging.WARNING, logger="tempest_ws.client"):
        for item in range(5):
            queue.put(item)
    assert [queue.pop() for _ in range(len(queue))] == [2, 3, 4]
    assert queue.dropped == 2
    assert sum("dropped the oldest" in r.getMessage() for r in caplog.records) == 2


def test_offline_queue_raise_mode_refuses_the_newest() -> None:
    queue: OfflineQueue[str] = OfflineQueue(2, "raise")
    queue.put("a")
    queue.put("b")
    with pytest.raises(SendQueueFullError):
        queue.put("c")
    assert queue.pop() == "a"
    queue.requeue("a")
    assert queue.discard("b")
    assert not queue.discard("zzz")
    assert queue.clear() == 1


def test_offline_queue_rejects_bad_settings() -> None:
    with pytest.raises(ConfigurationError):
        OfflineQueue(-1)
    with pytest.raises(ConfigurationError):
        OfflineQueue(1, "block")  # type: ignore[arg-type]


DOCS = Path(__file__).resolve().parents[2] / "docs" / "python-client.md"
POLICY_ROW = re.compile(r"^\| (\d{4}) \| `([A-Z_]+)` \| (.+) \|$", re.MULTILINE)


def test_docs_close_code_policy_table_matches_the_policy() -> None:
    rows = POLICY_ROW.findall(DOCS.read_text(encoding="utf-8"))
    assert [int(code) for code, _, _ in rows] == [code.value for code in CloseCode]
    for number, name, action in rows:
        code = CloseCode(int(number))
        assert name == code.name
        p = policy(max_unauthorized=2)
        decision = p.decide(closed(code))
        if action.startswith("give up"):
            assert decision.action is Action.GIVE_UP, code
        elif action.startswith("stop when you called `close()`"):
            assert decision.action is Action.RECONNECT, code
            assert p.decide(closed(code, by_user=True)).action is Action.STOP
        elif action.startswith("new token"):
            assert decision.action is Action.RECONNECT, code
            assert p.decide(closed(code)).unauthorized
        elif action == "reconnect, spread over `restart_spread`":
            assert decision.action is Action.RECONNECT, code
            assert decision.delay <= 5.0
        elif action == "reconnect after the long backoff":
            assert decision.action is Action.RECONNECT, code
            assert decision.delay >= 50.0
        else:
            assert action == "reconnect", code
            assert decision.action is Action.RECONNECT, code
            assert decision.delay <= 2.0


def test_a_retry_after_is_waited_at_least_and_capped_at_the_long_backoff() -> None:
    refused = Disconnect(http_status=503, stage="connect", retry_after=300.0)
    p = ReconnectPolicy(
        is_fatal=default_is_fatal,
        backoff=Backoff(0.5, 1.0),
        long_backoff=Backoff(0.5, 40.0),
        rng=random.Random(1),
    )
    assert p.decide(Disconnect(http_status=503, stage="connect", retry_after=7.0)).delay >= 7.0
    assert p.decide(refused).delay == 40.0  # never past long_backoff.max_delay


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("5", 5.0), (" 2.5 ", 2.5), ("-1", None), ("Wed, 21 Oct 2015 07:28:00 GMT", None)],
)
def test_retry_after_reads_seconds_only(header: str, seconds: float | None) -> None:
    assert retry_after({"Retry-After": header}) == seconds
    assert retry_after({}) is None


def test_a_service_restart_spreads_the_clients_over_the_restart_window() -> None:
    delays = [
        policy(rng=random.Random(seed)).decide(closed(CloseCode.SERVICE_RESTART)).delay
        for seed in range(400)
    ]
    assert all(1.0 <= d <= 5.0 for d in delays)  # never under the backoff's own delay
    assert {int(d) for d in delays} == {1, 2, 3, 4}  # spread over the window, not bunched
    plain = policy(restart_spread=0.0).decide(closed(CloseCode.SERVICE_RESTART))
    assert 1.0 <= plain.delay <= 2.0
    capped = policy(backoff=Backoff(0.1, 0.5), restart_spread=60.0)
    assert capped.decide(closed(CloseCode.SERVICE_RESTART)).delay <= 0.5
    with pytest.raises(ConfigurationError):
        policy(restart_spread=-1.0)
