"""Event handlers without sockets: reading signatures, building answers, the lane."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

import pytest
from fastapi import Depends, WebSocket
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tempest_ws import WebSocketConnection, WebSocketHub, WSEnvelope
from tempest_ws.router.events._handlers import Injected, read_handler
from tempest_ws.router.events._lane import QUEUE_SIZE, Lane
from tempest_ws.router.events._reply import answer_of
from tests.helpers.support import until


class In(BaseModel):
    """Something to do."""

    n: int


class Out(BaseModel):
    doubled: int


def get_value() -> int:
    return 1


async def full(
    message: In,
    connection: WebSocketConnection,
    hub: WebSocketHub,
    ws: WebSocket,
    envelope: WSEnvelope,
    a: Annotated[int, Depends(get_value)],
    b: int = Depends(get_value),  # the other spelling, on purpose
) -> Out:
    """Double it.

    More text.
    """
    return Out(doubled=message.n * 2)


def test_every_kind_of_parameter_is_read() -> None:
    handler = read_handler("x", full, errors=["nope"])
    assert handler.injected == (
        ("message", Injected.MESSAGE),
        ("connection", Injected.CONNECTION),
        ("hub", Injected.HUB),
        ("ws", Injected.WEBSOCKET),
        ("envelope", Injected.ENVELOPE),
    )
    assert handler.model is In
    assert handler.dependant is not None
    assert [d.name for d in handler.dependant.dependencies] == ["a", "b"]
    assert (handler.reply_model, handler.replies, handler.own_reply) == (Out, True, False)
    assert (handler.summary, handler.errors, handler.concurrent) == ("Double it.", ("nope",), False)


async def returns_none() -> None: ...


async def returns_dict() -> dict[str, Any]:
    return {}


async def returns_envelope() -> WSEnvelope:
    return WSEnvelope(type="t")


def test_the_return_annotation_says_what_replies() -> None:
    none, plain, own = (
        read_handler("x", f) for f in (returns_none, returns_dict, returns_envelope)
    )
    assert (none.replies, none.reply_model, none.model, none.dependant) == (False, None, None, None)
    assert (plain.replies, plain.reply_model, plain.own_reply) == (True, None, False)
    assert (own.replies, own.reply_model, own.own_reply) == (True, None, True)


def test_answers() -> None:
    handler = read_handler("x", full)
    request = WSEnvelope(type="x", data={"n": 2}, request_id="r")
    anonymous = WSEnvelope(type="x", data={"n": 2})
    assert answer_of(handler, anonymous, None) is None
    assert json.loads(answer_of(handler, request, None) or "") == {
        "type": "ack",
        "data": {},
        "request_id": "r",
    }
    assert json.loads(answer_of(handler, request, {"doubled": "4"}) or "") == {
        "type": "x.reply",
        "data": {"doubled": 4},  # validated into the annotated model
        "request_id": "r",
    }
    with pytest.raises(ValidationError):
        answer_of(handler, request, {"doubled": "four"})
    own = json.loads(answer_of(handler, request, WSEnvelope(type="room.joined")) or "")
    assert (own["type"], own["request_id"]) == ("room.joined", "r")


async def test_the_lane_runs_in_order_and_bounds_the_concurrent_ones() -> None:
    hub = WebSocketHub()

    async def send(message: Any) -> None:
        pass

    connection = hub.create_connection("u", send=send)
    lane: Lane[int] = Lane(connection, limit=2)
    done: list[int] = []
    running: list[int] = []
    peak = [0]
    gate = asyncio.Event()

    async def run(job: int) -> None:
        running.append(job)
        peak[0] = max(peak[0], len(running))
        if job >= 100:
            await gate.wait()
        running.remove(job)
        done.append(job)

    for job in range(5):
        assert lane.offer(job, concurrent=False)
    for job in (100, 101, 102):
        assert lane.offer(job, concurrent=True)
    serving = asyncio.create_task(lane.serve(run))
    await until(lambda: len(running) == 2)
    assert done == [0, 1, 2, 3, 4]
    assert lane.running == 2
    gate.set()
    await until(lambda: len(done) == 8)
    assert peak[0] == 2
    # a full queue refuses the next offer: the read loop then awaits submit()
    assert all(lane.offer(1000 + job, concurrent=False) for job in range(QUEUE_SIZE))
    assert not lane.offer(2000, concurrent=False)
    await connection.close()
    await serving  # returns once closing, dropping what still waits
    assert lane.running == 0


class Aliased(BaseModel):
    """A reply with an alias and values JSON writes differently from Python."""

    model_config = ConfigDict(populate_by_name=True)

    created_at: datetime = Field(alias="createdAt")
    ids: set[int]
    ratio: Decimal


async def returns_aliased() -> Aliased:
    return Aliased(createdAt=datetime(2026, 1, 2, tzinfo=UTC), ids={3}, ratio=Decimal("0.5"))


async def test_a_returned_model_is_dumped_as_model_dump_json_by_alias() -> None:
    handler = read_handler("x", returns_aliased)
    result = await returns_aliased()
    request = WSEnvelope(type="x", request_id="r")
    assert json.loads(answer_of(handler, request, result) or "")["data"] == result.model_dump(
        mode="json", by_alias=True
    )
    assert json.loads(answer_of(handler, request, result) or "")["data"] == {
        "createdAt": "2026-01-02T00:00:00Z",
        "ids": [3],
        "ratio": "0.5",
    }
