"""Check, and where the server allows it tighten, what uvicorn negotiates per connection.

uvicorn's defaults negotiate permessage-deflate and accept 16 MiB messages: a 15 KB
compressed frame inflates to megabytes before the application sees it. `run()` and
[`uvicorn_options()`][tempest_ws.router.server.uvicorn_options]
start uvicorn safely; a plain ``uvicorn app:app`` does not. Reaching uvicorn's protocol
object (the owner of the ASGI ``receive`` callable, as
[`tempest_ws.router._transport`][tempest_ws.router._transport]
does), the router inspects every connection before accepting it:

- **websockets-sansio** (uvicorn's default) and **websockets** (deprecated): the offered
  permessage-deflate is declined (the handshake answers without it, which RFC 6455
  allows; clients carry on uncompressed) and the message size limit is lowered to
  ``WS_MAX_MESSAGE_BYTES``. Under websockets-sansio a `FragmentBudget` also caps
  the fragments of one message (``WS_MAX_FRAGMENTS_PER_MESSAGE``, close 1009); the
  deprecated websockets protocol caps them itself (4096, close 1009).
- **any other protocol or server** (wsproto, hypercorn, ...): nothing can be changed;
  the options are read from uvicorn's config when there is one.

Either way a connection accepted on unsafe server options is counted
(`ServerGuardStats`, in the health snapshot and the metrics) and the first one
is logged at ERROR, naming the fix: other routes on that server stay unprotected.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from tempest_ws.observe._audit import security_event
from tempest_ws.observe._server_options import ServerGuardStats, ServerOptionCounts

__all__ = [
    "FragmentBudget",
    "ServerGuard",
    "ServerGuardStats",
    "find_protocol",
    "protocol_name",
]

logger = logging.getLogger("tempest_ws")

_PROTOCOLS = {
    "uvicorn.protocols.websockets.websockets_sansio_impl": "websockets-sansio",
    "uvicorn.protocols.websockets.websockets_impl": "websockets",
    "uvicorn.protocols.websockets.wsproto_impl": "wsproto",
}
_DEFLATE = "permessage-deflate"


def find_protocol(*callables: Any) -> object | None:
    """uvicorn's protocol object behind the ASGI callables (their ``__self__``), or ``None``."""
    for candidate in callables:
        owner: object = getattr(candidate, "__self__", None)
        if owner is not None and type(owner).__module__ in _PROTOCOLS:
            return owner
    return None


def protocol_name(protocol: object) -> str:
    """``"websockets-sansio"``, ``"websockets"`` or ``"wsproto"`` (uvicorn's ``--ws`` names)."""
    return _PROTOCOLS.get(type(protocol).__module__, "unknown")


class FragmentBudget:
    """A websockets extension that only counts: it fails a message split into more than
    ``limit`` fragments with websockets' ``PayloadTooBig`` (so the connection closes 1009
    with the reason ``too many fragments``) and calls ``on_exceeded`` once.

    websockets calls an extension's ``decode`` for every frame it parses, before it
    buffers anything, so a flood of empty continuation frames stops at the limit.
    Frames pass through unchanged in both directions (``passthrough``).
    """

    __slots__ = ("fragments", "limit", "on_exceeded")

    name = "x-tempest-fragment-budget"
    passthrough = True

    def __init__(self, limit: int, on_exceeded: Callable[[int], None]) -> None:
        self.limit = limit
        self.on_exceeded = on_exceeded
        self.fragments = 0

    def decode(self, frame: Any, *, max_size: int | None = None) -> Any:
        """Count ``frame`` if it belongs to a fragmented message; pass it on."""
        opcode = frame.opcode.value
        if opcode > 2:  # control frames may come between fragments
            return frame
        if frame.fin:
            self.fragments = 0
            return frame
        self.fragments += 1
        if self.fragments > self.limit:
            self.on_exceeded(self.limit)
            raise _too_many_fragments(self.limit)
        return frame

    def encode(self, frame: Any) -> Any:
        """Outgoing frames are not touched."""
        return frame


def _too_many_fragments(limit: int) -> Exception:
    from websockets.exceptions import PayloadTooBig

    class TooManyFragments(PayloadTooBig):
        def __str__(self) -> str:
            return "too many fragments"

    return TooManyFragments(None, limit)


def _offers_deflate(headers: Any) -> bool:
    offered = ",".join(headers.getlist("sec-websocket-extensions"))
    return _DEFLATE in offered.lower()


class _FragmentAlarm:
    """What a `FragmentBudget` calls when a message on ``connection_id`` was split into
    more than ``limit`` fragments (a plain object, not a closure: one small slot per
    connection)."""

    __slots__ = ("connection_id", "counts")

    def __init__(self, counts: ServerOptionCounts, connection_id: str) -> None:
        self.counts = counts
        self.connection_id = connection_id

    def __call__(self, limit: int) -> None:
        self.counts.fragment_closes += 1
        security_event(
            "too_many_fragments",
            self.connection_id,
            "message split into too many fragments",
            limit=limit,
        )


