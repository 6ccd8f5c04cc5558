"""Pure logic of the hardening layer: token bucket, client address, token lifetime.

No sockets and no sleeping: clocks are injected, resolvers are plain coroutines.
"""

from __future__ import annotations

import asyncio
import logging
import time

import jwt
import pytest

from tempest_ws import CloseCode
from tempest_ws.observe._audit import security_event
from tempest_ws.router._expiry import (
    TokenLifetime,
    refresh_token_of,
    seconds_left,
    token_expiry,
)
from tempest_ws.router._ratelimit import (
    AddressLimiter,
    TokenBucket,
    client_address,
    parse_trusted_proxies,
)
from tests.helpers.support import make_settings, token, until


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# -- token bucket ------------------------------------------------------------------------


def test_exactly_the_budget_for_three_windows_is_allowed() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10, 1.0, clock=clock)
    for _window in range(3):
        assert all(bucket.take() for _ in range(10))
        clock.now += 1.0
    assert all(bucket.take() for _ in range(10))


def test_spread_evenly_at_the_rate_is_allowed_forever() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10, 1.0, clock=clock)
    for _ in range(1000):
        clock.now += 0.1
        assert bucket.take()


def test_ten_times_the_budget_is_refused_past_the_budget() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10, 1.0, clock=clock)
    results = [bucket.take() for _ in range(100)]
    assert results == [True] * 10 + [False] * 90


def test_one_frame_over_the_budget_is_refused_and_the_bucket_refills() -> None:
    clock = FakeClock()
    bucket = TokenBucket(4, 2.0, clock=clock)
    assert all(bucket.take() for _ in range(4))
    assert not bucket.take()
    clock.now += 0.5  # 4 per 2 s: one token per half second
    assert bucket.take()
    assert not bucket.take()
    clock.now += 1000
    assert all(bucket.take() for _ in range(4))  # never more than the capacity
    assert not bucket.take()


def test_a_clock_going_backwards_grants_nothing() -> None:
    clock = FakeClock()
    bucket = TokenBucket(2, 1.0, clock=clock)
    assert bucket.take()
    assert bucket.take()
    clock.now -= 50
    assert not bucket.take()


def test_bucket_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="capacity"):
        TokenBucket(0, 1.0, clock=FakeClock())


# -- client address ----------------------------------------------------------------------


def test_forwarded_for_is_ignored_unless_the_peer_is_trusted() -> None:
    spoofed = {"x-forwarded-for": "203.0.113.7"}
    assert client_address("198.51.100.1", spoofed, parse_trusted_proxies([])) == "198.51.100.1"
    trusted = parse_trusted_proxies(["10.0.0.0/8"])
    assert client_address("198.51.100.1", spoofed, trusted) == "198.51.100.1"
    assert client_address("10.1.2.3", spoofed, trusted) == "203.0.113.7"


def test_forwarded_for_is_read_from_the_right_skipping_trusted_hops() -> None:
    trusted = parse_trusted_proxies(["10.0.0.0/8", "127.0.0.1"])
    # The client wrote "1.1.1.1" itself; the proxies appended the real hops.
    headers = {"x-forwarded-for": "1.1.1.1, 203.0.113.9, 10.0.0.5"}
    assert client_address("127.0.0.1", headers, trusted) == "203.0.113.9"


def test_garbage_in_forwarded_for_stops_the_walk() -> None:
    trusted = parse_trusted_proxies(["127.0.0.1"])
    assert client_address("127.0.0.1", {"x-forwarded-for": "evil, nonsense"}, trusted) == (
        "127.0.0.1"
    )
    assert client_address("127.0.0.1", {"x-forwarded-for": "[::1]:443"}, trusted) == "::1"
    assert client_address("127.0.0.1", {"x-forwarded-for": "10.9.8.7:5"}, trusted) == "10.9.8.7"


def test_star_trusts_every_peer_and_mapped_addresses_are_normalised() -> None:
    trusted = parse_trusted_proxies(["*"])
    assert trusted is None
    assert client_address("::ffff:127.0.0.1", {}, trusted) == "127.0.0.1"
    assert client_address(None, {}, trusted) == "unknown"


def test_trusted_proxies_setting_is_validated() -> None:
    assert make_settings(WS_TRUSTED_PROXIES="10.0.0.0/8, ::1").WS_TRUSTED_PROXIES == [
        "10.0.0.0/8",
        "::1",
    ]
    with pytest.raises(ValueError, match="not-an-ip"):
        make_settings(WS_TRUSTED_PROXIES="not-an-ip")


def test_address_limiter_counts_and_forgets() -> None:
    limiter = AddressLimiter(2)
    assert limiter.acquire("a")
    assert limiter.acquire("a")
    assert not limiter.acquire("a")
    assert limiter.acquire("b")
    limiter.release("a")
    assert limiter.acquire("a")
    for _ in range(5):
        limiter.release("a")
    limiter.release("b")
    assert limiter.counts == {}
    unlimited = AddressLimiter(0)
    assert all(unlimited.acquire("a") for _ in range(1000))


# -- token expiry ------------------------------------------------------------------------


def test_token_expiry_reads_exp_without_verifying() -> None:
    signed = token("alice", expires_in=120)
    exp = jwt.decode(signed, options={"verify_signature": False})["exp"]
    assert token_expiry(signed) == exp
    forged = jwt.encode({"sub": "a", "exp": 5}, "another-key-0123456789abcdef0123456789")
    assert token_expiry(forged) == 5  # not verified here: the resolver already did


