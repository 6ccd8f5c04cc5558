"""What crosses the backplane: channel names, node ids and the packet format.

The hub builds and reads packets; a backplane only carries them as opaque bytes.

**Channels** are logical names; a backplane adds its own prefix (Redis:
``WS_REDIS_CHANNEL_PREFIX``). A node subscribes to ``all`` and to its own ``node:<id>``
for its whole life, to ``topic:<name>`` while it holds a subscriber of that topic and to
``user:<id>`` while it holds a connection of that user.

**A packet** is one hub operation on its way to the other nodes::

    {"v":1,"n":"3f9c0a1b2c4d","o":"topic","t":"room:1","x":["..."]}\\n{"type":...}

a one-line JSON header, then (for deliveries) a newline and the frame: the serialized
envelope exactly as every recipient receives it. The frame is never parsed or re-encoded
on the way; a receiving node decodes the bytes to text once and queues that one string
for each of its recipients. Header keys:

``v`` format version (1) · ``n`` the publishing node (a node drops its own packets) ·
``o`` the operation (see the ``OP_*`` constants) · ``t`` its target (topic, user or
connection id) · ``x`` / ``xu`` connection ids / user ids to skip · ``c`` / ``r`` a close
code and reason for ``close`` and ``kick`` · ``p`` ``[offset, epoch]``, the position of a
message of a history topic (its frame is stamped already; receivers sequence by ``p``
and never parse the frame). Decoders ignore keys they do not know, so a node that keeps
no history delivers a packet with ``p`` like any other. ``tp`` the W3C trace context of the
delivery (``{"traceparent": ..., "tracestate": ...}``, only with tracing on; see
``docs/tracing.md``).
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "ALL_CHANNEL",
    "OP_ALL",
    "OP_CLOSE",
    "OP_CONN",
    "OP_KICK",
    "OP_TOPIC",
    "OP_USER",
    "Packet",
    "connection_node",
    "decode_packet",
    "encode_packet",
    "new_node_id",
    "node_channel",
    "own_prefix",
    "positioned_head",
    "topic_channel",
    "user_channel",
]

VERSION: Final = 1
ALL_CHANNEL: Final = "all"

OP_ALL: Final = "all"
"""Deliver ``frame`` to every connection, minus the exclusions."""
OP_TOPIC: Final = "topic"
"""Deliver ``frame`` to topic ``target``'s subscribers, minus the exclusions."""
OP_USER: Final = "user"
"""Deliver ``frame`` to every connection of user ``target``."""
OP_CONN: Final = "conn"
"""Deliver ``frame`` to connection ``target``."""
OP_CLOSE: Final = "close"
"""Close connection ``target`` with ``code`` (per-user cap eviction)."""
OP_KICK: Final = "kick"
"""Close every connection of user ``target`` with ``code`` (``disconnect_user``)."""

_OPS: Final = frozenset({OP_ALL, OP_TOPIC, OP_USER, OP_CONN, OP_CLOSE, OP_KICK})
_NODE_ID = re.compile(r"[0-9a-f]{12}")


def new_node_id() -> str:
    """A random node id: 12 lowercase hex characters."""
    return secrets.token_hex(6)


def is_node_id(value: str) -> bool:
    """Whether ``value`` has the shape of a node id."""
    return _NODE_ID.fullmatch(value) is not None


def connection_node(connection_id: str) -> str | None:
    """The node a connection id names (``<node>.<uuid hex>``), or ``None`` for other ids."""
    node, dot, _ = connection_id.partition(".")
    return node if dot and is_node_id(node) else None


def node_channel(node_id: str) -> str:
    """The channel one node listens on for packets addressed to it alone."""
    return f"node:{node_id}"


def topic_channel(topic: str) -> str:
    """The channel of a topic."""
    return f"topic:{topic}"


def user_channel(user: str) -> str:
    """The channel of a user (every tab on every node)."""
    return f"user:{user}"


@dataclass(frozen=True, slots=True)
class Packet:
    """A decoded packet; ``frame`` is ``None`` for control operations."""

    node: str
    op: str
    target: str = ""
    frame: str | None = None
    exclude: frozenset[str] = frozenset()
    exclude_users: frozenset[str] = frozenset()
    code: int = 0
    reason: str = ""
    position: tuple[int, str] | None = None
    """``(offset, epoch)`` of a message of a history topic (header ``p``)."""
    trace: Mapping[str, str] | None = None
    """W3C trace context of the delivery (header ``tp``), with tracing on."""


_EMPTY: frozenset[str] = frozenset()
_string = json.JSONEncoder(ensure_ascii=True).encode
_loads = json.JSONDecoder().decode


