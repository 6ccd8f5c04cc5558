"""AsyncAPI schemas from pydantic: draft-07 translation and the envelope payloads.

AsyncAPI 3.0.0's Schema Object is a JSON Schema draft-07 superset; pydantic emits JSON
Schema 2020-12. `model_schemas()` gathers every model once into
``components/schemas`` (``$defs`` hoisted, references rewritten) and translates the few
keywords read differently (``prefixItems`` tuples, an object ``discriminator``).
`envelope_payload()` wraps a ``data`` schema in the ``{"type", "data",
"request_id"}`` envelope, with the optional history stamp (``topic``/``offset``/
``epoch``) on messages the server sends.
"""

from __future__ import annotations

from typing import Any, Final

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from tempest_ws.wire.envelope import MAX_REQUEST_ID_LENGTH

__all__ = ["STAMPED", "envelope_payload", "model_schemas", "to_draft07"]

_REF_TEMPLATE = "#/components/schemas/{model}"

_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
_SCHEMA_VALUES = (
    "additionalProperties",
    "additionalItems",
    "items",
    "not",
    "if",
    "then",
    "else",
    "contains",
    "propertyNames",
    "unevaluatedProperties",
)


def to_draft07(schema: Any) -> Any:
    """Return a copy of a pydantic JSON schema that AsyncAPI's Schema Object reads right."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {name: to_draft07(sub) for name, sub in value.items()}
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            out[key] = [to_draft07(sub) for sub in value]
        elif key in _SCHEMA_VALUES:
            out[key] = (
                [to_draft07(s) for s in value] if isinstance(value, list) else to_draft07(value)
            )
        else:
            out[key] = value  # keywords whose values are data (const, default, examples...)
    discriminator = out.get("discriminator")
    if isinstance(discriminator, dict):
        # OpenAPI's {"propertyName": ...}; AsyncAPI's discriminator is the name itself.
        out["discriminator"] = discriminator.get("propertyName", "")
        if not out["discriminator"]:
            del out["discriminator"]
    if "prefixItems" in out:
        # 2020-12 tuples; draft-07 says the same with an items array + additionalItems.
        rest = out.pop("items", None)
        out["items"] = out.pop("prefixItems")
        if rest is not None:
            out["additionalItems"] = rest
    return out


def model_schemas(
    models: list[tuple[type[BaseModel], JsonSchemaMode]],
) -> tuple[dict[tuple[type[Any], JsonSchemaMode], Any], dict[str, Any]]:
    """One schema reference per (model, mode) and the shared ``components/schemas``."""
    refs, top = models_json_schema(models, ref_template=_REF_TEMPLATE)
    definitions = {name: to_draft07(schema) for name, schema in top.get("$defs", {}).items()}
    return {key: to_draft07(ref) for key, ref in refs.items()}, definitions


STAMPED: Final[dict[str, Any]] = {
    "topic": {
        "type": "string",
        "description": "On messages of a topic that keeps history: the topic.",
    },
    "offset": {
        "type": "integer",
        "minimum": 1,
        "description": "On messages of a topic that keeps history: the message's offset "
        "(store it, with epoch, and send both in the next subscribe to resume).",
    },
    "epoch": {
        "type": "string",
        "description": "On messages of a topic that keeps history: the offset's epoch.",
    },
}
"""The top-level keys a message of a topic that keeps history carries."""


def envelope_payload(
    message_type: str, data_schema: dict[str, Any], *, stamped: bool = False
) -> dict[str, Any]:
    """The payload schema of one message: the envelope around ``data_schema``, with the
    optional history stamp when ``stamped``."""
    properties: dict[str, Any] = {
        "type": {"type": "string", "const": message_type},
        "data": data_schema,
        "request_id": {
            "type": ["string", "null"],
            "maxLength": MAX_REQUEST_ID_LENGTH,
            "description": "Correlates a reply with its request; null when unused.",
        },
    }
    if stamped:
        properties.update(STAMPED)
    return {"type": "object", "required": ["type", "data"], "properties": properties}
