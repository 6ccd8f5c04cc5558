"""The benchmark's payload and the bits of RFC 6455 the load generator needs.

Every benchmark message is one 256-byte JSON envelope whose ``data`` carries a sequence
number and the publisher's ``time.time_ns()`` at fixed offsets, so a client reads both
with two slices instead of parsing JSON. All servers serialize it with tempest_ws's own
``encode_envelope`` (orjson when installed), so every server sends identical bytes.
"""

from __future__ import annotations

import struct
from typing import Any

from tempest_ws.envelope import encode_envelope

ENVELOPE_BYTES = 256
SEQ_BASE = 10_000_000  # sequence numbers are SEQ_BASE + n: always 8 digits
SEQ_DIGITS = 8
TIME_DIGITS = 19  # time.time_ns() has 19 digits until the year 2286

PREFIX = b'{"type":"bench","data":{"s":'
SEQ_AT = len(PREFIX)
TIME_AT = SEQ_AT + SEQ_DIGITS + len(b',"t":')

_EMPTY = len(encode_envelope({"type": "bench", "data": {"s": SEQ_BASE, "t": 10**18, "p": ""}}))


def body(seq: int, t_ns: int, tag: str = "") -> dict[str, Any]:
    """The envelope (as a dict) whose encoding is exactly `ENVELOPE_BYTES` long."""
    pad = ENVELOPE_BYTES - _EMPTY - len(tag)
    return {"type": "bench", "data": {"s": seq, "t": t_ns, "p": tag + "x" * pad}}


def frame_text(seq: int, t_ns: int, tag: str = "") -> str:
    """`body()` serialized once, as the baselines send it."""
    return encode_envelope(body(seq, t_ns, tag))


def client_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """A masked client frame (the zero mask key leaves the payload as is)."""
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return header + b"\0\0\0\0" + payload


def handshake(port: int, path: str, token: str) -> bytes:
    """The HTTP upgrade request a client sends (the token travels as ``?token=``)."""
    return (
        f"GET {path}?token={token} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def _check_layout() -> None:
    sample = frame_text(SEQ_BASE + 7, 1234567890123456789).encode()
    if len(sample) != ENVELOPE_BYTES or not sample.startswith(PREFIX):
        raise RuntimeError(f"bench envelope layout changed: {sample[:60]!r}")
    if sample[SEQ_AT : SEQ_AT + SEQ_DIGITS] != b"10000007":
        raise RuntimeError("bench envelope: sequence number not at its offset")
    if sample[TIME_AT : TIME_AT + TIME_DIGITS] != b"1234567890123456789":
        raise RuntimeError("bench envelope: timestamp not at its offset")


_check_layout()
