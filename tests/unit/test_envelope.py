"""Envelope encoding and decoding, with and without orjson."""

from __future__ import annotations

import json

import pytest

from tempest_ws import (
    EnvelopeError,
    TempestWSError,
    UnencodableMessageError,
    WSEnvelope,
    decode_envelope,
    encode_envelope,
)
from tempest_ws.wire import envelope as envelope_module


def test_model_and_mapping_encode_identically() -> None:
    model = WSEnvelope(type="chat", data={"text": "é"}, request_id="r1")
    mapping = {"type": "chat", "data": {"text": "é"}, "request_id": "r1"}
    assert encode_envelope(model) == encode_envelope(mapping)
    assert json.loads(encode_envelope(model)) == mapping


def test_mapping_defaults() -> None:
    assert json.loads(encode_envelope({"type": "x"})) == {
        "type": "x",
        "data": {},
        "request_id": None,
    }


@pytest.mark.parametrize("bad", [{}, {"type": ""}, {"type": 3}])
def test_mapping_without_type_is_refused(bad: dict[str, object]) -> None:
    with pytest.raises(EnvelopeError) as info:
        encode_envelope(bad)
    assert info.value.code == "invalid_envelope"


def test_unencodable_data_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="cannot encode"):
        encode_envelope({"type": "x", "data": {"when": object()}})


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "invalid_json"),
        ("[1, 2]", "invalid_envelope"),
        ('"text"', "invalid_envelope"),
        ('{"data": {}}', "invalid_envelope"),
        ('{"type": 5}', "invalid_envelope"),
        ('{"type": "x", "request_id": 5}', "invalid_envelope"),
        ('{"type": "' + "t" * 200 + '"}', "invalid_envelope"),
        ("[" * 100_000, "invalid_json"),
    ],
)
def test_decode_rejects(frame: str, code: str) -> None:
    with pytest.raises(EnvelopeError) as info:
        decode_envelope(frame)
    assert info.value.code == code


def test_decode_ignores_unknown_fields() -> None:
    envelope = decode_envelope('{"type": "x", "data": [1], "extra": true}')
    assert envelope == WSEnvelope(type="x", data=[1])


def test_stdlib_json_fallback_gives_the_same_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    body = {"type": "t", "data": {"a": [1, 2.5, None, "ü"]}, "request_id": None}
    fast = encode_envelope(body)
    monkeypatch.setattr(envelope_module, "_dumps", envelope_module._json_dumps)
    monkeypatch.setattr(envelope_module, "_loads", json.loads)
    assert encode_envelope(body) == fast
    assert decode_envelope(fast).data == body["data"]


def test_decode_error_keeps_a_readable_request_id() -> None:
    with pytest.raises(EnvelopeError) as info:
        decode_envelope('{"type": "' + "t" * 200 + '", "request_id": "r-1"}')
    assert info.value.request_id == "r-1"
    with pytest.raises(EnvelopeError) as info:
        decode_envelope('{"type": 1, "request_id": 5}')
    assert info.value.request_id is None


def _nested(levels: int) -> str:
    return "[" * levels + "]" * levels


@pytest.mark.parametrize(
    ("frame", "limit", "deeper"),
    [
        (_nested(32), 32, False),
        (_nested(33), 32, True),
        ('{"a":[{"b":[1,{"c":{}}]}]}', 6, False),
        ('{"a":[{"b":[1,{"c":{}}]}]}', 5, True),
        ('{"a":"' + "[" * 50 + '"}', 2, False),  # brackets in a string are not nesting
        ("[" + ",".join(["[]"] * 500) + "]", 2, False),  # wide, not deep
    ],
)
def test_json_depth_exceeds_counts_container_levels(frame: str, limit: int, deeper: bool) -> None:
    value = json.loads(frame)
    assert envelope_module.json_depth_exceeds(frame, value, limit) is deeper
    assert envelope_module.json_depth_exceeds(frame.encode(), value, limit) is deeper


def test_a_frame_past_max_depth_is_json_too_deep_and_unlimited_by_default() -> None:
    frame = '{"type":"t","data":' + _nested(40) + "}"
    assert len(decode_envelope(frame).data) == 1
    with pytest.raises(EnvelopeError) as info:
        decode_envelope(frame, max_depth=32)
    assert info.value.code == "json_too_deep"
    assert str(info.value) == "JSON nested deeper than 32 levels (json_too_deep)"


@pytest.mark.parametrize("data", [{1, 2}, object(), {1: "x"}, json.loads(_nested(300))])
def test_unencodable_data_raises_unencodable_message_error(data: object) -> None:
    with pytest.raises(UnencodableMessageError) as info:
        encode_envelope({"type": "t", "data": data})
    assert isinstance(info.value, TypeError)
    assert isinstance(info.value, TempestWSError)
    assert (info.value.code, info.value.message_type) == ("unencodable", "t")
