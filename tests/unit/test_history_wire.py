"""The history wire format: stamping a serialized frame by splicing equals serializing the
whole object; positions read back; subscribe and recovery envelopes; optional redis."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from tempest_ws.envelope import WSEnvelope, decode_envelope, decode_frame, encode_envelope
from tempest_ws.history import (
    RECOVERY,
    Position,
    Recovery,
    StampedEnvelope,
    new_epoch,
    position_of,
    recovery_envelope,
    requested_position,
    stamp_frame,
)
from tempest_ws.history.wire import Stamper, is_compact

json_scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text()
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
topics = st.text(min_size=1, max_size=256)
positions = st.builds(
    Position,
    st.integers(0, 2**53),
    st.one_of(st.text(min_size=1, max_size=64), st.builds(new_epoch)),
)


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@given(
    kind=st.text(min_size=1, max_size=128),
    data=json_values,
    request_id=st.none() | st.text(max_size=128),
    topic=topics,
    position=positions,
)
def test_stamping_equals_serializing_the_whole_object(
    kind: str, data: Any, request_id: str | None, topic: str, position: Position
) -> None:
    body = {"type": kind, "data": data, "request_id": request_id}
    whole = {**body, "topic": topic, "offset": position.offset, "epoch": position.epoch}
    assert stamp_frame(dumps(body), topic, position) == dumps(whole)


@given(
    kind=st.text(min_size=1, max_size=128),
    data=json_values | st.floats(allow_nan=False, allow_infinity=False),
    topic=topics,
    position=positions,
)
def test_stamped_envelopes_parse_and_carry_their_position(
    kind: str, data: Any, topic: str, position: Position
) -> None:
    frame = encode_envelope({"type": kind, "data": data})  # orjson when installed
    stamped = stamp_frame(frame, topic, position)
    parsed = json.loads(stamped)
    assert list(parsed) == ["type", "data", "request_id", "topic", "offset", "epoch"]
    assert parsed == {**json.loads(frame), "topic": topic, **position._asdict()}
    assert position_of(parsed) == (topic, position)
    envelope = decode_envelope(stamped)  # older peers: the new keys are ignored
    assert (envelope.type, envelope.data) == (kind, json.loads(frame)["data"])
    typed = StampedEnvelope.stamp(envelope, topic, position)  # what the client yields
    assert typed == StampedEnvelope.model_validate(parsed)
    assert (typed.topic, typed.position) == (topic, position)
    assert encode_envelope(typed) == encode_envelope(envelope)  # the stamp is not re-sent


def test_stamped_envelope_is_a_frozen_validated_ws_envelope() -> None:
    envelope, raw = decode_frame(stamp_frame('{"type":"m","data":{"n":1}}', "t", Position(3, "e")))
    stamped = StampedEnvelope.stamp(envelope, *position_of(raw) or ("", Position(0, "")))
    assert isinstance(stamped, WSEnvelope)
    assert (stamped.type, stamped.data, stamped.request_id) == ("m", {"n": 1}, None)
    assert (stamped.topic, stamped.offset, stamped.epoch) == ("t", 3, "e")
    assert stamped.position == Position(3, "e")
    assert stamped != envelope  # pydantic: equal only within one class
    with pytest.raises(ValidationError):
        stamped.offset = 4  # type: ignore[misc]
    for bad in ({"topic": ""}, {"offset": -1}, {"epoch": ""}, {"epoch": "e" * 65}):
        with pytest.raises(ValidationError):
            StampedEnvelope.model_validate({**raw, **bad})


@given(data=json_values, topic=topics, first=positions, second=positions)
def test_a_topics_stamper_stamps_as_stamp_frame(
    data: Any, topic: str, first: Position, second: Position
) -> None:
    stamper = Stamper(topic)
    frame = dumps({"type": "m", "data": data, "request_id": None})
    for position in (first, second, first):  # the epoch changes and changes back
        assert stamper(frame, position) == stamp_frame(frame, topic, position)
    for edge in ("{}", "{ }", json.dumps({"type": "m"}, indent=2)):
        assert stamper(edge, first) == stamp_frame(edge, topic, first)
    for bad in ('"text"', "[1]", "{", "}", '{"a":1} ', ""):
        with pytest.raises(ValueError, match="JSON object"):
            stamper(bad, first)


@given(data=json_values, topic=topics, first=positions, second=positions)
def test_the_compact_stamp_of_an_encoded_envelope_is_the_full_stamp(
    data: Any, topic: str, first: Position, second: Position
) -> None:
    stamper = Stamper(topic)
    frame = encode_envelope({"type": "m", "data": data})
    assert is_compact(frame)
    for position in (first, second, first, Position(first.offset + 1, first.epoch)):
        assert stamper.compact(frame, position) == stamp_frame(frame, topic, position)
        assert stamper(frame, position) == stamp_frame(frame, topic, position)


def test_stamping_edge_frames() -> None:
    position = Position(7, "e")
    assert stamp_frame("{}", "t", position) == '{"topic":"t","offset":7,"epoch":"e"}'
    pretty = json.dumps({"type": "m"}, indent=2)
    assert json.loads(stamp_frame(pretty, "t", position)) == {
        "type": "m",
        "topic": "t",
        "offset": 7,
        "epoch": "e",
    }
    assert json.loads(stamp_frame("{ }", 't"\\\n', position))["topic"] == 't"\\\n'
    for bad in ('"text"', "[1]", "{", "}", '{"a":1} '):
        with pytest.raises(ValueError, match="JSON object"):
            stamp_frame(bad, "t", position)


def test_position_of_rejects_what_is_not_a_position() -> None:
    good = {"type": "m", "topic": "t", "offset": 3, "epoch": "e"}
    assert position_of(good) == ("t", Position(3, "e"))
    for change in (
        {"topic": None},
        {"topic": ""},
        {"topic": "x" * 257},
        {"offset": -1},
        {"offset": True},
        {"offset": 1.0},
        {"epoch": ""},
        {"epoch": 5},
        {"epoch": "x" * 65},
    ):
        assert position_of({**good, **change}) is None, change
    assert position_of({"type": "m", "data": {}}) is None


def test_requested_position() -> None:
    assert requested_position({"topic": "t"}) is None
    assert requested_position(None) is None
    assert requested_position("not a mapping") is None
    assert requested_position({"topic": "t", "offset": 0, "epoch": "e"}) == Position(0, "e")
    for data in (
        {"offset": 3},
        {"epoch": "e"},
        {"offset": "3", "epoch": "e"},
        {"offset": False, "epoch": "e"},
        {"offset": -2, "epoch": "e"},
        {"offset": 3, "epoch": ""},
        {"offset": 3, "epoch": "e" * 65},
    ):
        with pytest.raises(ValueError, match="offset must be"):
            requested_position({"topic": "t", **data})


def test_recovery_envelope() -> None:
    recovery = Recovery((), True, Position(45, "065a1f3c2b9d1e5d09c7a"))
    frame = recovery_envelope("chat:1", recovery, replayed=3, request_id="r1")
    assert frame == (
        '{"type":"recovery","data":{"topic":"chat:1","recovered":true,"replayed":3,'
        '"offset":45,"epoch":"065a1f3c2b9d1e5d09c7a"},"request_id":"r1"}'
    )
    assert decode_envelope(frame).type == RECOVERY
    lost = json.loads(recovery_envelope("t", Recovery((), False, Position(0, "e")), replayed=0))
    assert lost["data"]["recovered"] is False
    assert lost["request_id"] is None


def test_epochs_sort_by_creation_time() -> None:
    assert len(new_epoch()) == 21
    assert new_epoch(1) < new_epoch(2) < new_epoch()
    assert int(new_epoch(0x0123456789ABC)[:13], 16) == 0x0123456789ABC


def test_history_does_not_import_redis_and_redis_history_names_the_extra() -> None:
    code = (
        "import sys\n"
        "import tempest_ws.history as h\n"
        "assert 'redis' not in sys.modules, 'redis imported eagerly'\n"
        "sys.modules['redis'] = None\n"
        "try:\n"
        "    h.RedisHistory\n"
        "except ImportError as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == (
        "MissingDependencyError 'redis' is not installed; tempest-ws's 'redis' extra needs: "
        "pip install 'redis>=8.1' (redis)"
    )
