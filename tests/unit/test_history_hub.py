"""The hub with history, without sockets: stamping, replay and ``recovery``, the
built-in ``subscribe`` with a position, gaps between hubs, failures of the store.

Hubs share one `LossyBus` and one ``MemoryHistory``, so
two hubs behave like two processes on one Redis; the bus can lose packets on purpose.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from tempest_ws import (
    BackplaneError,
    ConfigurationError,
    HistoryStats,
    WebSocketHub,
    WSEnvelope,
    allow_any_topic,
)
from tempest_ws.backplane import InMemoryBackplane
from tempest_ws.backplane.packet import Packet
from tempest_ws.history import HistoryPolicy, MemoryHistory, Position
from tempest_ws.realtime import BUILTIN_OPERATIONS
from tempest_ws.router._inbound import Inbound
from tests.helpers.history_support import (
    TOPIC,
    ControlledStore,
    LossyBus,
    expect,
    kinds,
    offsets,
    packet_offset,
    recoveries,
)
from tests.helpers.support import connect, frames, make_settings, until

POLICY = HistoryPolicy(topics=("chat:*",), max_messages=50)
Make = Callable[..., WebSocketHub]


@pytest.fixture
def bus() -> LossyBus:
    return LossyBus()


@pytest.fixture
def store() -> MemoryHistory:
    return MemoryHistory(POLICY)


@pytest.fixture
async def hubs(bus: LossyBus, store: MemoryHistory) -> AsyncIterator[Make]:
    """Hubs on one bus sharing ``store`` (unless given another); stopped after."""
    made: list[WebSocketHub] = []

    def make(history: Any = None, **options: Any) -> WebSocketHub:
        options.setdefault("history_gap_timeout", 0.05)
        options.setdefault("topic_authorizer", allow_any_topic)
        hub = WebSocketHub(
            backplane=InMemoryBackplane(bus),
            history=history if history is not None else store,
            history_policy=POLICY,
            **options,
        )
        made.append(hub)
        return hub

    yield make
    for hub in made:
        await hub.stop()


async def publish(hub: WebSocketHub, *numbers: int, topic: str = TOPIC) -> None:
    for n in numbers:
        await hub.broadcast({"type": "msg", "data": n}, topic=topic)


# -- publishing and subscribing ---------------------------------------------------------


async def test_messages_get_consecutive_offsets_and_a_first_subscribe_learns_the_epoch(
    hubs: Make, store: MemoryHistory
) -> None:
    hub = hubs()
    connection, peer = await connect(hub, "ann")
    assert await hub.subscribe(connection.connection_id, TOPIC, request_id="r1")
    epoch = (await store.latest(TOPIC)).epoch
    await publish(hub, 10, 11, 12)
    await expect(peer, ["recovery", "1", "2", "3"])
    first = recoveries(peer)
    assert first == [
        {
            "topic": TOPIC,
            "recovered": False,
            "replayed": 0,
            "offset": 0,
            "epoch": epoch,
            "request_id": "r1",
        }
    ]
    got = [f for f in frames(peer) if f["type"] == "msg"]
    assert [(f["data"], f["offset"], f["epoch"], f["topic"]) for f in got] == [
        (10, 1, epoch, TOPIC),
        (11, 2, epoch, TOPIC),
        (12, 3, epoch, TOPIC),
    ]
    assert list(got[0]) == ["type", "data", "request_id", "topic", "offset", "epoch"]


async def test_topics_without_history_are_unchanged(hubs: Make) -> None:
    hub = hubs()
    connection, peer = await connect(hub, "ann")
    assert await hub.subscribe(connection.connection_id, "news", position=Position(3, "x"))
    assert await hub.broadcast({"type": "msg", "data": 1}, topic="news") == 1
    await until(lambda: len(peer.texts()) == 1)
    assert frames(peer) == [{"type": "msg", "data": 1, "request_id": None}]
    assert not hub.keeps_history("news")
    assert hub.keeps_history(TOPIC)


async def test_a_resubscribe_with_a_position_replays_then_recovers_then_goes_live(
    hubs: Make, store: MemoryHistory
) -> None:
    hub, other = hubs(), hubs()
    await publish(other, *range(5))
    epoch = (await store.latest(TOPIC)).epoch
    connection, peer = await connect(hub, "ann")
    assert await hub.subscribe(connection.connection_id, TOPIC, position=Position(2, epoch))
    await publish(other, 5)
    await until(lambda: offsets(peer) == [3, 4, 5, 6])
    await expect(peer, ["3", "4", "5", "recovery", "6"])
    assert recoveries(peer)[0] == {
        "topic": TOPIC,
        "recovered": True,
        "replayed": 3,
        "offset": 5,
        "epoch": epoch,
        "request_id": None,
    }
    stats = hub.history_stats()
    assert (stats.replays_recovered, stats.replays_unrecovered, stats.messages_replayed) == (
        1,
        0,
        3,
    )
    assert (stats.appends, other.history_stats().appends, stats.topics_followed) == (0, 6, 1)


async def test_the_same_connection_can_resubscribe_with_an_older_position(
    hubs: Make, store: MemoryHistory
) -> None:
    hub = hubs()
    connection, peer = await connect(hub, "ann")
    await hub.subscribe(connection.connection_id, TOPIC)
    await publish(hub, 1, 2, 3)
    epoch = (await store.latest(TOPIC)).epoch
    assert await hub.subscribe(connection.connection_id, TOPIC, position=Position(1, epoch))
    await publish(hub, 4)
    await expect(peer, ["recovery", "1", "2", "3", "2", "3", "recovery", "4"])
    assert [r["recovered"] for r in recoveries(peer)] == [False, True]


@pytest.mark.parametrize(
    ("position", "why"),
    [
        pytest.param(lambda epoch: Position(2, "0" + epoch[1:]), "epoch", id="epoch-changed"),
        pytest.param(lambda epoch: Position(1, epoch), "trimmed", id="trimmed"),
        pytest.param(lambda epoch: Position(99, epoch), "ahead", id="ahead-of-the-topic"),
    ],
)
async def test_an_unrecoverable_position_is_answered_recovered_false(
    hubs: Make, position: Callable[[str], Position], why: str
) -> None:
    store = MemoryHistory(HistoryPolicy(topics=("chat:*",), max_messages=3))
    hub = hubs(history=store)
    await publish(hub, *range(6))
    latest = await store.latest(TOPIC)
    connection, peer = await connect(hub, "ann")
    await hub.subscribe(connection.connection_id, TOPIC, position=position(latest.epoch))
    await publish(hub, 6)
    await expect(peer, ["recovery", "7"])
    answer = recoveries(peer)[0]
    assert (answer["recovered"], answer["replayed"]) == (False, 0)
    assert (answer["offset"], answer["epoch"]) == latest
    stats = hub.history_stats()
    assert (stats.replays_recovered, stats.replays_unrecovered, stats.messages_replayed) == (
        0,
        1,
        0,
    )


async def test_a_replay_is_bounded_by_half_the_send_queue(hubs: Make) -> None:
    hub = hubs(send_queue_size=8)
    await publish(hub, *range(10))
    connection, peer = await connect(hub, "ann")
    epoch = (await hub.history(TOPIC)).position.epoch
    await hub.subscribe(connection.connection_id, TOPIC, position=Position(6, epoch))
    await expect(peer, ["7", "8", "9", "10", "recovery"])
    connection, peer = await connect(hub, "bob")
    await hub.subscribe(connection.connection_id, TOPIC, position=Position(5, epoch))
    await expect(peer, ["recovery"])
    assert not recoveries(peer)[0]["recovered"]


# -- the built-in subscribe -------------------------------------------------------------


async def test_builtin_subscribe_acks_then_replays_then_recovers(
    hubs: Make, store: MemoryHistory
) -> None:
    hub = hubs()
    inbound = Inbound(hub, operations=BUILTIN_OPERATIONS)
    await publish(hub, 1, 2, 3)
    epoch = (await store.latest(TOPIC)).epoch
    connection, peer = await connect(hub, "ann")
    request = WSEnvelope(
        type="subscribe", data={"topic": TOPIC, "offset": 1, "epoch": epoch}, request_id="s1"
    )
    assert await inbound.run(connection, request)
    await expect(peer, ["ack", "2", "3", "recovery"])
    ack, *_, recovery = frames(peer)
    assert ack == {"type": "ack", "data": {"type": "subscribe", "topic": TOPIC}, "request_id": "s1"}
    assert recovery["request_id"] == "s1"
    assert recovery["data"] == {
        "topic": TOPIC,
        "recovered": True,
        "replayed": 2,
        "offset": 3,
        "epoch": epoch,
    }
    # without a position: ack, then recovered false with the current position
    other, other_peer = await connect(hub, "bob")
    first = WSEnvelope(type="subscribe", data={"topic": TOPIC}, request_id="s2")
    assert await inbound.run(other, first)
    await expect(other_peer, ["ack", "recovery"])
    assert recoveries(other_peer)[0]["offset"] == 3


@pytest.mark.parametrize(
    "data",
    [
        {"offset": 1},
        {"epoch": "abc"},
        {"offset": -1, "epoch": "abc"},
        {"offset": True, "epoch": "abc"},
        {"offset": "1", "epoch": "abc"},
        {"offset": 1, "epoch": ""},
        {"offset": 1, "epoch": "e" * 65},
        {"offset": 1, "epoch": 5},
    ],
)
async def test_a_malformed_position_is_invalid_data(hubs: Make, data: dict[str, Any]) -> None:
    hub = hubs()
    inbound = Inbound(hub, operations=BUILTIN_OPERATIONS)
    connection, peer = await connect(hub, "ann")
    request = WSEnvelope(type="subscribe", data={"topic": TOPIC, **data}, request_id="bad")
    assert not await inbound.run(connection, request)  # counted as an invalid frame
    await expect(peer, ["error"])
    (error,) = frames(peer)
    assert (error["type"], error["data"]["code"], error["request_id"]) == (
        "error",
        "invalid_data",
        "bad",
    )
    assert TOPIC not in connection.topics


async def test_builtin_subscribe_on_a_topic_without_history_is_a_plain_ack(hubs: Make) -> None:
    hub = hubs()
    inbound = Inbound(hub, operations=BUILTIN_OPERATIONS)
    connection, peer = await connect(hub, "ann")
    request = WSEnvelope(type="subscribe", data={"topic": "news", "offset": 3, "epoch": "e"})
    assert await inbound.run(connection, request)
    await expect(peer, ["ack"])


# -- history pages ----------------------------------------------------------------------


async def test_hub_history_pages_through_a_topic(hubs: Make) -> None:
    hub = hubs()
    await publish(hub, *range(7))
    page = await hub.history(TOPIC, limit=3)
    assert [e.offset for e in page.entries] == [5, 6, 7]
    assert page.position.offset == 7
    forward = await hub.history(TOPIC, since=2, limit=2)
    assert [e.offset for e in forward.entries] == [3, 4]
    assert forward.entries[0].frame == '{"type":"msg","data":2,"request_id":null}'
    with pytest.raises(ValueError, match="keeps no history"):
        await hub.history("news")
    with pytest.raises(ValueError, match="keeps no history"):
        await WebSocketHub().history(TOPIC)


# -- failures ---------------------------------------------------------------------------


async def test_a_failed_append_delivers_unstamped_then_raises(hubs: Make, store: Any) -> None:
    flaky = ControlledStore(store)
    hub, other = hubs(history=flaky), hubs(history=flaky)
    here, here_peer = await connect(hub, "ann")
    there, there_peer = await connect(other, "bob")
    await hub.subscribe(here.connection_id, TOPIC)
    await other.subscribe(there.connection_id, TOPIC)
    flaky.fail = True
    with pytest.raises(BackplaneError, match="history store down"):
        await hub.broadcast({"type": "msg", "data": "lost"}, topic=TOPIC)
    flaky.fail = False
    await publish(hub, 1)
    for peer in (here_peer, there_peer):
        await until(lambda peer=peer: offsets(peer) == [1])  # type: ignore[misc]
        got = [f for f in frames(peer) if f["type"] == "msg"]
        assert got[0] == {"type": "msg", "data": "lost", "request_id": None}
        assert got[1]["offset"] == 1
    assert (hub.history_stats().appends, hub.history_stats().append_failures) == (1, 1)


async def test_a_store_down_at_subscribe_still_delivers_live(hubs: Make, store: Any) -> None:
    flaky = ControlledStore(store)
    hub = hubs(history=flaky)
    flaky.fail_reads = True
    connection, peer = await connect(hub, "ann")
    assert await hub.subscribe(connection.connection_id, TOPIC, position=Position(3, "e"))
    await publish(hub, 1, 2)
    await expect(peer, ["recovery", "1", "2"])
    answer = recoveries(peer)[0]
    assert (answer["recovered"], answer["epoch"]) == (False, "")  # no position known here
    assert hub.history_stats().replays_unrecovered == 1


async def test_a_seam_that_overflows_closes_the_connection_1013(hubs: Make, store: Any) -> None:
    gated = ControlledStore(store)
    hub = hubs(history=gated, send_queue_size=4)
    await publish(hub, 1)
    watcher, watcher_peer = await connect(hub, "bob")
    await hub.subscribe(watcher.connection_id, TOPIC)
    epoch = (await store.latest(TOPIC)).epoch
    connection, peer = await connect(hub, "ann")
    gated.gate = asyncio.Event()
    gated.reading.clear()
    joining = asyncio.create_task(
        hub.subscribe(connection.connection_id, TOPIC, position=Position(0, epoch))
    )
    await gated.reading.wait()
    for n in range(6):  # buffered in the seam: 4 fit
        await publish(hub, n)
        await until(lambda: watcher.pending == 0)
    assert connection.closing
    assert connection.close_code == 1013
    gated.gate.set()
    await joining
    await until(lambda: peer.close_codes() == [1013])
    await expect(watcher_peer, ["recovery", "2", "3", "4", "5", "6", "7"])
    assert hub.stats().slow_consumers_closed == 1
    assert hub.history_stats().seams_overflowed == 1


async def test_live_messages_during_the_read_join_the_replay_once(hubs: Make, store: Any) -> None:
    gated = ControlledStore(store)
    hub, other = hubs(history=gated), hubs()
    await publish(other, 1, 2)
    epoch = (await store.latest(TOPIC)).epoch
    watcher, _ = await connect(hub, "bob")
    await hub.subscribe(watcher.connection_id, TOPIC)  # the node follows the topic
    connection, peer = await connect(hub, "ann")
    gated.gate = asyncio.Event()
    gated.reading.clear()
    joining = asyncio.create_task(
        hub.subscribe(connection.connection_id, TOPIC, position=Position(1, epoch))
    )
    await gated.reading.wait()
    await publish(other, 3, 4)  # appended before the read: in the replay, and live
    await until(lambda: hub.cluster_stats().packets_received >= 2)
    gated.gate.set()
    await joining
    await publish(other, 5)
    await expect(peer, ["2", "3", "4", "recovery", "5"])


async def test_stop_closes_the_store_and_ends_the_gap_task(
    hubs: Make, store: Any, bus: LossyBus
) -> None:
    counted = ControlledStore(store)
    hub, other = hubs(history=counted, history_gap_timeout=30), hubs()
    connection, _ = await connect(hub, "ann")
    await hub.subscribe(connection.connection_id, TOPIC)
    bus.drop = lambda packet: packet_offset(packet) == 1
    await publish(other, 1, 2)
    await until(lambda: hub._history is not None and hub._history.mender.task is not None)
    assert hub._history is not None
    mender = hub._history.mender.task
    assert mender is not None
    assert not mender.done()
    await hub.stop()
    assert mender.done()
    assert counted.closed == 1


# -- between hubs: order, gaps, epochs ---------------------------------------------------


async def test_a_lost_packet_is_filled_from_the_history(hubs: Make, bus: LossyBus) -> None:
    hub, other = hubs(), hubs()
    connection, peer = await connect(hub, "ann")
    await hub.subscribe(connection.connection_id, TOPIC)
    bus.drop = lambda packet: packet_offset(packet) == 2
    await publish(other, 1, 2, 3, 4)
    await until(lambda: offsets(peer) == [1, 2, 3, 4])
    assert bus.dropped == 1
    stats = hub.history_stats()
    assert (stats.gap_messages_filled, stats.gap_messages_skipped) == (1, 0)
    assert stats.discontinuity_notices == 0
    assert [r["recovered"] for r in recoveries(peer)] == [False]  # only the first subscribe


async def test_packets_out_of_order_are_released_in_offset_order(hubs: Make, bus: LossyBus) -> None:
    hub, other = hubs(history_gap_timeout=30), hubs()
    connection, peer = await connect(hub, "ann")
    await hub.subscribe(connection.connection_id, TOPIC)
    late = {1: 0.05, 2: 0.02}
    bus.delay = lambda: 0.0
    original = bus.publish

    def publish_late(sender: str, channel: str, packet: bytes) -> int:
        bus.delay = lambda: late.get(packet_offset(packet) or 0, 0.0)
        return original(sender, channel, packet)

    bus.publish = publish_late  # type: ignore[method-assign]
    await publish(other, 1, 2, 3)
    await until(lambda: offsets(peer) == [1, 2, 3])
    assert hub.history_stats().gap_messages_filled == 0


async def test_a_gap_the_history_lost_is_skipped_with_a_notice(hubs: Make, bus: LossyBus) -> None:
    small = MemoryHistory(HistoryPolicy(topics=("chat:*",), max_messages=2))
    hub, other = hubs(history=small), hubs(history=small)
    connection, peer = await connect(hub, "ann")
    await hub.subscribe(connection.connection_id, TOPIC)
    bus.drop = lambda packet: packet_offset(packet) in (2, 3, 4)
    await publish(other, 1, 2, 3, 4, 5, 6)  # 2..4 lost, and trimmed from the history
    await until(lambda: offsets(peer) == [1, 5, 6])
    await expect(peer, ["recovery", "1", "recovery", "5", "6"])
    notice = recoveries(peer)[1]
    assert (notice["recovered"], notice["offset"], notice["replayed"]) == (False, 4, 0)
    stats = hub.history_stats()
    assert (stats.gap_messages_skipped, stats.discontinuity_notices) == (3, 1)
    connection.close_soon(1000)  # the topic is no longer followed; its counts stay
    stats = hub.history_stats()
    assert (stats.topics_followed, stats.gap_messages_skipped) == (0, 3)


async def test_a_new_epoch_is_announced_before_its_first_message(
    hubs: Make, store: MemoryHistory
) -> None:
    hub = hubs()
    connection, peer = await connect(hub, "ann")
    await hub.subscribe(connection.connection_id, TOPIC)
    await publish(hub, 1)
    old = (await store.latest(TOPIC)).epoch
    store._rings.clear()  # the history is lost: the next message starts a new epoch
    await publish(hub, 2)
    new = (await store.latest(TOPIC)).epoch
    assert new > old
    await expect(peer, ["recovery", "1", "recovery", "1"])
    assert (recoveries(peer)[1]["offset"], recoveries(peer)[1]["epoch"]) == (0, new)
    assert hub.history_stats().discontinuity_notices == 1


async def test_an_epoch_dropped_as_stale_is_followed_when_the_store_says_so(
    hubs: Make, store: MemoryHistory
) -> None:
    hub, other = hubs(), hubs()
    connection, peer = await connect(hub, "ann")
    await hub.subscribe(connection.connection_id, TOPIC)
    assert hub._history is not None
    hub._history.on_packet(
        # a message of a far-future epoch (a node with a clock far ahead)
        Packet(
            "aaaaaaaaaaaa",
            "topic",
            TOPIC,
            '{"type":"msg","data":"future","request_id":null,"topic":"chat:1",'
            '"offset":1,"epoch":"fffffffffffff00000000"}',
            position=(1, "fffffffffffff00000000"),
        )
    )
    await publish(other, 1, 2)  # the store's epoch: older, so dropped as stale...
    await until(lambda: offsets(peer)[-2:] == [1, 2])  # ...until the store says it is current
    assert kinds(peer)[-3:] == ["recovery", "1", "2"]
    assert hub.history_stats().stale_messages_dropped >= 1


async def test_unsubscribing_the_last_subscriber_stops_following(hubs: Make) -> None:
    hub = hubs()
    a, _ = await connect(hub, "ann")
    b, _ = await connect(hub, "bob")
    await hub.subscribe(a.connection_id, TOPIC)
    await hub.subscribe(b.connection_id, TOPIC)
    assert hub.history_stats().topics_followed == 1
    await hub.unsubscribe(a.connection_id, TOPIC)
    assert hub.history_stats().topics_followed == 1
    b.close_soon(1000)
    assert hub.history_stats().topics_followed == 0
    assert WebSocketHub().history_stats() == HistoryStats()  # no history: all zero


# -- construction -----------------------------------------------------------------------


async def test_construction_and_settings() -> None:
    hub = WebSocketHub(history_policy=POLICY)
    assert hub._history is not None
    assert isinstance(hub._history.store, MemoryHistory)
    await hub.stop()
    with pytest.raises(ConfigurationError, match="history_policy"):
        WebSocketHub(history=object())  # type: ignore[arg-type]  # a store without a policy
    with pytest.raises(ConfigurationError, match="timeouts"):
        WebSocketHub(history_policy=POLICY, history_gap_timeout=0)
    assert WebSocketHub.from_settings(make_settings())._history is None
    built = WebSocketHub.from_settings(
        make_settings(WS_HISTORY_TOPICS="chat:*", WS_HISTORY_GAP_TIMEOUT_SECONDS=0.25)
    )
    assert built._history is not None
    assert isinstance(built._history.store, MemoryHistory)
    assert built._history.gap_timeout == 0.25
    assert built.keeps_history("chat:9")
    assert not built.keeps_history("news")
    redis_built = WebSocketHub.from_settings(
        make_settings(WS_HISTORY_TOPICS="chat:*", WS_REDIS_URL="redis://127.0.0.1:1/0")
    )
    assert redis_built._history is not None
    assert type(redis_built._history.store).__name__ == "RedisHistory"


def test_the_asyncapi_document_has_recovery_and_stamped_keys() -> None:
    from pydantic import BaseModel

    from tempest_ws import MessageRegistry, asyncapi_document

    messages = MessageRegistry()

    @messages.outbound("chat.message")
    class ChatMessage(BaseModel):
        text: str

    @messages.inbound("chat.send")
    class ChatSend(BaseModel):
        text: str

    document = asyncapi_document(messages, settings=make_settings())
    components = document["components"]["messages"]
    assert components["recovery"]["name"] == "recovery"
    recovery = components["recovery"]["payload"]["properties"]["data"]["$ref"].rsplit("/", 1)[1]
    fields = document["components"]["schemas"][recovery]["properties"]
    assert set(fields) == {"topic", "recovered", "replayed", "offset", "epoch"}
    sent = components["chat.message"]["payload"]["properties"]
    assert {"topic", "offset", "epoch"} <= set(sent)
    assert "offset" not in components["chat.send"]["payload"]["properties"]


def test_packets_carry_the_position_and_reject_a_malformed_one() -> None:
    from tempest_ws.backplane.packet import decode_packet, encode_packet

    fast = encode_packet("aaaaaaaaaaaa", "topic", 'chat:"1', "{}", position=(7, "e1"))
    assert fast.startswith(b'{"v":1,"n":"aaaaaaaaaaaa","o":"topic","t":"chat:\\"1","p":[7,"e1"]}')
    assert decode_packet(fast).position == (7, "e1")
    slow = encode_packet("aaaaaaaaaaaa", "topic", "t", "{}", exclude=["x"], position=(1, "e"))
    assert decode_packet(slow).position == (1, "e")
    assert decode_packet(slow).exclude == frozenset({"x"})
    assert decode_packet(encode_packet("aaaaaaaaaaaa", "topic", "t", "{}")).position is None
    for bad in ("[1]", '[-1,"e"]', '[true,"e"]', '[1,""]', '"1,e"', "[1,2]"):
        with pytest.raises(ValueError, match="position"):
            decode_packet(f'{{"v":1,"n":"a","o":"topic","t":"t","p":{bad}}}\n{{}}'.encode())
