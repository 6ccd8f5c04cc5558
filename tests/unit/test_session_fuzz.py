"""Whatever a client sends, the inbound guard answers without crashing (hypothesis)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tempest_ws import EnvelopeError, WSEnvelope, decode_envelope

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(), st.binary(), json_values.map(json.dumps)))
def test_decode_either_returns_an_envelope_or_a_coded_error(frame: Any) -> None:
    codes: set[object] = set()
    try:
        envelope = decode_envelope(frame)
    except EnvelopeError as exc:
        codes.add(exc.code)
    else:
        assert isinstance(envelope, WSEnvelope)
        assert envelope.type
    assert codes <= {"invalid_json", "invalid_envelope"}


@settings(max_examples=100)
@given(st.integers(min_value=1, max_value=5000))
def test_deep_nesting_is_refused_cleanly(depth: int) -> None:
    frame = '{"type":"x","data":' + "[" * depth + "]" * depth + "}"
    codes: set[object] = set()
    try:
        decode_envelope(frame)
    except EnvelopeError as exc:
        codes.add(exc.code)
    assert codes <= {"invalid_json"}
