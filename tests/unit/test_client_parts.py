"""The client's parts without sockets: typed replies, pending requests, the inbox."""

from __future__ import annotations

import asyncio
import logging

import pytest
from pydantic import BaseModel, Field, ValidationError

from tempest_ws import WSEnvelope
from tempest_ws.client import RequestError
from tempest_ws.client._inbox import Inbox
from tempest_ws.client._pending import PendingRequests
from tempest_ws.client._requests import outbound_data, reply_into
from tempest_ws.exceptions import ConnectionClosedError
from tempest_ws.history import Position


class Sent(BaseModel):
    message_id: int = Field(alias="messageId")


class Defaults(BaseModel):
    note: str = "none"


def test_outbound_data_dumps_models_in_json_mode_by_alias() -> None:
    assert outbound_data(None) == {}
    assert outbound_data(Sent(messageId=3)) == {"messageId": 3}
    assert outbound_data([1, "a"]) == [1, "a"]


def test_a_reply_validates_into_its_model() -> None:
    reply = WSEnvelope(type="chat.send.reply", data={"messageId": 7}, request_id="r1")
    assert reply_into(reply, Sent) == Sent(messageId=7)


def test_an_ack_validates_its_data_and_a_null_one_as_an_empty_object() -> None:
    assert reply_into(WSEnvelope(type="ack", data={}, request_id="r"), Defaults) == Defaults()
    assert reply_into(WSEnvelope(type="ack", data=None, request_id="r"), Defaults) == Defaults()
    with pytest.raises(RequestError) as caught:
        reply_into(WSEnvelope(type="ack", data={}, request_id="r"), Sent)
    assert caught.value.code == "invalid_answer"
    assert "messageId" in caught.value.reason


def test_an_error_reply_raises_request_error_with_its_details() -> None:
    data = {"code": "invalid_data", "message": "no", "errors": [{"loc": ["text"]}]}
    reply = WSEnvelope(type="error", data=data, request_id="r9")
    with pytest.raises(RequestError) as caught:
        reply_into(reply, Sent)
    error = caught.value
    assert (error.code, error.reason, error.request_id) == ("invalid_data", "no", "r9")
    assert error.data == data
    assert error.envelope is reply
    assert str(error) == "no (invalid_data)"


def test_a_reply_that_does_not_validate_says_where_and_keeps_the_cause() -> None:
    reply = WSEnvelope(type="x.reply", data={"messageId": "seven"}, request_id="r2")
    with pytest.raises(RequestError) as caught:
        reply_into(reply, Sent)
    error = caught.value
    assert error.code == "invalid_answer"
    assert isinstance(error.__cause__, ValidationError)
    assert "Sent" in error.reason
    assert "messageId" in error.reason
    assert "seven" not in error.reason  # the reason never repeats the message body
    assert (error.request_id, error.data) == ("r2", {"messageId": "seven"})


def test_request_error_without_an_envelope() -> None:
    error = RequestError("refused")
    assert (error.code, error.data, error.request_id, error.envelope) == ("error", {}, None, None)


async def test_pending_requests_resolve_once_and_fail_what_is_left() -> None:
    pending = PendingRequests()
    first, second = pending.open("a"), pending.open("b")
    reply = WSEnvelope(type="ack", request_id="a")
    assert pending.resolve(reply)
    assert not pending.resolve(reply)  # answered already: the next one is the iterator's
    assert pending.waiting("a") is None
    assert await first is reply
    pending.fail(["a", "b", "unknown"], lambda: ConnectionClosedError("lost"))
    with pytest.raises(ConnectionClosedError):
        await second
    third = pending.open("c")
    pending.close("c")
    assert pending.waiting("c") is None
    assert not third.done()


async def test_the_inbox_drops_the_oldest_with_a_warning_and_wakes_readers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    inbox: Inbox[str] = Inbox(2, owner="c1")
    waiting = asyncio.Event()

    async def reader() -> None:
        waiting.set()  # nothing yields between this and waiting in changed()
        await inbox.changed()

    woken = asyncio.create_task(reader())
    await waiting.wait()
    with caplog.at_level(logging.WARNING, logger="tempest_ws.client"):
        inbox.put("one")
        inbox.put("two", ("t", Position(1, "e")))
        inbox.put("three")
    async with asyncio.timeout(5):
        await woken
    assert inbox.dropped == 1
    assert "dropped 1 received messages" in caplog.text
    assert [inbox.take(), inbox.take()] == [("two", ("t", Position(1, "e"))), ("three", None)]
    assert len(inbox) == 0
