"""The client's history positions: tracked, sent on resubscription, seeded, recovered.

``ClientPositions`` is tested on its own; the rest runs the real client against the
real router under uvicorn, with ``tests.helpers.history_protocol_app`` answering the history
protocol (real ``MemoryHistory``, ``stamp_frame``, ``recovery_envelope``). A second
client publishes. Reconnects are held back by a token provider that waits on an event,
so "published while the client was away" never depends on timing.

The client against the real hub (two nodes, real Redis) is
``tests/redis/test_history_client_e2e.py``, which also runs ``examples/history_client.py``.
This file keeps what the fake provokes more precisely than the real hub: a stamped
message that is received but not yet handed when the connection drops (the fake's
``publish`` ack proves it arrived), an ``ack`` after the ``recovery`` (another server's
order), malformed positions and ``recovery`` envelopes, a notice on demand, and an
in-memory history lost with its process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from tempest_ws import CloseCode, ConfigurationError, WSEnvelope
from tempest_ws.client import Disconnect, Position, StampedEnvelope, WebSocketClient
from tempest_ws.client._history import ClientPositions
from tempest_ws.testing import serve
from tests.e2e.test_client import BOUND, client_for, next_of_type, until
from tests.helpers.history_protocol_app import HistoryProtocol, build_history_app
from tests.helpers.server_process import ServerProcess
from tests.helpers.support import make_settings, token, ws_url

TOPIC = "chat:1"


# -- the pure part ----------------------------------------------------------------------


def test_positions_received_then_handed() -> None:
    positions = ClientPositions("t", {"a": (3, "e1")})
    assert positions.view == {"a": Position(3, "e1")}
    assert positions.subscribe_data("a") == {"topic": "a", "offset": 3, "epoch": "e1"}
    assert positions.subscribe_data("b") == {"topic": "b"}
    mark = positions.receive({"type": "m", "topic": "a", "offset": 4, "epoch": "e1"})
    assert mark == ("a", Position(4, "e1"))
    assert positions.subscribe_data("a")["offset"] == 4  # resume from what was received
    assert positions.view["a"] == Position(3, "e1")  # not handed yet
    positions.hand(mark)
    assert positions.view["a"] == Position(4, "e1")
    assert positions.receive({"type": "m", "data": {}}) is None
    notice = positions.recovery({"topic": "a", "recovered": False, "offset": 0, "epoch": "e2"})
    assert notice == ("a", False, Position(0, "e2"))
    assert positions.received["a"] == Position(0, "e2")
    with pytest.raises(TypeError):
        positions.view["a"] = Position(1, "x")  # type: ignore[index]


def test_unsubscribe_forgets_until_subscribed_again() -> None:
    positions = ClientPositions("t", {"a": (3, "e1")})
    in_flight = positions.receive({"type": "m", "topic": "a", "offset": 4, "epoch": "e1"})
    assert in_flight is not None
    positions.forget("a")
    assert positions.view == {}
    assert positions.received == {}
    positions.hand(in_flight)  # still in the inbox when the application unsubscribed
    assert positions.receive({"type": "m", "topic": "a", "offset": 5, "epoch": "e1"}) is None
    assert positions.recovery({"topic": "a", "recovered": True, "offset": 5, "epoch": "e1"})
    assert positions.view == {}
    assert positions.received == {}
    assert positions.subscribe_data("a") == {"topic": "a"}  # starts fresh, tracked again
    assert positions.receive({"type": "m", "topic": "a", "offset": 6, "epoch": "e1"})
    assert positions.received == {"a": Position(6, "e1")}


@pytest.mark.parametrize(
    "seed",
    [
        {"t": (-1, "e")},
        {"t": (True, "e")},
        {"t": (1, "")},
        {"t": (1, "e" * 65)},
        {"t": (1.0, "e")},
        {"t": "1:e"},
        {"": (1, "e")},
    ],
)
def test_malformed_seeds_are_configuration_errors(seed: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match="positions"):
        WebSocketClient("ws://127.0.0.1:1/ws", positions=seed)


# -- against a server -------------------------------------------------------------------


@dataclass
class Rig:
    url: str
    protocol: HistoryProtocol


@contextlib.asynccontextmanager
async def history_server(**kwargs: Any) -> AsyncIterator[Rig]:
    settings = make_settings()
    app, protocol = build_history_app(settings, HistoryProtocol(**kwargs))
    async with serve(app, settings=settings) as base:
        yield Rig(ws_url(base), protocol)


class Gate:
    """A token provider that holds every connection attempt while `open` is clear."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.open.set()

    async def __call__(self) -> str:
        await self.open.wait()
        return token()


async def publish(publisher: WebSocketClient, *numbers: int, topic: str = TOPIC) -> None:
    for n in numbers:
        data = {"topic": topic, "payload": {"n": n}}
        await publisher.request("publish", data, timeout=BOUND)


