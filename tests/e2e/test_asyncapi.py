"""The generated AsyncAPI document validates against the official 3.0.0 schema.

The schema is ``schemas/3.0.0-without-$id.json`` from the npm package
``@asyncapi/specs`` (the schemas the official ``@asyncapi/parser`` validates with),
vendored gzipped in ``tests/data/`` so the suite needs no network and no Node.js. Its
SHA-256 is pinned here; ``tests/data/README.md`` says how to check or refresh it.

Beyond the schema, the tests check what a schema cannot: every ``$ref`` resolves, every
operation's messages belong to its channel (a rule the parser enforces), and every
registered message is listed.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel, Field

from examples import typed_messages
from tempest_ws import CLOSE_CODE_INFO, WebSocketHub, allow_any_topic, make_websocket_router
from tempest_ws.asyncapi import (
    ASYNCAPI_VERSION,
    CLOSE_CODES_EXTENSION,
    add_asyncapi_route,
    asyncapi_document,
)
from tempest_ws.exceptions import ConfigurationError
from tempest_ws.messages import MessageRegistry
from tempest_ws.testing import FakeTokens, live_server
from tests.helpers.support import echo_handler, make_settings

SCHEMA_FILE = Path(__file__).parents[1] / "data" / "asyncapi-3.0.0.schema.json.gz"
SCHEMA_SHA256 = "abe96881dbfaad495ccbb6bd8d3fb43ca18a13b9d7564849ccb66f39d5e5b20f"
"""sha256 of ``schemas/3.0.0-without-$id.json`` in ``@asyncapi/specs`` 6.11.1."""


@cache
def official_schema() -> dict[str, Any]:
    raw = gzip.decompress(SCHEMA_FILE.read_bytes())
    assert hashlib.sha256(raw).hexdigest() == SCHEMA_SHA256, "vendored schema was altered"
    schema: dict[str, Any] = json.loads(raw)
    return schema


def validation_errors(document: dict[str, Any]) -> list[str]:
    """Every violation of the official schema, as ``path: message`` lines."""
    try:
        import jsonschema
    except ImportError:
        message = "jsonschema is not installed: add 'jsonschema>=4.18' to the dev extra"
        if os.environ.get("TEMPEST_WS_REQUIRE_TOOLS") or os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    validator = jsonschema.Draft7Validator(official_schema())
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message[:300]}"
        for error in validator.iter_errors(document)
    ]


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def assert_consistent(document: dict[str, Any]) -> None:
    """The checks the official parser adds on top of the JSON schema."""
    for ref in refs(document):
        resolve(document, ref)
    for name, operation in document["operations"].items():
        channel_ref = operation["channel"]["$ref"]
        for message in operation["messages"]:
            assert message["$ref"].startswith(channel_ref + "/messages/"), name


# -- a registry exercising the schema translation -------------------------------------


class Circle(BaseModel):
    kind: Literal["circle"]
    radius: float = Field(gt=0)


class Square(BaseModel):
    kind: Literal["square"]
    side: float


class Point(BaseModel):
    """A point on the canvas."""

    xy: tuple[int, int]
    label: str | None = None


def drawing_registry() -> MessageRegistry:
    messages = MessageRegistry()

    @messages.inbound("shape.draw", summary="Draw a shape")
    class ShapeDraw(BaseModel):
        shape: Annotated[Circle | Square, Field(discriminator="kind")]
        at: Point
        path: list[Point] = []

    @messages.outbound("shape.drawn")
    class ShapeDrawn(BaseModel):
        by: str = Field(alias="byUser")
        shape: Circle | Square

    messages.inbound("cursor")(Point)
    messages.outbound("cursor")(Point)  # same model both ways: one message, two operations
    return messages


# -- the schema itself -----------------------------------------------------------------


def test_vendored_schema_is_the_pinned_official_file() -> None:
    schema = official_schema()
    assert schema["title"] == "AsyncAPI 3.0.0 schema."
    assert schema["properties"]["asyncapi"]["const"] == ASYNCAPI_VERSION


def test_validation_catches_a_broken_document() -> None:
    document = asyncapi_document(drawing_registry(), settings=make_settings())
    document["operations"]["send.hello"]["action"] = "publish"  # AsyncAPI 2 vocabulary
    schema = document["components"]["schemas"]["Point"]
    schema["discriminator"] = {"propertyName": "kind"}  # OpenAPI's form, not AsyncAPI's
    errors = validation_errors(document)
    assert any(line.startswith("operations/send.hello") for line in errors), errors
    assert any(line.startswith("components/schemas/Point") for line in errors), errors


# -- documents -------------------------------------------------------------------------


@pytest.mark.parametrize("query_token", [True, False])
def test_document_validates_and_lists_every_message(query_token: bool) -> None:
    messages = drawing_registry()
    settings = make_settings(WS_ALLOW_QUERY_TOKEN=query_token)
    document = asyncapi_document(
        messages,
        settings=settings,
        path="/draw",
        title="Drawing",
        version="2.1.0",
        description="Shared canvas.",
        servers={"production": "wss://draw.example.com", "local": "ws://127.0.0.1:8000/api"},
    )
    assert validation_errors(document) == []
    assert_consistent(document)

    channel = document["channels"]["draw"]
    assert channel["address"] == "/draw"
    received = {
        resolve(document, op["messages"][0]["$ref"])["$ref"].rsplit("/", 1)[1]
        for op in document["operations"].values()
        if op["action"] == "receive"
    }
    sent = {
        resolve(document, op["messages"][0]["$ref"])["$ref"].rsplit("/", 1)[1]
        for op in document["operations"].values()
        if op["action"] == "send"
    }
    assert received == {"ping", "pong", "auth.refresh", "shape.draw", "cursor"}
    assert sent == {
        "hello",
        "ping",
        "pong",
        "error",
        "ack",
        "resync",
        "recovery",
        "shape.drawn",
        "cursor",
    }
    names = {m["name"] for m in document["components"]["messages"].values()}
    assert names == received | sent

    binding = channel["bindings"]["ws"]
    assert set(binding["headers"]["properties"]) == {
        "Sec-WebSocket-Protocol",
        "Authorization",
        "Origin",
    }
    schemes = document["components"]["securitySchemes"]
    if query_token:
        assert binding["query"]["properties"]["token"]["type"] == "string"
        assert schemes["queryToken"] == {**schemes["queryToken"], "in": "query", "name": "token"}
    else:
        assert "query" not in binding
        assert "queryToken" not in schemes
    assert document["servers"]["production"] == {
        "host": "draw.example.com",
        "protocol": "wss",
        "security": [{"$ref": f"#/components/securitySchemes/{name}"} for name in schemes],
    }
    assert document["servers"]["local"]["pathname"] == "/api"
    assert document["info"] == {
        "title": "Drawing",
        "version": "2.1.0",
        "description": "Shared canvas.",
    }


def test_message_payloads_are_envelopes_around_the_model_schemas() -> None:
    document = asyncapi_document(drawing_registry(), settings=make_settings())
    messages = document["components"]["messages"]
    draw = messages["shape.draw"]
    assert draw["summary"] == "Draw a shape"
    assert draw["correlationId"] == {"$ref": "#/components/correlationIds/requestId"}
    payload = draw["payload"]
    assert payload["required"] == ["type", "data"]
    assert payload["properties"]["type"] == {"type": "string", "const": "shape.draw"}
    data = resolve(document, payload["properties"]["data"]["$ref"])
    assert set(data["properties"]) == {"shape", "at", "path"}
    # outbound models are documented as the server serializes them: by alias
    drawn = resolve(document, messages["shape.drawn"]["payload"]["properties"]["data"]["$ref"])
    assert "byUser" in drawn["properties"]
    assert messages["cursor"]["summary"] == "A point on the canvas."
    assert "description" not in messages["cursor"]  # a one-line docstring is the summary
    assert messages["hello"]["description"].startswith("First frame on every accepted")


def test_pydantic_2020_12_keywords_are_translated_for_asyncapi() -> None:
    document = asyncapi_document(drawing_registry(), settings=make_settings())
    schemas = document["components"]["schemas"]
    shape = resolve(
        document,
        document["components"]["messages"]["shape.draw"]["payload"]["properties"]["data"]["$ref"],
    )["properties"]["shape"]
    assert shape["discriminator"] == "kind"
    assert [s["$ref"] for s in shape["oneOf"]] == [
        "#/components/schemas/Circle",
        "#/components/schemas/Square",
    ]
    xy = schemas["Point"]["properties"]["xy"]
    assert "prefixItems" not in xy
    assert xy["items"] == [{"type": "integer"}, {"type": "integer"}]
    assert "$defs" not in json.dumps(document)


def test_close_codes_extension_is_the_code_table() -> None:
    document = asyncapi_document(None, settings=make_settings())
    channel = document["channels"]["ws"]
    listed = channel[CLOSE_CODES_EXTENSION]
    assert [(c["code"], c["name"]) for c in listed] == [
        (int(code), code.name) for code in CLOSE_CODE_INFO
    ]
    for entry, info in zip(listed, CLOSE_CODE_INFO.values(), strict=True):
        assert (entry["meaning"], entry["client_action"], entry["reconnect"]) == (
            info.meaning,
            info.client_action,
            info.reconnect,
        )
        assert f"| {entry['code']} | `{entry['name']}` |" in channel["description"]
    assert validation_errors(document) == []


def test_builtin_envelopes_alone_validate() -> None:
    document = asyncapi_document(settings=make_settings(), path="/")
    assert list(document["channels"]) == ["root"]
    assert "servers" not in document
    assert validation_errors(document) == []
    assert_consistent(document)
    hello = resolve(
        document,
        document["components"]["messages"]["hello"]["payload"]["properties"]["data"]["$ref"],
    )
    assert set(hello["required"]) == {
        "connection_id",
        "heartbeat_seconds",
        "heartbeat_timeout_seconds",
        "max_message_bytes",
    }


def directions(document: dict[str, Any]) -> dict[str, set[str]]:
    """Message names by operation action (``send`` / ``receive``)."""
    found: dict[str, set[str]] = {"send": set(), "receive": set()}
    for operation in document["operations"].values():
        for ref in operation["messages"]:
            message = resolve(document, resolve(document, ref["$ref"])["$ref"])
            found[operation["action"]].add(message["name"])
    return found


CORE_RECEIVED = {"ping", "pong", "auth.refresh"}
CORE_SENT = {"hello", "ping", "pong", "error", "ack", "resync", "recovery"}
BUILTINS_RECEIVED = {"subscribe", "unsubscribe", "presence.get", "typing", "receipt"}


@pytest.mark.parametrize(
    ("builtins", "presence", "received", "sent"),
    [
        pytest.param(False, False, set(), set(), id="none"),
        pytest.param(True, False, BUILTINS_RECEIVED, {"typing", "receipt"}, id="all"),
        pytest.param({"subscribe"}, False, {"subscribe"}, set(), id="subscribe"),
        pytest.param(
            {"typing", "presence.get"},
            True,
            {"typing", "presence.get"},
            {"typing", "presence.join", "presence.leave"},
            id="typing-presence",
        ),
        pytest.param(False, True, set(), {"presence.join", "presence.leave"}, id="presence"),
    ],
)
def test_builtin_operations_are_listed_exactly_when_enabled(
    builtins: bool | set[str], presence: bool, received: set[str], sent: set[str]
) -> None:
    document = asyncapi_document(
        drawing_registry(), settings=make_settings(), builtins=builtins, presence=presence
    )
    assert validation_errors(document) == []
    assert_consistent(document)
    assert directions(document) == {
        "receive": CORE_RECEIVED | received | {"shape.draw", "cursor"},
        "send": CORE_SENT | sent | {"shape.drawn", "cursor"},
    }


def test_builtin_schemas_are_the_ones_the_router_validates_with() -> None:
    document = asyncapi_document(settings=make_settings(), builtins=True, presence=True)
    messages = document["components"]["messages"]

    def data(key: str) -> Any:
        return resolve(document, messages[key]["payload"]["properties"]["data"]["$ref"])

    subscribe = data("subscribe")
    assert subscribe["required"] == ["topic"]
    assert subscribe["properties"]["topic"]["maxLength"] == 256
    assert {"offset", "epoch"} <= set(subscribe["properties"])  # optional: resume position
    assert data("auth.refresh")["required"] == ["token"]
    assert set(data("ack")["properties"]) == {"type", "topic", "users", "expires_at"}
    assert "topic" in data("error")["properties"]
    # typing/receipt: one message per direction (the relayed one names the user)
    typing_names = {k: m["name"] for k, m in messages.items() if m["name"] == "typing"}
    assert len(typing_names) == 2
    relayed = [data(k) for k in typing_names if "user_id" in data(k)["properties"]]
    assert len(relayed) == 1
    assert set(data("presence.join")["required"]) == {"topic", "user_id"}
    for key in messages:  # only registry messages carry the history stamp
        assert "offset" not in messages[key]["payload"]["properties"], key
    with pytest.raises(ConfigurationError, match="unknown built-in"):
        asyncapi_document(settings=make_settings(), builtins={"subscribe", "shout"})


def test_the_route_reads_builtins_and_presence_from_the_router() -> None:
    settings = make_settings()
    documents = {}
    for name, builtins, presence in (("on", True, True), ("off", False, False)):
        router = make_websocket_router(
            echo_handler,
            hub=WebSocketHub.from_settings(
                settings, presence=presence, topic_authorizer=allow_any_topic
            ),
            bearer_resolver=FakeTokens().resolver,
            settings=settings,
            builtins=builtins,
        )
        add_asyncapi_route(router, settings=settings)
        with TestClient(FastAPI(routes=router.routes)) as client:
            documents[name] = client.get("/ws/asyncapi.json").json()
    on, off = directions(documents["on"]), directions(documents["off"])
    assert on["receive"] == CORE_RECEIVED | BUILTINS_RECEIVED
    assert on["send"] == CORE_SENT | {"typing", "receipt", "presence.join", "presence.leave"}
    assert off == {"receive": CORE_RECEIVED, "send": CORE_SENT}
    assert validation_errors(documents["on"]) == []
    # explicit options win over the router's
    router = APIRouter()
    add_asyncapi_route(router, settings=settings, builtins={"subscribe"}, presence=False)
    with TestClient(FastAPI(routes=router.routes)) as client:
        explicit = directions(client.get("/ws/asyncapi.json").json())
    assert explicit["receive"] == CORE_RECEIVED | {"subscribe"}


def test_same_type_with_different_models_per_direction_gets_two_messages() -> None:
    messages = MessageRegistry()

    class Ask(BaseModel):
        question: str

    class Answer(BaseModel):
        answer: str

    messages.inbound("qa")(Ask)
    messages.outbound("qa")(Answer)
    document = asyncapi_document(messages, settings=make_settings())
    qa = [m for m in document["components"]["messages"].values() if m["name"] == "qa"]
    assert len(qa) == 2
    assert validation_errors(document) == []
    assert_consistent(document)


@pytest.mark.parametrize(
    "servers", [{"x": "http://example.com"}, {"x": "wss://"}, {"bad name": "wss://a.example"}]
)
def test_bad_servers_are_refused(servers: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError):
        asyncapi_document(settings=make_settings(), servers=servers)


# -- the route -------------------------------------------------------------------------


async def test_route_derives_the_address_from_prefix_and_mount() -> None:
    settings = make_settings()
    messages = drawing_registry()
    hub = WebSocketHub.from_settings(settings)
    router = make_websocket_router(
        echo_handler,
        hub=hub,
        bearer_resolver=FakeTokens().resolver,
        settings=settings,
        path="/draw",
    )
    add_asyncapi_route(router, messages, settings=settings, path="/draw", title="Drawing")
    inner = FastAPI()
    inner.include_router(router, prefix="/v1")
    app = FastAPI()
    app.mount("/mounted", inner)

    @messages.outbound("late.arrival")  # registered after the route: still listed
    class Late(BaseModel):
        at: int

    async with (
        live_server(app, settings=settings) as server,
        httpx.AsyncClient(base_url=server.base_url) as http,
    ):
        response = await http.get("/mounted/v1/draw/asyncapi.json")
        missing = await http.get("/draw/asyncapi.json")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-cache"
    document = response.json()
    assert document["channels"]["draw"]["address"] == "/mounted/v1/draw"
    assert "late.arrival" in document["components"]["messages"]
    assert validation_errors(document) == []
    assert missing.status_code == 404
    assert "asyncapi" not in json.dumps(inner.openapi())


async def test_example_serves_a_valid_document() -> None:
    settings = make_settings(WS_ALLOW_QUERY_TOKEN=False)
    app = typed_messages.create_app(settings)
    async with (
        live_server(app, settings=settings) as server,
        httpx.AsyncClient(base_url=server.base_url) as http,
    ):
        document = (await http.get("/ws/asyncapi.json")).json()
    assert validation_errors(document) == []
    assert_consistent(document)
    assert document["info"]["title"] == "Rooms chat"
    assert document["channels"]["ws"]["address"] == "/ws"
    assert document["servers"]["local"]["host"] == "127.0.0.1:8000"
    assert "queryToken" not in document["components"]["securitySchemes"]
    names = {m["name"] for m in document["components"]["messages"].values()}
    assert {"room.join", "chat.send", "room.joined", "chat.message"} <= names


def test_explicit_doc_path_and_address() -> None:
    settings = make_settings()
    router = make_websocket_router(
        echo_handler,
        hub=WebSocketHub.from_settings(settings),
        bearer_resolver=FakeTokens().resolver,
        settings=settings,
    )
    add_asyncapi_route(
        router,
        typed_messages.messages,
        settings=settings,
        doc_path="/docs/realtime.json",
        address="/public/ws",
    )
    app = FastAPI()
    app.include_router(router, prefix="/internal")
    with TestClient(app) as client:
        document = client.get("/internal/docs/realtime.json").json()
    assert document["channels"]["ws"]["address"] == "/public/ws"


def test_bad_options_fail_when_the_route_is_added() -> None:
    router = APIRouter()
    with pytest.raises(ConfigurationError):
        add_asyncapi_route(router, settings=make_settings(), servers={"x": "http://a.example"})
    assert router.routes == []


async def test_a_proxy_root_path_is_part_of_the_address() -> None:
    settings = make_settings()
    app = typed_messages.create_app(settings)
    # uvicorn --root-path /realtime: a proxy strips /realtime before forwarding
    async with (
        live_server(app, settings=settings, root_path="/realtime") as server,
        httpx.AsyncClient(base_url=server.base_url) as http,
    ):
        document = (await http.get("/ws/asyncapi.json")).json()
    assert document["channels"]["ws"]["address"] == "/realtime/ws"