class ServerGuard:
    """Inspects each connection's server protocol, counting into ``counts`` (the hub's
    `ServerOptionCounts`, one per process; a new one when not given).

    `before_accept()` runs for every connection before the handshake answer is
    sent. Logs one ERROR for the first unsafe connection, never one per connection.
    """

    __slots__ = ("counts",)

    def __init__(self, counts: ServerOptionCounts | None = None) -> None:
        self.counts = counts if counts is not None else ServerOptionCounts()

    def stats(self) -> ServerGuardStats:
        """A snapshot of the counts (plain data; no I/O)."""
        return self.counts.stats()

    def before_accept(self, protocol: object | None, headers: Any, max_bytes: int) -> None:
        """Check ``protocol`` (see `find_protocol()`; ``None``: not uvicorn), and
        decline compression and lower the size limit where the protocol allows it."""
        if protocol is None:
            return
        counts = self.counts
        name = counts.protocol = protocol_name(protocol)
        config = getattr(protocol, "config", None)
        deflate = bool(getattr(config, "ws_per_message_deflate", False)) and _offers_deflate(
            headers
        )
        max_size = getattr(config, "ws_max_size", None)
        too_big = not isinstance(max_size, int) or max_size > max_bytes
        if not deflate and not too_big:
            return
        counts.unsafe += 1
        fixed = False
        if name == "websockets-sansio":
            fixed = self._fix_sansio(protocol, deflate, too_big, max_bytes)
        elif name == "websockets":
            fixed = self._fix_legacy(protocol, deflate, too_big, max_bytes)
        if not counts.reported:
            counts.reported = True
            self._report(name, deflate, max_size, max_bytes, fixed)

    def after_accept(self, protocol: object | None, limit: int, connection_id: str) -> bool:
        """Install a `FragmentBudget` of ``limit`` on a websockets-sansio connection
        whose handshake is through; ``False`` (nothing installed) for anything else."""
        if protocol is None or protocol_name(protocol) != "websockets-sansio":
            return False
        conn = getattr(protocol, "conn", None)
        extensions = getattr(conn, "extensions", None)
        if not isinstance(extensions, list) or not getattr(protocol, "handshake_complete", False):
            return False

        extensions.append(FragmentBudget(limit, _FragmentAlarm(self.counts, connection_id)))
        return True

    def _fix_sansio(self, protocol: Any, deflate: bool, too_big: bool, max_bytes: int) -> bool:
        conn = getattr(protocol, "conn", None)
        response = getattr(protocol, "response", None)
        if conn is None or response is None or getattr(protocol, "handshake_complete", True):
            return False
        if deflate and conn.extensions:
            conn.extensions = [e for e in conn.extensions if e.name != _DEFLATE]
            del response.headers["Sec-WebSocket-Extensions"]
            self.counts.declined += 1
        if too_big:
            # websockets 14 split max_size into message and fragment limits.
            attribute = "max_message_size" if hasattr(conn, "max_message_size") else "max_size"
            setattr(conn, attribute, max_bytes)
            self.counts.lowered += 1
        return True

    def _fix_legacy(self, protocol: Any, deflate: bool, too_big: bool, max_bytes: int) -> bool:
        factories = getattr(protocol, "available_extensions", None)
        if not isinstance(factories, list) or not hasattr(protocol, "max_size"):
            return False
        if deflate:
            # In place: the handshake already holds this (per-connection) list.
            factories[:] = [f for f in factories if f.name != _DEFLATE]
            self.counts.declined += 1
        if too_big:
            protocol.max_size = max_bytes
            self.counts.lowered += 1
        return True

    @staticmethod
    def _report(name: str, deflate: bool, max_size: object, max_bytes: int, fixed: bool) -> None:
        problems = []
        if deflate:
            problems.append("permessage-deflate is negotiated")
        if not isinstance(max_size, int) or max_size > max_bytes:
            problems.append(f"ws_max_size is {max_size} > WS_MAX_MESSAGE_BYTES {max_bytes}")
        done = (
            "tempest_ws declined compression and lowered the limit for its own connections, "
            "but other WebSocket routes on this server are not protected"
            if fixed
            else "tempest_ws cannot change this for the " + name + " protocol"
        )
        logger.error(
            "unsafe uvicorn WebSocket options (%s; protocol %s): %s. Start the server with "
            "tempest_ws.run(app, settings=settings), or uvicorn.run(app, "
            "**uvicorn_options(settings)), or on the command line with "
            "--ws-max-size %d --ws-per-message-deflate false --ws-ping-interval 0",
            "; ".join(problems),
            name,
            done,
            max_bytes,
        )
