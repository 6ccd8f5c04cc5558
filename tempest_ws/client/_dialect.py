"""The envelope client's side of a connection: what it reads and what it answers.

`EnvelopeDialect` is the [`Dialect`][tempest_ws.client._engine.Dialect] of
[`WebSocketClient`][tempest_ws.client.WebSocketClient]: it waits for the server's
``hello`` (closing 4408 when it does not come within ``open_timeout``), takes the
heartbeat cadence from it, answers ``ping`` envelopes, measures latency with its own
pings, sends the subscriptions again on a new connection, wakes ``subscribe()`` with
the server's answer (or reports a refusal nobody awaits), notes history positions, runs
the ``resync``/``recovery`` hooks, and hands every other envelope to the ``request()``
waiting for it or else to the inbox. Requires the ``client`` extra (websockets).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Coroutine
from typing import Any

from tempest_ws.client._auth import TokenKeeper
from tempest_ws.client._history import ClientPositions, Mark
from tempest_ws.client._inbox import Inbox
from tempest_ws.client._options import EnvelopeHook, RecoveryHook, SubscribeErrorHook, Timeouts
from tempest_ws.client._pending import PendingRequests
from tempest_ws.client._session import Session, call_hook
from tempest_ws.client._subscriptions import Answer, Subscriptions
from tempest_ws.exceptions import EnvelopeError
from tempest_ws.wire._positions import StampedEnvelope
from tempest_ws.wire.codes import CloseCode
from tempest_ws.wire.envelope import (
    HELLO,
    PING,
    PONG,
    RECOVERY,
    RESYNC,
    WSEnvelope,
    decode_frame,
    encode_envelope,
)

__all__ = ["EnvelopeDialect", "EnvelopeHooks"]

logger = logging.getLogger("tempest_ws.client")

_MAX_CADENCE = 86_400.0


def _cadence_value(value: object, default: float) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < math.inf:
        return min(float(value), _MAX_CADENCE)
    return default


class EnvelopeHooks:
    """The envelope client's application hooks (each may be ``None``)."""

    def __init__(
        self,
        *,
        on_resync: EnvelopeHook | None,
        on_recovery: RecoveryHook | None,
        on_subscribe_error: SubscribeErrorHook | None,
    ) -> None:
        self.on_resync = on_resync
        self.on_recovery = on_recovery
        self.on_subscribe_error = on_subscribe_error


