"""HistoryPolicy: opt-in topic patterns, bounds, and the WS_HISTORY_* settings."""

from __future__ import annotations

import pytest

from tempest_ws.exceptions import ConfigurationError
from tempest_ws.history import HistoryPolicy, MemoryHistory
from tests.helpers.support import make_settings


@pytest.mark.parametrize(
    ("patterns", "topic", "kept"),
    [
        ((), "chat:1", False),
        (("chat:*",), "chat:1", True),
        (("chat:*",), "chat:room:7", True),
        (("chat:*",), "chat:", True),
        (("chat:*",), "chat", False),
        (("chat:*",), "xchat:1", False),
        (("*",), "anything at all", True),
        (("news",), "news", True),
        (("news",), "newsroom", False),
        (("a*b*c",), "a-x-b-y-c", True),
        (("a*b*c",), "a-x-c-b", False),
        (("room:[1]?",), "room:[1]?", True),  # only * is special
        (("room:[1]?",), "room:1x", False),
        (("chat:*", "news"), "news", True),
        (("*:admin",), "line\nbreak:admin", True),
    ],
)
def test_patterns(patterns: tuple[str, ...], topic: str, kept: bool) -> None:
    policy = HistoryPolicy(topics=patterns)
    assert policy.keeps(topic) is kept
    assert policy.enabled is bool(patterns)


def test_bounds_are_checked_and_meta_ttl_covers_max_age() -> None:
    for bad in (
        {"max_messages": 0},
        {"recovery_limit": 0},
        {"max_age": 0},
        {"meta_ttl": -1},
        {"topics": ("",)},
    ):
        with pytest.raises(ConfigurationError):
            HistoryPolicy(**bad)
    assert HistoryPolicy(max_age=600, meta_ttl=60).meta_ttl == 600


def test_from_settings() -> None:
    settings = make_settings(
        WS_HISTORY_TOPICS="chat:*, news",
        WS_HISTORY_MAX_MESSAGES=50,
        WS_HISTORY_MAX_AGE_SECONDS=30,
        WS_HISTORY_META_TTL_SECONDS=120,
        WS_HISTORY_RECOVERY_LIMIT=20,
    )
    policy = HistoryPolicy.from_settings(settings)
    assert policy == HistoryPolicy(
        topics=("chat:*", "news"), max_messages=50, max_age=30, meta_ttl=120, recovery_limit=20
    )
    assert policy.keeps("news")
    assert not policy.keeps("other")
    assert HistoryPolicy.from_settings(make_settings()) == HistoryPolicy()
    assert not HistoryPolicy.from_settings(make_settings()).enabled
    json_list = make_settings(WS_HISTORY_TOPICS='["a:*","b"]')
    assert json_list.WS_HISTORY_TOPICS == ["a:*", "b"]


@pytest.mark.redis
def test_redis_history_from_settings() -> None:
    from tempest_ws.history import RedisHistory

    with pytest.raises(ConfigurationError, match="WS_REDIS_URL"):
        RedisHistory.from_settings(make_settings())
    store = RedisHistory.from_settings(
        make_settings(
            WS_REDIS_URL="redis://:secret@127.0.0.1:1/0",
            WS_REDIS_CHANNEL_PREFIX="app",
            WS_REDIS_TIMEOUT_SECONDS=0.5,
            WS_HISTORY_MAX_MESSAGES=7,
        )
    )
    assert (store.prefix, store.timeout, store.policy.max_messages) == ("app", 0.5, 7)
    assert "secret" not in repr(store)
    for bad in ({"prefix": "a b"}, {"prefix": "{x}"}, {"prefix": ""}, {"timeout": 0}):
        with pytest.raises(ConfigurationError):
            RedisHistory(**bad)
    with pytest.raises(ConfigurationError, match="URL"):
        RedisHistory("http://127.0.0.1")


async def test_memory_history_forgets_quiet_topics() -> None:
    now = [0.0]
    store = MemoryHistory(HistoryPolicy(max_age=10, meta_ttl=100), clock=lambda: now[0])
    for n in range(50):
        await store.append(f"t:{n}", "{}")
    now[0] = 60.0
    kept = await store.append("t:0", "{}")  # touched: stays
    now[0] = 130.0
    await store.latest("t:new")
    assert "topics=2" in repr(store)  # t:0 and t:new; the 49 quiet ones are gone
    assert (await store.latest("t:0")) == kept
    assert (await store.latest("t:1")).offset == 0  # forgotten: a new epoch
    now[0] = 235.0  # t:0 was last touched at 130, t:1 and t:new at 130 too
    await store.append("t:2", "{}")
    assert "topics=1" in repr(store)  # the next lapse is noticed as well