async def take_envelopes(client: WebSocketClient, count: int) -> list[WSEnvelope]:
    """The next ``count`` envelopes other than ``ack``."""
    taken: list[WSEnvelope] = []
    async with asyncio.timeout(BOUND):
        while len(taken) < count:
            envelope = await client.receive()
            if envelope.type != "ack":
                taken.append(envelope)
    return taken


async def take(client: WebSocketClient, count: int) -> list[tuple[str, Any]]:
    """The next ``count`` envelopes other than ``ack``, as ``(type, data)``."""
    return [(e.type, e.data) for e in await take_envelopes(client, count)]


def recovery(recovered: bool, replayed: int, offset: int, epoch: str) -> tuple[str, Any]:
    data = {"topic": TOPIC, "recovered": recovered, "replayed": replayed}
    return "recovery", {**data, "offset": offset, "epoch": epoch}


Recoveries = list[tuple[str, bool, dict[str, Any]]]


def recorder(into: Recoveries) -> Any:
    async def on_recovery(topic: str, recovered: bool, envelope: WSEnvelope) -> None:
        into.append((topic, recovered, envelope.data))

    return on_recovery


@pytest.mark.e2e
async def test_positions_follow_what_the_application_was_handed() -> None:
    recoveries: Recoveries = []
    async with (
        history_server() as rig,
        client_for(rig.url, on_recovery=recorder(recoveries)) as client,
    ):
        assert client.positions == {}
        await client.subscribe(TOPIC)
        first = await next_of_type(client, "recovery")  # a first subscribe: nothing to replay
        epoch = first.data["epoch"]
        assert first.data == recovery(False, 0, 0, epoch)[1]
        assert recoveries == [(TOPIC, False, first.data)]
        assert client.positions == {TOPIC: Position(0, epoch)}
        assert rig.protocol.subscribes == [{"topic": TOPIC}]

        await publish(client, 1, 2)  # each ack follows the stamped message on our socket
        assert client.positions == {TOPIC: Position(0, epoch)}  # received, not handed yet
        [one] = await take_envelopes(client, 1)
        assert isinstance(one, StampedEnvelope)
        assert (one.type, one.data, one.topic, one.offset, one.epoch) == (
            "published",
            {"n": 1},
            TOPIC,
            1,
            epoch,
        )
        assert client.positions == {TOPIC: Position(1, epoch)}
        assert await take(client, 1) == [("published", {"n": 2})]
        assert client.positions == {TOPIC: Position(2, epoch)}

        await client.unsubscribe(TOPIC)  # the position is forgotten
        assert client.positions == {}
        await publish(client, 3)
        await client.subscribe(TOPIC)
        assert await take(client, 1) == [recovery(False, 0, 3, epoch)]
        assert rig.protocol.subscribes[-1] == {"topic": TOPIC}
        assert client.positions == {TOPIC: Position(3, epoch)}
        assert [r[1] for r in recoveries] == [False, False]


@pytest.mark.e2e
@pytest.mark.parametrize("ack_first", [True, False], ids=["ack-first", "ack-last"])
async def test_abrupt_drop_resumes_with_every_missed_message_once(ack_first: bool) -> None:
    gate = Gate()
    recoveries: Recoveries = []
    disconnects: list[Disconnect] = []
    async with (
        history_server(ack_first=ack_first) as rig,
        client_for(rig.url) as publisher,
        client_for(
            rig.url,
            token=None,
            token_provider=gate,
            on_recovery=recorder(recoveries),
            on_disconnect=disconnects.append,
        ) as client,
    ):
        await client.subscribe(TOPIC)
        epoch = (await next_of_type(client, "recovery")).data["epoch"]
        await publish(publisher, 1, 2, 3)
        assert await take(client, 2) == [("published", {"n": 1}), ("published", {"n": 2})]
        await client.request("sync", timeout=BOUND)  # message 3 is in the client's inbox
        assert client.positions == {TOPIC: Position(2, epoch)}

        gate.open.clear()  # no reconnect until the missed messages are published
        await client.send("abort")  # the server drops the TCP connection: no close frame
        await until(lambda: not client.connected, "the client to notice the drop")
        await publish(publisher, 4, 5, 6)
        gate.open.set()

        # 3 was received before the drop (the resubscription asks from 3, not from 2).
        expected = [("published", {"n": n}) for n in (3, 4, 5, 6)]
        assert await take(client, 5) == [*expected, recovery(True, 3, 6, epoch)]
        await publish(publisher, 7)
        assert await take(client, 1) == [("published", {"n": 7})]
        assert rig.protocol.subscribes[-1] == {"topic": TOPIC, "offset": 3, "epoch": epoch}
        assert client.positions == {TOPIC: Position(7, epoch)}
    assert [(r[0], r[1]) for r in recoveries] == [(TOPIC, False), (TOPIC, True)]
    assert disconnects[0].code == CloseCode.ABNORMAL