class EnvelopeDialect:
    """How `WebSocketClient` speaks on each connection (see the module docstring)."""

    def __init__(
        self,
        *,
        owner: str,
        inbox: Inbox[WSEnvelope],
        requests: PendingRequests,
        subscriptions: Subscriptions,
        positions: ClientPositions,
        tokens: TokenKeeper,
        hooks: EnvelopeHooks,
        timeouts: Timeouts,
        heartbeat_interval: float | None,
    ) -> None:
        self._owner = owner
        self._inbox = inbox
        self._requests = requests
        self._subs = subscriptions
        self._positions = positions
        self._tokens = tokens
        self._hooks = hooks
        self._timeouts = timeouts
        self._heartbeat_interval = heartbeat_interval
        self._pings: dict[str, float] = {}
        self._ping_seq = 0
        self.latency: float | None = None

    async def await_ready(self, session: Session, reader: asyncio.Task[None]) -> bool:
        """Wait for the ``hello``; without one within ``open_timeout`` close 4408."""
        hello = asyncio.ensure_future(session.hello.wait())
        limit = self._timeouts.open
        try:
            await asyncio.wait({hello, reader}, timeout=limit, return_when=asyncio.FIRST_COMPLETED)
        finally:
            hello.cancel()
            await asyncio.wait({hello})
        if session.hello.is_set():
            return True
        if not reader.done():
            logger.warning("client %s: no hello within %.1fs; closing", self._owner, limit)
            await session.close(CloseCode.HEARTBEAT_TIMEOUT, "no hello")
        return False

    def cadence(self, session: Session) -> tuple[float, float] | None:
        """The ``hello``'s cadence, unless the options set it."""
        data = session.hello_data
        interval = _cadence_value(data.get("heartbeat_seconds"), 30.0)
        timeout = self._timeouts.silence or _cadence_value(
            data.get("heartbeat_timeout_seconds"), 2 * interval
        )
        return self._heartbeat_interval or interval, timeout

    async def ping(self, session: Session) -> None:
        """Send a ``ping`` envelope whose ``pong`` sets `latency`."""
        self._ping_seq += 1
        request_id = f"latency-{self._owner}-{self._ping_seq}"
        self._pings[request_id] = asyncio.get_running_loop().time()
        while len(self._pings) > 8:  # unanswered pings: keep the last few only
            del self._pings[next(iter(self._pings))]
        await session.ws.send(encode_envelope({"type": PING, "data": {}, "request_id": request_id}))

    async def resend_state(self, session: Session) -> None:
        """Send ``subscribe`` for every remembered topic, from its received position."""
        self._subs.new_connection()
        for topic in list(self._subs.topics):
            _, frame = self._subs.request(topic, self._positions.subscribe_data(topic))
            await session.ws.send(frame)

    def session_work(self, session: Session) -> Coroutine[Any, Any, None] | None:
        """The in-band token refresh, when there is one."""
        return self._tokens.session_work(session)

    def hand(self, mark: Mark) -> None:
        """The message at ``mark`` reached the application."""
        self._positions.hand(mark)

    async def on_frame(self, session: Session, frame: str | bytes) -> None:
        """Read one inbound frame (see the module docstring)."""
        try:
            envelope, raw = decode_frame(frame)
        except EnvelopeError as exc:
            logger.warning("client %s: ignored an invalid frame (%s)", self._owner, exc.code)
            return
        kind, request_id = envelope.type, envelope.request_id
        if kind == PING:
            pong: dict[str, Any] = {"type": PONG, "data": {}, "request_id": request_id}
            await session.ws.send(encode_envelope(pong))
            return
        if kind == PONG:
            sent = self._pings.pop(request_id or "", None)
            if sent is not None:
                self.latency = asyncio.get_running_loop().time() - sent
            return
        if kind == HELLO:
            session.hello_data = envelope.data if isinstance(envelope.data, dict) else {}
            session.hello.set()
            return
        answer = self._subs.answer(envelope)
        if answer is not None:
            await self._answered(answer, envelope)
        if kind == RECOVERY:
            notice = self._positions.recovery(envelope.data)
            if notice is not None:
                topic, recovered, position = notice
                hook = self._hooks.on_recovery
                await call_hook(self._owner, "on_recovery", hook, topic, recovered, envelope)
                self._hand_over(envelope, (topic, position))
        else:
            mark = self._positions.receive(raw)
            if mark is not None:
                envelope = StampedEnvelope.stamp(envelope, *mark)
            if kind == RESYNC and self._requests.waiting(request_id) is None:
                await call_hook(self._owner, "on_resync", self._hooks.on_resync, envelope)
            self._hand_over(envelope, mark)

    def _hand_over(self, envelope: WSEnvelope, mark: Mark | None) -> None:
        """Give ``envelope`` to the ``request()`` waiting for it, else to the iterator."""
        if not self._requests.resolve(envelope):
            self._inbox.put(envelope, mark)
        elif mark is not None:
            self._positions.hand(mark)

    async def _answered(self, answer: Answer, envelope: WSEnvelope) -> None:
        """The server answered a ``subscribe``: wake `subscribe()`, or report a refusal
        nobody awaits; the envelope itself is then yielded like any other."""
        if answer.removed:
            self._positions.forget(answer.topic)
        if self._requests.resolve(envelope):
            return
        if answer.error is not None and answer.removed:
            logger.warning(
                "client %s: a subscription was refused (%s)", self._owner, answer.error.code
            )
            hook = self._hooks.on_subscribe_error
            await call_hook(self._owner, "on_subscribe_error", hook, answer.topic, answer.error)