@pytest.mark.parametrize(
    "claims",
    [{"sub": "a"}, {"sub": "a", "exp": "soon"}, {"sub": "a", "exp": True}, {"exp": None}],
)
def test_tokens_without_a_numeric_exp_never_expire(claims: dict[str, object]) -> None:
    assert token_expiry(jwt.encode(claims, "k" * 40)) is None


@pytest.mark.parametrize(
    ("exp", "expected"),
    [("1796587942", 1796587942.0), (" 42 ", 42.0), ("-5", -5.0), ("1_000", 1000.0)],
)
def test_a_numeric_string_exp_is_read_as_pyjwt_reads_it(exp: str, expected: float) -> None:
    assert token_expiry(jwt.encode({"sub": "a", "exp": exp}, "k" * 40)) == expected


def test_an_overlong_digit_string_exp_never_expires() -> None:
    assert token_expiry(jwt.encode({"sub": "a", "exp": "9" * 65}, "k" * 40)) is None


@pytest.mark.parametrize("opaque", ["", "opaque-session-id", "a.b.c", "x" * 5000])
def test_non_jwt_tokens_never_expire(opaque: str) -> None:
    assert token_expiry(opaque) is None


def test_seconds_left_and_refresh_token_parsing() -> None:
    assert seconds_left(100.0, leeway=5.0, now=90.0) == 15.0
    assert seconds_left(100.0, leeway=0.0, now=110.0) == -10.0
    assert refresh_token_of({"token": "t"}) == "t"
    for bad in (None, "t", [], {}, {"token": ""}, {"token": 5}, {"token": "x" * 20_000}):
        assert refresh_token_of(bad) is None


async def _lifetime(
    resolved: dict[str, str | None], expired: list[int], *, leeway: float = 0.0
) -> TokenLifetime:
    async def resolver(candidate: str) -> str | None:
        if candidate == "raise":
            raise RuntimeError("resolver bug")
        if candidate == "hang":
            await asyncio.Event().wait()
        return resolved.get(candidate)

    return TokenLifetime(
        user_key="alice",
        resolver=resolver,
        leeway=leeway,
        on_expired=lambda: expired.append(1),
        refresh_timeout=0.05,
    )


async def test_lifetime_fires_for_an_expired_token_and_not_for_opaque_ones() -> None:
    expired: list[int] = []
    lifetime = await _lifetime({}, expired)
    lifetime.start(jwt.encode({"sub": "alice", "exp": int(time.time()) - 10}, "k" * 40))
    await until(lambda: expired == [1])
    opaque = await _lifetime({}, expired)
    opaque.start("opaque")
    assert opaque.expires_at is None


async def test_refresh_outcomes() -> None:
    expired: list[int] = []
    later = token("alice", expires_in=3600)
    lifetime = await _lifetime(
        {"good": "alice", later: "alice", "bob": "bob", "nobody": None}, expired
    )
    lifetime.start(token("alice", expires_in=60))
    assert (await lifetime.refresh(later)).ok
    assert lifetime.expires_at == token_expiry(later)
    assert (await lifetime.refresh("good")).expires_at is None  # opaque: no deadline
    assert (await lifetime.refresh("bob")).reason == "token subject changed"
    assert (await lifetime.refresh("nobody")).reason == "token refresh rejected"
    assert (await lifetime.refresh("raise")).reason == "token refresh rejected"
    assert (await lifetime.refresh("hang")).reason == "token refresh timed out"
    lifetime.stop()
    assert not (await lifetime.refresh("good")).ok
    assert expired == []


async def test_a_deadline_during_a_refresh_waits_for_the_answer() -> None:
    expired: list[int] = []
    gate = asyncio.Event()

    async def slow_resolver(candidate: str) -> str | None:
        await gate.wait()
        return "alice"

    lifetime = TokenLifetime(
        user_key="alice", resolver=slow_resolver, leeway=0.0, on_expired=lambda: expired.append(1)
    )
    lifetime.start(jwt.encode({"sub": "alice", "exp": int(time.time()) - 1}, "k" * 40))
    refreshing = asyncio.create_task(lifetime.refresh(token("alice", expires_in=3600)))
    await asyncio.sleep(0)
    await asyncio.sleep(0)  # the deadline fires now, during the refresh
    gate.set()
    assert (await refreshing).ok
    assert expired == []


# -- close codes and security log lines ------------------------------------------------


def test_rate_limited_is_4429() -> None:
    assert CloseCode.RATE_LIMITED is CloseCode.TOO_MANY_CONNECTIONS
    assert CloseCode.INVALID_PAYLOAD.value == 1007


def test_security_event_format(caplog: pytest.LogCaptureFixture) -> None:
    security_event("rate_limited", "c1", "inbound frames over the budget", budget=10)
    record = caplog.records[-1]
    assert record.name == "tempest_ws.security"
    assert record.levelno == logging.WARNING
    assert record.getMessage() == (
        "security rate_limited connection=c1 reason=inbound frames over the budget budget=10"
    )
    assert (record.event, record.connection_id) == ("rate_limited", "c1")  # type: ignore[attr-defined]


def test_a_new_bucket_is_full_whatever_the_clock_reads_at_its_first_take() -> None:
    clock = FakeClock()
    clock.now = -1e9  # a loop clock may start anywhere
    bucket = TokenBucket(3, 1.0, clock=clock)
    assert bucket.tokens == 3  # full before anything is taken or read
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    clock.now += 1 / 3
    assert bucket.take()
