"""RedisHistory's append script renews a topic's meta hash and trims by age once per
renewal period, not on every append: what that must never weaken. Real redis-server.

Checked here: the hash always outlives an append by at least ``meta_ttl``; a renewal
that is due, missing (a fresh hash) or implausible (Redis's clock went back) happens
on the next append; the age trim still runs on a renewal; the stream's own expiry and
offsets are untouched; appends and publishes pipelined from many callers keep strictly
increasing, gap-free offsets across renewals, in both the stream and the channel.
"""

from __future__ import annotations

import asyncio

import pytest

from tempest_ws.history import HistoryPolicy, Position
from tests.helpers.redis_server import RedisServer

pytestmark = pytest.mark.redis

TOPIC = "chat:renewal"
META_TTL_MS = 3_600_000
MAX_AGE_MS = 60_000


def frame(n: int) -> str:
    return f'{{"type":"m","data":{n},"request_id":null}}'


def stream_ms(client: object, stream: str) -> int:
    last = client.xrevrange(stream, count=1)  # type: ignore[attr-defined]
    return int(last[0][0].split(b"-")[0])


async def test_every_append_leaves_the_hash_at_least_meta_ttl(redis: RedisServer) -> None:
    from tempest_ws.history import RedisHistory

    store = RedisHistory(redis.url, policy=HistoryPolicy(max_age=60, meta_ttl=3600))
    meta, stream = store.keys(TOPIC)
    try:
        for n in range(1, 41):
            assert await store.append(TOPIC, frame(n)) == Position(n, store_epoch(redis, meta))
            with redis.client() as client:
                assert client.pttl(meta) > META_TTL_MS - 5_000  # never short of meta_ttl
                assert 0 < client.pttl(stream) <= MAX_AGE_MS  # renewed on every append
                due = int(client.hget(meta, "r"))
                assert stream_ms(client, stream) < due <= stream_ms(client, stream) + 1000
    finally:
        await store.aclose()


def store_epoch(redis: RedisServer, meta: str) -> str:
    with redis.client() as client:
        return str(client.hget(meta, "e").decode())


@pytest.mark.parametrize("due", ["0", "99999999999999", None])
async def test_a_due_missing_or_implausible_renewal_happens_on_the_next_append(
    redis: RedisServer, due: str | None
) -> None:
    """``0``: overdue; far in the future: Redis's clock went back; missing: a hash made
    by a read, or by an older version of the script."""
    from tempest_ws.history import RedisHistory

    store = RedisHistory(redis.url, policy=HistoryPolicy(max_age=60, meta_ttl=3600))
    meta, stream = store.keys(TOPIC)
    try:
        first = await store.append(TOPIC, frame(1))
        with redis.client() as client:
            client.pexpire(meta, 5_000)
            if due is None:
                client.hdel(meta, "r")
            else:
                client.hset(meta, "r", due)
        second = await store.append(TOPIC, frame(2))
        assert second == Position(2, first.epoch)
        with redis.client() as client:
            assert client.pttl(meta) > META_TTL_MS - 5_000
            renewed = int(client.hget(meta, "r"))
            assert stream_ms(client, stream) < renewed <= stream_ms(client, stream) + 1000
    finally:
        await store.aclose()


async def test_a_read_never_shortens_what_an_append_gave_the_hash(redis: RedisServer) -> None:
    from tempest_ws.history import RedisHistory

    store = RedisHistory(redis.url, policy=HistoryPolicy(max_age=60, meta_ttl=3600))
    meta, _ = store.keys(TOPIC)
    try:
        await store.latest(TOPIC)  # the read makes the hash, without a renewal time
        with redis.client() as client:
            assert client.hget(meta, "r") is None
            made = client.pttl(meta)
        await store.append(TOPIC, frame(1))
        await store.history(TOPIC, limit=10)
        with redis.client() as client:
            assert client.pttl(meta) > META_TTL_MS - 5_000
            assert client.pttl(meta) >= made - 5_000
    finally:
        await store.aclose()


async def test_a_renewal_trims_entries_older_than_max_age(redis: RedisServer) -> None:
    """Entries left from long ago (whole stream nodes of them) go on the next renewal;
    the offsets and the epoch carry on."""
    from tempest_ws.history import RedisHistory

    store = RedisHistory(redis.url, policy=HistoryPolicy(max_age=60, meta_ttl=3600))
    meta, stream = store.keys(TOPIC)
    epoch = "0000000000001deadbeef"
    with redis.client() as client:
        client.hset(meta, mapping={"e": epoch, "o": 300})
        for n in range(1, 301):  # ids of 1970: far older than max_age
            client.xadd(stream, {"o": n, "f": frame(n)}, id=f"1-{n}")
    try:
        assert await store.append(TOPIC, frame(301)) == Position(301, epoch)
        with redis.client() as client:
            assert client.xlen(stream) <= 101  # "~": whole nodes of 100 entries go
            assert client.xrevrange(stream, count=1)[0][1][b"o"] == b"301"
        recovery = await store.since(TOPIC, 300, epoch, limit=10)
        assert [e.offset for e in recovery.entries] == [301]
        assert not (await store.since(TOPIC, 100, epoch, limit=1000)).recovered
    finally:
        await store.aclose()


async def test_offsets_stay_gap_free_across_renewals_in_stream_and_channel(
    redis: RedisServer,
) -> None:
    """Two stores (two nodes) appending and publishing concurrently, a renewal falling
    due before each burst: every offset once, in order, in the stream and on the
    channel, each packet stamped with its own position."""
    import redis.asyncio as aioredis

    from tempest_ws.backplane.packet import OP_TOPIC, decode_packet, positioned_head
    from tempest_ws.history import RedisHistory

    policy = HistoryPolicy(max_age=60, meta_ttl=3600)
    stores = [RedisHistory(redis.url, policy=policy) for _ in range(2)]
    meta, _ = stores[0].keys(TOPIC)
    listener = aioredis.Redis.from_url(redis.url)
    pubsub = listener.pubsub()
    await pubsub.subscribe("app:topic:chat:renewal")
    await pubsub.get_message(timeout=1)  # the confirmation
    head = positioned_head("0123456789ab", OP_TOPIC, TOPIC)
    try:
        for burst in range(5):
            if burst:
                with redis.client() as client:
                    client.hset(meta, "r", "0")  # overdue: the burst's first append renews
            calls = [
                stores[n % 2].append_publish(TOPIC, frame(n), "app:topic:chat:renewal", head)
                for n in range(200)
            ]
            positions = await asyncio.gather(*calls)
            assert len({p.offset for p in positions}) == 200
        offsets = []
        while len(offsets) < 1000:
            message = await pubsub.get_message(timeout=2)
            assert message is not None
            if message["type"] == "message":
                packet = decode_packet(message["data"])
                assert packet.position is not None
                assert packet.frame is not None
                offset, epoch = packet.position
                assert packet.frame.endswith(f',"offset":{offset},"epoch":"{epoch}"}}')
                offsets.append(offset)
        assert offsets == list(range(1, 1001))
        page = await stores[0].history(TOPIC, limit=1000)
        assert [e.offset for e in page.entries] == list(range(1, 1001))
    finally:
        await pubsub.aclose()
        await listener.aclose()
        for store in stores:
            await store.aclose()