def encode_packet(
    node: str,
    op: str,
    target: str = "",
    frame: str | None = None,
    *,
    exclude: Collection[str] = (),
    exclude_users: Collection[str] = (),
    code: int = 0,
    reason: str = "",
    position: tuple[int, str] | None = None,
    trace: Mapping[str, str] | None = None,
) -> bytes:
    """Build the bytes of one packet; ``frame`` is appended as is (never re-encoded).

    ``position`` (``(offset, epoch)``) marks a message of a history topic (header ``p``);
    ``trace`` carries the W3C trace context (header ``tp``).
    """
    if position is not None and not code:
        head = positioned_head(
            node, op, target, exclude=exclude, exclude_users=exclude_users, trace=trace
        )
        head = f"{head}{position[0]:d},{_string(position[1])}]}}"
    elif exclude or exclude_users or code or trace:
        header: dict[str, Any] = {"v": VERSION, "n": node, "o": op, "t": target}
        if exclude:
            header["x"] = list(exclude)
        if exclude_users:
            header["xu"] = list(exclude_users)
        if code:
            header["c"] = code
            header["r"] = reason
        if position is not None:
            header["p"] = [position[0], position[1]]
        if trace:
            header["tp"] = dict(trace)
        head = json.dumps(header, separators=(",", ":"), ensure_ascii=True)
    else:  # the hot path: node and op are ASCII tokens
        head = f'{{"v":1,"n":"{node}","o":"{op}","t":{_string(target)}}}'
    if frame is None:
        return head.encode()
    return f"{head}\n{frame}".encode()


def positioned_head(
    node: str,
    op: str,
    target: str = "",
    *,
    exclude: Collection[str] = (),
    exclude_users: Collection[str] = (),
    trace: Mapping[str, str] | None = None,
) -> str:
    """The header of a packet with a position, cut before the position's values.

    It ends with ``"p":[``; the header is finished by the offset, a comma, the epoch as a
    JSON string and ``]}``, then a newline and the frame follow. This lets a store that
    assigns the position on its server build the packet there
    ([`append_publish()`][tempest_ws.history.RedisHistory.append_publish]);
    `encode_packet()` with ``position`` gives the same bytes.
    """
    if exclude or exclude_users or trace:
        header: dict[str, Any] = {"v": VERSION, "n": node, "o": op, "t": target}
        if exclude:
            header["x"] = list(exclude)
        if exclude_users:
            header["xu"] = list(exclude_users)
        if trace:
            header["tp"] = dict(trace)
        text = json.dumps(header, separators=(",", ":"), ensure_ascii=True)
        return f'{text[:-1]},"p":['
    return f'{{"v":1,"n":"{node}","o":"{op}","t":{_string(target)},"p":['


def own_prefix(node: str) -> bytes:
    """The bytes every packet `encode_packet()` builds for ``node`` starts with (and
    every packet a store builds from `positioned_head()`): a node drops its own packets,
    echoed by its backplane, by this prefix without decoding them."""
    return f'{{"v":{VERSION},"n":{_string(node)},'.encode()


def decode_packet(data: bytes) -> Packet:
    """Parse a packet.

    Raises:
        ValueError: not a packet of a version this node reads (malformed JSON, unknown
            version or operation, wrong field types, a frame that is not UTF-8).
    """
    newline = data.find(b"\n")
    header = _loads((data if newline < 0 else data[:newline]).decode())
    if not isinstance(header, dict) or header.get("v") != VERSION:
        raise ValueError("not a version 1 packet")
    node, op, target = header.get("n"), header.get("o"), header.get("t", "")
    if not isinstance(node, str) or op not in _OPS or not isinstance(target, str):
        raise ValueError("malformed packet header")
    frame = None if newline < 0 else data[newline + 1 :].decode()
    if len(header) == 4:  # no exclusions, no close code
        return Packet(node, op, target, frame)
    exclude, exclude_users = header.get("x", ()), header.get("xu", ())
    code, reason = header.get("c", 0), header.get("r", "")
    position = _position(header.get("p"))
    trace = header.get("tp")
    if (
        not isinstance(code, int)
        or not isinstance(reason, str)
        or not isinstance(exclude, list | tuple)
        or not isinstance(exclude_users, list | tuple)
        or not all(isinstance(v, str) for v in (*exclude, *exclude_users))
        or (trace is not None and not _is_carrier(trace))
    ):
        raise ValueError("malformed packet header")
    return Packet(
        node,
        op,
        target,
        frame,
        frozenset(exclude) if exclude else _EMPTY,
        frozenset(exclude_users) if exclude_users else _EMPTY,
        code,
        reason,
        position,
        trace,
    )


def _position(value: Any) -> tuple[int, str] | None:
    """The ``p`` header as ``(offset, epoch)``; ``None`` when absent.

    Raises:
        ValueError: present but not ``[int >= 0, non-empty str]``.
    """
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not isinstance(value[0], int)
        or isinstance(value[0], bool)
        or value[0] < 0
        or not isinstance(value[1], str)
        or not value[1]
    ):
        raise ValueError("malformed packet position")
    return value[0], value[1]


def _is_carrier(value: object) -> bool:
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