@pytest.mark.e2e
async def test_a_killed_server_loses_its_history_so_the_client_reloads() -> None:
    """The in-memory history dies with its process: new epoch, ``recovered: false``."""
    recoveries: Recoveries = []
    async with ServerProcess(module="tests.helpers.history_protocol_app") as server:
        publisher = client_for(server.ws_url)
        client = client_for(server.ws_url, on_recovery=recorder(recoveries))
        async with publisher, client:
            await client.subscribe(TOPIC)
            old = (await next_of_type(client, "recovery")).data["epoch"]
            await publish(publisher, 1, 2)
            assert await take(client, 2) == [("published", {"n": 1}), ("published", {"n": 2})]
            assert client.positions == {TOPIC: Position(2, old)}

            await server.kill()  # SIGKILL by PID
            await until(lambda: not client.connected, "the client to notice the kill")
            await server.start()  # same port, empty history
            again = await next_of_type(client, "recovery")
            new = again.data["epoch"]
            assert new != old
            assert again.data == recovery(False, 0, 0, new)[1]
            assert client.positions == {TOPIC: Position(0, new)}

            await asyncio.wait_for(publisher.wait_connected(), BOUND)
            await publish(publisher, 1)
            assert await take(client, 1) == [("published", {"n": 1})]
            assert client.positions == {TOPIC: Position(1, new)}
    assert [(r[0], r[1]) for r in recoveries] == [(TOPIC, False), (TOPIC, False)]
    assert recoveries[1][2]["epoch"] == new


@pytest.mark.e2e
async def test_unrequested_recovery_false_reaches_the_hook_and_the_iterator() -> None:
    recoveries: Recoveries = []
    async with (
        history_server() as rig,
        client_for(rig.url, on_recovery=recorder(recoveries)) as client,
    ):
        await client.subscribe(TOPIC)
        epoch = (await next_of_type(client, "recovery")).data["epoch"]
        await publish(client, 1)
        assert await take(client, 1) == [("published", {"n": 1})]
        await client.send("notice", {"topic": TOPIC})  # the hub's discontinuity notice
        assert await take(client, 1) == [recovery(False, 0, 1, epoch)]
        assert recoveries[-1] == (TOPIC, False, recovery(False, 0, 1, epoch)[1])
        assert client.positions == {TOPIC: Position(1, epoch)}
        assert len(rig.protocol.subscribes) == 1  # a notice is not a resubscription


def _stamped(n: int, **keys: Any) -> str:
    return json.dumps({"type": "published", "data": {"n": n}, "request_id": None, **keys})


def _recovery(data: Any) -> str:
    return json.dumps({"type": "recovery", "data": data, "request_id": None})


@pytest.mark.e2e
async def test_malformed_positions_are_ignored_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    recoveries: Recoveries = []
    good = {"topic": TOPIC, "recovered": True, "replayed": 0, "offset": 1, "epoch": "e"}
    bad_messages = [
        _stamped(1, topic=TOPIC, offset="7", epoch="e"),
        _stamped(2, topic=TOPIC, offset=-1, epoch="e"),
        _stamped(3, topic=TOPIC, offset=True, epoch="e"),
        _stamped(4, topic=TOPIC, offset=1.5, epoch="e"),
        _stamped(5, topic=TOPIC, offset=1, epoch=5),
        _stamped(6, topic=TOPIC, offset=1, epoch=""),
        _stamped(7, topic=TOPIC, offset=1, epoch="e" * 65),
        _stamped(8, offset=1, epoch="e"),
        _stamped(9, topic=["x"], offset=1, epoch="e"),
    ]
    bad_recoveries = [
        _recovery("nope"),
        _recovery({**good, "recovered": "yes"}),
        _recovery({**good, "offset": "1"}),
        _recovery({k: v for k, v in good.items() if k != "epoch"}),
        _recovery({**good, "topic": ""}),
    ]
    async with (
        history_server() as rig,
        client_for(rig.url, on_recovery=recorder(recoveries)) as client,
    ):
        with caplog.at_level(logging.WARNING, logger="tempest_ws.client"):
            for frame in [*bad_messages, *bad_recoveries, _stamped(10, topic=TOPIC, offset=9)]:
                await client.send("raw", {"frame": frame})
            await client.send("raw", {"frame": _stamped(11, topic=TOPIC, offset=9, epoch="zq9")})
            got = await take_envelopes(client, len(bad_messages) + 2)
        assert [(e.type, e.data) for e in got] == [
            ("published", {"n": n}) for n in (*range(1, 11), 11)
        ]
        stamped = [e.data["n"] for e in got if isinstance(e, StampedEnvelope)]
        assert stamped == [11]  # a malformed stamp leaves a plain WSEnvelope
        assert client.positions == {TOPIC: Position(9, "zq9")}
        assert recoveries == []
        assert client.connected
        assert len(rig.protocol.subscribes) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("malformed history position" in w for w in warnings) == len(bad_messages) + 1
    assert sum("malformed recovery" in w for w in warnings) == len(bad_recoveries)
    # never a message body; "zq9" is not hex, so no random client id contains it
    assert not any('"n"' in w or "zq9" in w for w in warnings)
