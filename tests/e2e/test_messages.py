"""The typed message registry: registration rules, parsing, safe errors, outbound envelopes.

The first part is pure (no sockets). The last part drives ``examples/typed_messages.py``
over a real uvicorn socket with the ``tempest_ws.testing`` helpers.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, Field, field_validator

from examples import typed_messages
from tempest_ws import EnvelopeError, WSEnvelope
from tempest_ws.exceptions import ConfigurationError
from tempest_ws.messages import INVALID_DATA, UNKNOWN_TYPE, MessageRegistry
from tempest_ws.testing import HubProbe, live_server
from tests.helpers.support import make_settings, token

# -- registration ---------------------------------------------------------------------


class Note(BaseModel):
    """A note.

    More text that is not the summary.
    """

    title: str = Field(max_length=20)
    tags: list[str] = []


def test_decorators_register_and_return_the_class() -> None:
    messages = MessageRegistry()
    assert messages.inbound("note.add")(Note) is Note
    assert messages.outbound("note.added", summary="Someone added a note")(Note) is Note
    assert dict(messages.inbound_types) == {"note.add": Note}
    assert dict(messages.outbound_types) == {"note.added": Note}
    summaries = {(r.direction, r.message_type): r.summary for r in messages.registrations()}
    assert summaries == {
        ("inbound", "note.add"): "A note.",
        ("outbound", "note.added"): "Someone added a note",
    }
    assert messages.accepts("note.add")
    assert not messages.accepts("note.added")


def test_registering_the_same_class_twice_is_a_no_op_and_another_class_fails() -> None:
    messages = MessageRegistry()
    messages.inbound("note.add")(Note)
    revision = messages.revision
    messages.inbound("note.add")(Note)
    assert messages.revision == revision

    class Other(BaseModel):
        x: int

    with pytest.raises(ConfigurationError, match="already registered"):
        messages.inbound("note.add")(Other)
    messages.outbound("note.add")(Other)  # the other direction is a separate table


@pytest.mark.parametrize("kind", ["hello", "ping", "pong", "error", "ack", "resync", "", "x" * 129])
def test_reserved_empty_and_long_types_are_refused(kind: str) -> None:
    with pytest.raises(ConfigurationError):
        MessageRegistry().inbound(kind)


def test_only_pydantic_models_can_be_registered() -> None:
    with pytest.raises(ConfigurationError, match="BaseModel"):
        MessageRegistry().inbound("x")(dict)  # type: ignore[type-var]


# -- parsing --------------------------------------------------------------------------


@pytest.fixture
def messages() -> MessageRegistry:
    registry = MessageRegistry()
    registry.inbound("note.add")(Note)
    registry.outbound("note.added")(Note)
    return registry


@pytest.mark.parametrize(
    "envelope",
    [
        WSEnvelope(type="note.add", data={"title": "hi", "tags": ["a"]}, request_id="r1"),
        {"type": "note.add", "data": {"title": "hi", "tags": ["a"]}},
        '{"type":"note.add","data":{"title":"hi","tags":["a"]}}',
        b'{"type":"note.add","data":{"title":"hi","tags":["a"]}}',
    ],
)
def test_parse_accepts_envelopes_mappings_and_frames(
    messages: MessageRegistry, envelope: Any
) -> None:
    assert messages.parse(envelope) == Note(title="hi", tags=["a"])


def test_unknown_and_outbound_only_types_are_unknown_type(messages: MessageRegistry) -> None:
    for kind in ("nope", "note.added"):
        with pytest.raises(EnvelopeError) as caught:
            messages.parse({"type": kind, "data": {}})
        assert caught.value.code == UNKNOWN_TYPE
        assert repr(kind) in caught.value.reason


def test_invalid_data_lists_field_paths_and_never_the_payload(messages: MessageRegistry) -> None:
    secret = "s3cr3t-value-the-client-sent"
    with pytest.raises(EnvelopeError) as caught:
        messages.parse({"type": "note.add", "data": {"title": secret, "tags": [secret, 7]}})
    error = caught.value
    assert error.code == INVALID_DATA
    assert error.reason == "invalid data: data.title: string_too_long, data.tags.1: string_type"
    assert secret not in str(error)


def test_invalid_data_hides_client_chosen_keys_and_validator_messages() -> None:
    registry = MessageRegistry()

    @registry.inbound("scores")
    class Scores(BaseModel):
        by_player: dict[str, int]
        code: str

        @field_validator("code")
        @classmethod
        def _check(cls, value: str) -> str:
            raise ValueError(f"bad code {value}")  # quotes the input: must not leak

    with pytest.raises(EnvelopeError) as caught:
        registry.parse(
            {"type": "scores", "data": {"by_player": {"<script>": "x"}, "code": "leak-me"}}
        )
    reason = caught.value.reason
    assert reason == "invalid data: data.by_player.*: int_parsing, data.code: value_error"
    assert "script" not in reason
    assert "leak-me" not in reason


def test_keys_that_look_like_field_names_are_still_hidden() -> None:
    registry = MessageRegistry()

    class Inner(BaseModel):
        model_config = ConfigDict(extra="forbid")
        level: int = Field(alias="Level")

    @registry.inbound("prefs")
    class Prefs(BaseModel):
        by_user: dict[str, Inner]

    data = {"by_user": {"alice": {"Level": "high", "nickname": "al"}}}
    with pytest.raises(EnvelopeError) as caught:
        registry.parse({"type": "prefs", "data": data})
    assert caught.value.reason == (
        "invalid data: data.by_user.*.Level: int_parsing, data.by_user.*.*: extra_forbidden"
    )


def test_invalid_data_reports_at_most_five_errors() -> None:
    registry = MessageRegistry()

    @registry.inbound("many")
    class Many(BaseModel):
        values: list[int]

    with pytest.raises(EnvelopeError) as caught:
        registry.parse({"type": "many", "data": {"values": ["x"] * 9}})
    assert caught.value.reason.endswith("data.values.4: int_parsing (+4 more)")


@pytest.mark.parametrize(
    ("frame", "code"),
    [("not json", "invalid_json"), ("[1]", "invalid_envelope"), ({"data": {}}, "invalid_envelope")],
)
def test_non_envelopes_keep_the_envelope_codes(
    messages: MessageRegistry, frame: Any, code: str
) -> None:
    with pytest.raises(EnvelopeError) as caught:
        messages.parse(frame)
    assert caught.value.code == code


def test_data_that_is_not_an_object_is_invalid_data(messages: MessageRegistry) -> None:
    with pytest.raises(EnvelopeError) as caught:
        messages.parse({"type": "note.add", "data": [1, 2]})
    assert caught.value.reason == "invalid data: data: model_type"


# -- outbound -------------------------------------------------------------------------


class Aliased(BaseModel):
    user_name: str = Field(alias="userName")


def test_envelope_uses_the_registered_type_json_mode_and_aliases() -> None:
    registry = MessageRegistry()
    registry.outbound("user.seen")(Aliased)
    envelope = registry.envelope(Aliased(userName="ann"), request_id="r9")
    assert envelope == WSEnvelope(type="user.seen", data={"userName": "ann"}, request_id="r9")


def test_envelope_finds_a_registered_base_class() -> None:
    registry = MessageRegistry()
    registry.outbound("note.added")(Note)

    class Sticky(Note):
        pinned: bool = True

    assert registry.envelope(Sticky(title="t")).type == "note.added"


def test_envelope_needs_a_type_when_the_model_serves_several() -> None:
    registry = MessageRegistry()
    registry.outbound("user.joined")(Aliased)
    registry.outbound("user.left")(Aliased)
    with pytest.raises(ConfigurationError, match="pass message_type"):
        registry.envelope(Aliased(userName="a"))
    left = registry.envelope(Aliased(userName="a"), message_type="user.left")
    assert left.type == "user.left"
    with pytest.raises(ConfigurationError, match="takes Aliased"):
        registry.envelope(Note(title="x"), message_type="user.left")
    with pytest.raises(ConfigurationError, match="is not registered as an outbound"):
        registry.envelope(Note(title="x"))
    with pytest.raises(ConfigurationError, match="no outbound message"):
        registry.envelope(Note(title="x"), message_type="nope")


# -- the example over a real socket ---------------------------------------------------


async def test_typed_messages_example_round_trip() -> None:
    settings = make_settings()
    app = typed_messages.create_app(settings, rooms={"lobby": {"ann", "bob"}})
    with HubProbe(app.state.hub) as probe:
        async with (
            live_server(app, settings=settings) as server,
            server.connect(token("ann")) as ann,
            server.connect(token("bob")) as bob,
        ):
            for client in (ann, bob):
                await client.send_envelope("room.join", {"room": "lobby"}, request_id="j1")
                joined = await client.expect("room.joined")
                assert joined == WSEnvelope(
                    type="room.joined", data={"room": "lobby"}, request_id="j1"
                )

            await ann.send_envelope("chat.send", {"room": "lobby", "text": "hi"})
            expected = {"room": "lobby", "sender": "ann", "text": "hi"}
            assert (await ann.expect("chat.message")).data == expected
            assert (await bob.expect("chat.message")).data == expected

            # invalid data and unknown types answer with an error and keep the connection
            await bob.send_envelope("chat.send", {"room": "Lobby!", "text": ""}, request_id="c2")
            error = await bob.expect("error")
            assert error.request_id == "c2"
            assert error.data == {
                "code": "invalid_data",
                "message": "invalid data: data.room: string_pattern_mismatch, "
                "data.text: string_too_short",
            }
            await bob.send_envelope("chat.message", {}, request_id="c3")
            error = await bob.expect("error")
            assert (error.data["code"], error.request_id) == ("unknown_type", "c3")

            # not a member of "staff", and never joined it: refused, still open
            await bob.send_envelope("room.join", {"room": "staff"}, request_id="j2")
            error = await bob.expect("error")
            assert (error.data["code"], error.request_id) == ("forbidden", "j2")
            await bob.send_envelope("chat.send", {"room": "staff", "text": "hi"}, request_id="c4")
            error = await bob.expect("error")
            assert (error.data["code"], error.request_id) == ("not_subscribed", "c4")

            await bob.send_envelope("chat.send", {"room": "lobby", "text": "still here"})
            assert (await ann.expect("chat.message")).data["text"] == "still here"

    [first, second] = [d for d in probe.deliveries if d.method == "broadcast"]
    assert first.arguments["topic"] == "room:lobby"
    assert first.users == second.users == {"ann", "bob"}


def test_typed_messages_example_schema_is_what_parse_checks() -> None:
    registry = typed_messages.messages
    assert set(registry.inbound_types) == {"room.join", "chat.send"}
    assert set(registry.outbound_types) == {"room.joined", "chat.message"}
    schema = registry.inbound_types["chat.send"].model_json_schema()
    assert json.loads(json.dumps(schema))["properties"]["text"]["maxLength"] == 500
