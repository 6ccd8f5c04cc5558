"""Abuse limits without I/O: the inbound token bucket and the per-address connection cap.

`TokenBucket` meters one connection's inbound frames on an injected clock, so it
is tested without sleeping. `client_address()` decides which address a handshake
counts against, believing ``X-Forwarded-For`` only when the direct peer is a configured
trusted proxy. `AddressLimiter` counts open connections per address.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

__all__ = [
    "AddressLimiter",
    "TokenBucket",
    "client_address",
    "parse_trusted_proxies",
]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_EPSILON = 1e-9  # float refill must not turn "exactly at the budget" into a refusal
_NEVER = -math.inf  # a full bucket's last update: the first take() refills to capacity


@dataclass(slots=True)
class TokenBucket:
    """``capacity`` tokens, refilled continuously at ``capacity / window`` per second.

    A client may send ``capacity`` frames at once and then ``capacity`` per ``window``
    seconds forever; the first frame past that makes `take()` return ``False``.
    ``clock`` returns seconds (the event loop's ``time`` in the router).

    A new bucket is full and holds nothing of its own (the capacity and a shared "never"
    as its last update) until its first `take()`: thousands wait idle at once.
    """

    capacity: int
    window: float
    clock: Callable[[], float]
    tokens: float = field(init=False)
    updated: float = field(init=False)

    def __post_init__(self) -> None:
        if self.capacity < 1 or self.window <= 0:
            raise ValueError("a token bucket needs capacity >= 1 and a positive window")
        self.tokens = self.capacity  # full: refilling it changes nothing
        self.updated = _NEVER

    def take(self, count: int = 1) -> bool:
        """Spend ``count`` tokens if there are enough; never blocks."""
        now = self.clock()
        elapsed = max(0.0, now - self.updated)
        self.updated = now
        rate = self.capacity / self.window
        self.tokens = min(float(self.capacity), self.tokens + elapsed * rate)
        if self.tokens + _EPSILON < count:
            return False
        self.tokens = max(0.0, self.tokens - count)
        return True


def parse_trusted_proxies(entries: Iterable[str]) -> tuple[Network, ...] | None:
    """Turn ``WS_TRUSTED_PROXIES`` entries into networks; ``None`` means "trust every peer".

    Raises:
        ValueError: an entry is neither ``*`` nor an IP address or CIDR network.
    """
    networks: list[Network] = []
    for entry in entries:
        text = entry.strip()
        if text == "*":
            return None
        networks.append(ipaddress.ip_network(text, strict=False))
    return tuple(networks)


def _parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # "[::1]:443" as some proxies write it
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # "10.0.0.1:443"
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
    networks: tuple[Network, ...] | None,
) -> bool:
    if networks is None:
        return True
    return any(address.version == net.version and address in net for net in networks)


def client_address(
    peer: str | None,
    headers: Mapping[str, str],
    trusted: tuple[Network, ...] | None,
) -> str:
    """The address a connection counts against.

    ``peer`` is the TCP peer's IP. When it belongs to a trusted proxy (``trusted`` is
    ``None`` for "any peer"; an empty tuple trusts nothing), ``X-Forwarded-For`` is read
    from the right: every hop that is itself a trusted proxy is skipped and the first
    other one is the client. A malformed hop stops the walk at the last good address, so
    a client cannot choose its own address by writing garbage into the header. Without
    a trusted peer the header is ignored. Returns ``"unknown"`` when there is no peer.
    """
    if peer is None:
        return "unknown"
    current = _parse_ip(peer)
    if current is None:
        return peer
    if trusted == ():
        return str(current)
    hops = [hop for hop in headers.get("x-forwarded-for", "").split(",") if hop.strip()]
    while hops and _trusted(current, trusted):
        hop = _parse_ip(hops.pop())
        if hop is None:
            break
        current = hop
    return str(current)


class AddressLimiter:
    """Open connections per client address, capped at ``limit`` (0: no cap).

    `acquire()` and `release()` pair up around one connection's life; an address
    whose count falls to zero is forgotten, so the table holds only live addresses.
    """

    def __init__(self, limit: int) -> None:
        if limit < 0:
            raise ValueError("the per-address limit must be >= 0")
        self.limit = limit
        self.counts: dict[str, int] = {}

    def acquire(self, address: str) -> bool:
        """Count one more connection for ``address``; ``False`` (nothing counted) past the cap."""
        held = self.counts.get(address, 0)
        if self.limit and held >= self.limit:
            return False
        self.counts[address] = held + 1
        return True

    def release(self, address: str) -> None:
        """Forget one connection of ``address`` (idempotent once the count is zero)."""
        held = self.counts.get(address, 0)
        if held <= 1:
            self.counts.pop(address, None)
        else:
            self.counts[address] = held - 1
