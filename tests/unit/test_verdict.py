"""The inbound verdict as a pure function: one ASGI message in, one verdict out, no socket."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from tempest_ws._types import Message
from tempest_ws.router._ratelimit import TokenBucket
from tempest_ws.router._verdict import (
    PONG_FRAME,
    Invalid,
    SessionLimits,
    Verdict,
    frame_size,
    judge,
)
from tempest_ws.router.realtime import ENVELOPE_KEY, JSON_KEY, MODEL_KEY
from tempest_ws.wire.envelope import WSEnvelope
from tempest_ws.wire.messages import MessageRegistry

LIMITS = SessionLimits(
    max_message_bytes=256,
    accept_binary=False,
    max_invalid_frames=3,
    heartbeat_seconds=30.0,
    heartbeat_timeout=60.0,
    max_json_depth=4,
)
BINARY = SessionLimits(
    max_message_bytes=256,
    accept_binary=True,
    max_invalid_frames=3,
    heartbeat_seconds=30.0,
    heartbeat_timeout=60.0,
)

messages = MessageRegistry()


@messages.inbound("chat.send")
class ChatSend(BaseModel):
    text: str


class Routes:
    """The router's side as the verdict sees it: built-ins it claims, a typed registry."""

    def __init__(self, builtins: set[str]) -> None:
        self.builtins = builtins

    def claims(self, envelope: WSEnvelope) -> bool:
        return envelope.type in self.builtins

    def parse(self, envelope: WSEnvelope) -> BaseModel | None:
        return messages.parse(envelope)


def text(frame: str) -> Message:
    return {"type": "websocket.receive", "text": frame}


def frozen_bucket(capacity: int) -> TokenBucket:
    return TokenBucket(capacity, 60.0, clock=lambda: 0.0)


@pytest.mark.parametrize(
    ("frame", "verdict"),
    [
        (PONG_FRAME, Verdict.PONG),
        ('{"type": "pong", "data": {}}', Verdict.PONG),
        ('{"type": "ping", "request_id": "r1"}', Verdict.PING),
        ('{"type": "auth.refresh", "data": {"token": "t"}}', Verdict.REFRESH),
        ('{"type": "chat", "data": {"text": "hi"}}', Verdict.DELIVER),
    ],
)
def test_text_frames_without_a_router_registry(frame: str, verdict: Verdict) -> None:
    assert judge(text(frame), LIMITS) is verdict


def test_a_delivered_frame_carries_its_envelope_and_json_for_the_handler() -> None:
    message = text('{"type": "chat", "data": {"text": "hi"}, "room": "a"}')
    assert judge(message, LIMITS) is Verdict.DELIVER
    envelope = message[ENVELOPE_KEY]
    assert isinstance(envelope, WSEnvelope)
    assert envelope.type == "chat"
    assert message[JSON_KEY]["room"] == "a"
    assert MODEL_KEY not in message


def test_the_fast_pong_is_not_decoded() -> None:
    message = text(PONG_FRAME)
    assert judge(message, LIMITS) is Verdict.PONG
    assert ENVELOPE_KEY not in message


def test_the_rate_limit_comes_first_and_counts_pongs() -> None:
    bucket = frozen_bucket(2)
    assert judge(text(PONG_FRAME), LIMITS, bucket) is Verdict.PONG
    assert isinstance(judge(text("not json"), LIMITS, bucket), Invalid)
    assert judge(text(PONG_FRAME), LIMITS, bucket) is Verdict.RATE_LIMITED
    assert judge(text("x" * 1000), LIMITS, bucket) is Verdict.RATE_LIMITED  # before the size


def test_size_is_checked_before_decoding_and_counts_utf8_bytes() -> None:
    assert judge(text("x" * 257), LIMITS) is Verdict.TOO_BIG
    accented = '{"type":"' + "é" * 130 + '"}'  # 141 characters, 271 bytes
    assert judge(text(accented), LIMITS) is Verdict.TOO_BIG
    assert judge({"type": "websocket.receive", "bytes": b"x" * 257}, BINARY) is Verdict.TOO_BIG
    assert frame_size(text("é" * 10), 30) == 20  # could pass 30 bytes: exact
    assert frame_size(text("é" * 10), 1000) == 10  # cannot: the cheap bound


def test_binary_is_delivered_only_when_accepted() -> None:
    message: dict[str, Any] = {"type": "websocket.receive", "bytes": b"\x00\x01"}
    assert judge(message, BINARY) is Verdict.DELIVER
    refused = judge(message, LIMITS)
    assert refused == Invalid("binary_not_supported", "send JSON text frames")


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "invalid_json"),
        ("[1, 2]", "invalid_envelope"),
        ('{"data": {}}', "invalid_envelope"),
        ('{"type": "t", "data": [[[[[[1]]]]]]}', "json_too_deep"),
    ],
)
def test_undecodable_frames_are_invalid_with_their_error_code(frame: str, code: str) -> None:
    verdict = judge(text(frame), LIMITS)
    assert isinstance(verdict, Invalid)
    assert verdict.code == code
    assert verdict.envelope is None


def test_an_invalid_frame_keeps_a_readable_request_id() -> None:
    verdict = judge(text('{"request_id": "r7", "data": {}}'), LIMITS)
    assert isinstance(verdict, Invalid)
    assert verdict.request_id == "r7"


def test_with_a_router_registry_builtins_are_claimed_and_the_rest_validated() -> None:
    routes = Routes({"subscribe"})
    subscribe = text('{"type": "subscribe", "data": {"topic": "a"}}')
    assert judge(subscribe, LIMITS, None, routes) is Verdict.BUILTIN
    assert subscribe[ENVELOPE_KEY].type == "subscribe"

    valid = text('{"type": "chat.send", "data": {"text": "hi"}}')
    assert judge(valid, LIMITS, None, routes) is Verdict.DELIVER
    assert valid[MODEL_KEY] == ChatSend(text="hi")

    wrong = judge(
        text('{"type": "chat.send", "data": {}, "request_id": "r2"}'), LIMITS, None, routes
    )
    assert isinstance(wrong, Invalid)
    assert wrong.code == "invalid_data"
    assert wrong.request_id == "r2"
    assert wrong.envelope is not None

    unknown = judge(text('{"type": "nope", "data": {}}'), LIMITS, None, routes)
    assert isinstance(unknown, Invalid)
    assert unknown.code == "unknown_type"


def test_heartbeats_and_refresh_are_decided_before_the_registry() -> None:
    routes = Routes(set())
    for frame, verdict in [
        ('{"type": "ping"}', Verdict.PING),
        ('{"type": "pong"}', Verdict.PONG),
        ('{"type": "auth.refresh", "data": {}}', Verdict.REFRESH),
    ]:
        assert judge(text(frame), LIMITS, None, routes) is verdict
