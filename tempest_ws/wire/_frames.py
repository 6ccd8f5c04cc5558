"""Server-to-client WebSocket text frames, encoded once per message.

Frames a server sends are never masked (RFC 6455, section 5.1), so one message's frame
bytes are the same for every recipient: a broadcast can build them once and write the
same ``bytes`` to every socket. Only plain frames are built here: FIN set, no RSV bits
(so never for a connection that negotiated an extension such as permessage-deflate).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

__all__ = ["encode_text_frame", "encode_text_frames", "frame_size"]

_FIN_TEXT = 0x81
_HEADER_16 = struct.Struct("!BBH")
_HEADER_64 = struct.Struct("!BBQ")

# The last frame built, as one (text, frame) tuple so a reader never pairs a text with
# another text's frame. A hub delivering one broadcast passes the same ``str`` object to
# every recipient, so the identity check below turns N encodings into one.
_last: tuple[str, bytes] = ("", b"\x81\x00")


def _build(text: str) -> bytes:
    payload = text.encode()
    size = len(payload)
    if size < 126:
        return bytes((_FIN_TEXT, size)) + payload
    if size < 1 << 16:
        return _HEADER_16.pack(_FIN_TEXT, 126, size) + payload
    return _HEADER_64.pack(_FIN_TEXT, 127, size) + payload


def encode_text_frame(text: str) -> bytes:
    """The unmasked, unfragmented text frame carrying ``text`` (UTF-8).

    Consecutive calls with the same ``str`` object return the same ``bytes`` without
    encoding again.
    """
    global _last
    last = _last
    if last[0] is text:
        return last[1]
    frame = _build(text)
    _last = (text, frame)
    return frame


def encode_text_frames(texts: Iterable[str]) -> bytes:
    """Several text frames back to back, ready for one ``transport.write``."""
    return b"".join([encode_text_frame(text) for text in texts])


def frame_size(text: str) -> int:
    """The size in bytes of the text frame carrying ``text``, without building it when
    ``text`` is ASCII (the usual JSON): a constant-time check and a length."""
    if text.isascii():
        size = len(text)
        return size + (2 if size < 126 else 4 if size < 1 << 16 else 10)
    return len(encode_text_frame(text))
