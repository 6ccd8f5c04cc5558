"""The reconnect storm inside a load generator: every client that loses its connection
comes back the way ``tempest_ws.client`` does.

Each dropped client asks a :class:`tempest_ws._backoff.ReconnectPolicy` built exactly as
the Python client builds it by default (``Backoff(0.5, 30, 2)`` with full jitter, spread
over ``restart_spread`` (5 s) after 1012, ``Backoff(5, 120, 2)`` after 4429/1013/HTTP
429/503 and at least their ``Retry-After``, the client's ``default_is_fatal``)
what to do, sleeps the delay it gives, and opens a new connection with the client's
default ``open_timeout`` (10 s); a failed attempt goes back to the policy. The sockets are
the load generator's light clients (thousands per process on one event loop), so only the
policy is the client's, not its per-connection machinery. Bounded by a deadline.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from typing import Any, Protocol

from tempest_ws.client._backoff import Action, Disconnect, ReconnectPolicy
from tempest_ws.client._options import default_is_fatal

from ._client import Client

OPEN_TIMEOUT = 10.0  # the client's default open_timeout
CAP_CODES = frozenset({1013, 4429})  # a close that means "at a cap, come back later"
CAP_STATUSES = frozenset({429})  # WS_MAX_CONNECTIONS_PER_IP
SHED_STATUS = 503  # WS_MAX_PENDING_HANDSHAKES: too many handshakes in progress, retry later


class Pool(Protocol):
    """What the storm needs of its load generator: the clients, and a way to open one."""

    clients: list[Client]

    async def open_client(
        self, port: int, path: str, token: str, source: str | None, limit_s: float = 10.0
    ) -> Client:
        """A client connected and handshaken, or failed (``client.handshaken`` says)."""
        ...


class Storm:
    """Reconnect every client of one generator after its connection drops."""

    def __init__(self, gen: Pool) -> None:
        self.gen = gen
        self.armed = False
        self.tasks: set[asyncio.Task[None]] = set()
        self.policies: dict[str, ReconnectPolicy] = {}
        self._reset(0, 0.0)

    def _reset(self, seed: int, seconds: float) -> None:
        self.seed = seed
        self.deadline = time.monotonic() + seconds
        self.dropped = 0
        self.back = 0
        self.gave_up = 0
        self.first_back = 0.0
        self.last_back = 0.0
        self.attempts: Counter[int] = Counter()
        self.drop_codes: Counter[int] = Counter()
        self.failures: Counter[str] = Counter()
        self.cap_refusals = 0
        self.delays: list[float] = []

    def arm(self, path: str, seconds: float, seed: int = 0) -> dict[str, Any]:
        """From now on, for ``seconds``: every client whose connection drops reconnects."""
        self._reset(seed, seconds)
        self.path = path
        self.armed = True
        for client in self.gen.clients:
            client.on_lost = self._lost
        return {"armed": len(self.gen.clients)}

    def stop(self) -> None:
        self.armed = False
        for task in self.tasks:
            task.cancel()

    def _lost(self, client: Client) -> None:
        if not self.armed or time.monotonic() > self.deadline:
            return
        task = asyncio.get_running_loop().create_task(self._come_back(client))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _policy(self, token: str) -> ReconnectPolicy:
        policy = self.policies.get(token)
        if policy is None:
            rng = random.Random(f"{self.seed}:{token}")
            policy = self.policies[token] = ReconnectPolicy(is_fatal=default_is_fatal, rng=rng)
        return policy

    async def _come_back(self, client: Client) -> None:
        port, source, token = client.target
        code = client.close_code if client.close_code is not None else 1006
        self.dropped += 1
        self.drop_codes[code] += 1
        if code in CAP_CODES:
            self.cap_refusals += 1
        disconnect = Disconnect(
            code=code, established=True, uptime=time.monotonic() - (client.since or 0.0)
        )
        policy = self._policy(token)
        tries = 0
        with_clients = self.gen.clients
        while self.armed and time.monotonic() < self.deadline:
            decision = policy.decide(disconnect)
            if decision.action is not Action.RECONNECT:
                self.gave_up += 1
                return
            self.delays.append(decision.delay)
            await asyncio.sleep(min(decision.delay, max(0.0, self.deadline - time.monotonic())))
            tries += 1
            new = await self.gen.open_client(port, self.path, token, source or None, OPEN_TIMEOUT)
            if new.handshaken and new.lost:  # closed at once (a cap closes after the accept)
                code = new.close_code if new.close_code is not None else 1006
                self.failures[f"closed_at_open_{code}"] += 1
                if code in CAP_CODES:
                    self.cap_refusals += 1
                disconnect = Disconnect(code=code, established=True)
                continue
            if new.handshaken:
                now = time.time()
                self.back += 1
                self.first_back = self.first_back or now
                self.last_back = max(self.last_back, now)
                self.attempts[tries] += 1
                new.on_lost = self._lost
                try:
                    with_clients[with_clients.index(client)] = new
                except ValueError:
                    with_clients.append(new)
                return
            if new.status in CAP_STATUSES:
                self.cap_refusals += 1
            if new.status == SHED_STATUS:
                self.failures["http_503_retry_later"] += 1
            else:
                self.failures[f"http_{new.status}" if new.status else "tcp_or_timeout"] += 1
            disconnect = Disconnect(
                http_status=new.status or None,
                stage="connect",
                error=OSError("failed"),
                retry_after=5.0 if new.status == SHED_STATUS else None,  # the server's header
            )

    def live(self) -> dict[str, Any]:
        """Each live client's socket name (``ip:port``), with its target port, how long
        ago it handshook and its handshake's HTTP status (to match against the sockets
        ``ss`` lists: a client with none is counted back but has no connection)."""
        now = time.monotonic()
        out: dict[str, list[Any]] = {}
        for c in self.gen.clients:
            if c.lost or c.transport is None:
                continue
            name = c.transport.get_extra_info("sockname")
            key = f"{name[0]}:{name[1]}" if name else "?"
            out[key] = [c.target[0], round(now - (c.since or now), 1), c.status]
        return {"clients": out}

    def status(self) -> dict[str, Any]:
        """How far the storm got in this process."""
        delays = sorted(self.delays)
        return {
            "dropped": self.dropped,
            "back": self.back,
            "gave_up": self.gave_up,
            "live": sum(1 for c in self.gen.clients if not c.lost),
            # Clients counted live whose connection is in fact closing or never came (a
            # look for what the workers' count misses).
            "live_closing": sum(
                1
                for c in self.gen.clients
                if not c.lost and (c.transport is None or c.transport.is_closing())
            ),
            "live_not_handshaken": sum(
                1 for c in self.gen.clients if not c.lost and not c.handshaken
            ),
            "clients": len(self.gen.clients),
            "distinct_clients": len({id(c) for c in self.gen.clients}),
            "lost_codes": dict(
                Counter(str(c.close_code) for c in self.gen.clients if c.lost).most_common()
            ),
            "first_back": self.first_back,
            "last_back": self.last_back,
            "attempts": {str(k): v for k, v in sorted(self.attempts.items())},
            "drop_codes": {str(k): v for k, v in sorted(self.drop_codes.items())},
            "failures": dict(self.failures),
            "cap_refusals": self.cap_refusals,
            "delay_p50_s": delays[len(delays) // 2] if delays else None,
            "delay_max_s": delays[-1] if delays else None,
            "pending": len(self.tasks),
        }


def task_census(limit: int = 12) -> dict[str, int]:
    """Where this process's tasks wait: how many wait at each chain of coroutine frames
    (outermost first), the ``limit`` most common. A server's census after a storm shows
    what its unfinished handshakes are waiting for."""
    places: Counter[str] = Counter()
    for task in asyncio.all_tasks():
        chain: list[str] = []
        coro: Any = task.get_coro()
        while coro is not None and len(chain) < 12:
            frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
            if frame is None:
                break
            chain.append(f"{frame.f_code.co_name}:{frame.f_lineno}")
            coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
        places[" > ".join(chain[-6:])] += 1
    return dict(places.most_common(limit))
