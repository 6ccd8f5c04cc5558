"""Prometheus metrics for a hub and its connections (the ``metrics`` extra).

`WebSocketMetrics` keeps two kinds of numbers, all with low-cardinality labels
only (a close code, a fixed reason or event name; never a user, topic or connection):

- **counts of events**, incremented as they happen by an observer of the security
  events and traffic events (`tempest_ws._audit`): handshake rejections, heartbeat
  timeouts, rate limits, slow consumers, connections opened and closed, messages and
  bytes in and out, backplane publishes and reconnects;
- **the hub's own numbers** ([`WebSocketHub.stats()`][tempest_ws.hub._hub.WebSocketHub.stats],
  [`cluster_stats()`][tempest_ws.hub._hub.WebSocketHub.cluster_stats],
  [`history_stats()`][tempest_ws.hub._hub.WebSocketHub.history_stats]), copied at scrape time by
  `WebSocketMetrics.sync()`: nothing on the hot path.

All of them are ordinary ``prometheus_client`` metrics, so they work in multiprocess
mode (``PROMETHEUS_MULTIPROC_DIR``, several uvicorn workers): gauges declare how
workers combine (``livesum``/``livemin``) and `WebSocketMetrics.render()` merges
every worker's files. In that mode run `WebSocketMetrics.sampling()` in each
worker's lifespan so the hub numbers of workers that do not answer the scrape stay
fresh. See ``docs/metrics.md``.

Importing this module does not import ``prometheus_client``; building metrics without
it raises [`MissingDependencyError`][tempest_ws.exceptions.MissingDependencyError] naming the extra.
`hub_snapshot()` (plain data for a health endpoint) needs no extra at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, Final

from fastapi import APIRouter, FastAPI, Response

from tempest_ws.exceptions import ConfigurationError, MissingDependencyError
from tempest_ws.observe._audit import add_event_observer

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Gauge

    from tempest_ws.hub._hub import WebSocketHub

__all__ = [
    "ALLOWED_LABELS",
    "REJECTION_REASONS",
    "WebSocketMetrics",
    "add_metrics_route",
    "hub_snapshot",
    "multiprocess_mode",
]

logger = logging.getLogger("tempest_ws.metrics")

ALLOWED_LABELS: Final = frozenset({"code", "reason", "event"})
"""Every label name a tempest_ws metric carries."""

REJECTION_REASONS: Final[Mapping[str, str]] = {
    "origin_rejected": "origin",
    "auth_failed": "auth",
    "address_limit": "limit",
    "connect_refused": "refused",
}
"""Security event -> ``reason`` label of ``tempest_ws_handshake_rejections_total``
(a full process, counted by the hub, is ``limit`` too)."""

_SIMPLE_EVENTS: Final[Mapping[str, str]] = {
    "slow_consumer": "slow_consumers",
    "heartbeat_timeout": "heartbeat_timeouts",
    "rate_limited": "rate_limited",
    "connection_opened": "opened",
    "backplane_published": "published",
    "backplane_reconnected": "reconnects",
}
_HISTORY_COUNTERS: Final[Mapping[str, str]] = {
    "appends": "Messages appended to the history store.",
    "append_failures": "Appends the history store refused (sent without a position).",
    "replays_recovered": "Subscribes with a position answered recovered: true.",
    "replays_unrecovered": "Subscribes with a position answered recovered: false.",
    "messages_replayed": "Messages replayed to resuming subscribers.",
    "gap_messages_filled": "Messages fetched from the store to fill live-stream gaps.",
    "gap_messages_skipped": "Offsets of the live stream given up for good.",
    "discontinuity_notices": "recovered: false notices sent for a skip in the live stream.",
    "stale_messages_dropped": "Live messages dropped as from an older epoch.",
    "seams_overflowed": "Connections closed 1013 as their replay's live buffer overflowed.",
}
"""``HistoryStats`` field -> help of its ``tempest_ws_history_<field>_total`` counter."""
_TRAFFIC_EVENTS: Final = frozenset(
    {"connection_opened", "connection_closed", "frame_in", "frame_out"}
    | {"backplane_published", "backplane_reconnected"}
)


def multiprocess_mode() -> bool:
    """Whether prometheus_client runs in multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``)."""
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def hub_snapshot(hub: WebSocketHub) -> dict[str, Any]:
    """``hub.stats()``, ``hub.cluster_stats()`` and ``hub.history_stats()`` as plain
    JSON-ready data.

    ``{"hub": {"connections": ..., ...}, "cluster": {"node_id": ..., "connected": ...},
    "history": {"appends": ..., ...}, "server": {"unsafe_connections": ..., ...}}`` for
    this process only; no I/O, so a health endpoint can return it as is. ``server`` is
    what uvicorn's WebSocket options looked like to the router
    (`ServerGuardStats`): a non-zero
    ``unsafe_connections`` means the server was started without
    [`uvicorn_options()`][tempest_ws.router.server.uvicorn_options].
    """
    return {
        "hub": dataclasses.asdict(hub.stats()),
        "cluster": dataclasses.asdict(hub.cluster_stats()),
        "history": dataclasses.asdict(hub.history_stats()),
        "server": dataclasses.asdict(hub.server_guard.stats()),
    }


def _prometheus() -> Any:
    try:
        import prometheus_client
    except ImportError:
        raise MissingDependencyError("prometheus-client", "metrics") from None
    return prometheus_client


class WebSocketMetrics:
    """The Prometheus metrics of one hub (one per process), in ``registry``.

    Building it registers the metrics in ``registry`` (a new private
    ``CollectorRegistry`` by default; pass ``prometheus_client.REGISTRY`` to expose them
    with the application's own) and starts observing events process-wide; `close()`
    (or leaving a ``with`` block) stops observing. Building two on one registry raises
    ``ValueError`` (duplicate metric names).

    Args:
        hub: the hub whose [`stats()`][tempest_ws.hub._hub.WebSocketHub.stats] are exported.
        registry: where the metrics are registered.

    Raises:
        MissingDependencyError: prometheus-client is not installed.
    """

    def __init__(self, hub: WebSocketHub, *, registry: CollectorRegistry | None = None) -> None:
        prom = _prometheus()
        self.hub = hub
        self.registry: CollectorRegistry = (
            registry if registry is not None else prom.CollectorRegistry()
        )
        counter, gauge = self._factories(prom)
        self.connections_open = gauge(
            "tempest_ws_connections_open", "WebSocket connections open now.", "livesum"
        )
        self.users_connected = gauge(
            "tempest_ws_users_connected", "Users with a connection open now.", "livesum"
        )
        self.subscriptions = gauge(
            "tempest_ws_subscriptions", "Topic subscriptions held now.", "livesum"
        )
        self.backplane_connected = gauge(
            "tempest_ws_backplane_connected",
            "1 while the backplane carries packets to and from the other nodes.",
            "livemin",
        )
        self.opened = counter("tempest_ws_connections_opened", "Connections accepted.")
        self.closed = counter(
            "tempest_ws_connections_closed", "Connections closed, by close code.", ("code",)
        )
        self.rejections = counter(
            "tempest_ws_handshake_rejections",
            "Connections refused at the handshake, by reason.",
            ("reason",),
        )
        self.messages_in = counter("tempest_ws_messages_received", "Frames received.")
        self.messages_out = counter("tempest_ws_messages_sent", "Frames accepted for sending.")
        self.bytes_in = counter("tempest_ws_received_bytes", "Payload bytes received.")
        self.bytes_out = counter("tempest_ws_sent_bytes", "Payload bytes accepted for sending.")
        self.frames_queued = counter(
            "tempest_ws_hub_frames_queued", "Frames the hub queued for its recipients."
        )
        self.slow_consumers = counter(
            "tempest_ws_slow_consumers_dropped", "Connections closed 1013 with a full queue."
        )
        self.evictions = counter(
            "tempest_ws_user_cap_evictions", "Connections closed 4429 over the per-user cap."
        )
        self.heartbeat_timeouts = counter(
            "tempest_ws_heartbeat_timeouts", "Connections closed 4408 for silence."
        )
        self.rate_limited = counter(
            "tempest_ws_rate_limited", "Connections closed 4429 over the inbound rate limit."
        )
        self.security_events = counter(
            "tempest_ws_security_events", "Security events, by event name.", ("event",)
        )
        self.published = counter("tempest_ws_backplane_published", "Packets published.")
        self.received = counter(
            "tempest_ws_backplane_received", "Packets from other nodes run here."
        )
        self.publish_errors = counter(
            "tempest_ws_backplane_publish_errors", "Publishes the backplane refused."
        )
        self.reconnects = counter(
            "tempest_ws_backplane_reconnects", "Times the backplane link recovered."
        )
        self.unsafe_server = counter(
            "tempest_ws_unsafe_server_connections",
            "Connections accepted while uvicorn offered compression or allowed messages "
            "over WS_MAX_MESSAGE_BYTES (started without uvicorn_options).",
        )
        self.fragment_limit = counter(
            "tempest_ws_fragment_limit_closes",
            "Connections closed 1009 for splitting a message into too many fragments.",
        )
        self.history_topics_followed = gauge(
            "tempest_ws_history_topics_followed",
            "History topics this node follows (with a local subscriber) now.",
            "livesum",
        )
        self.history: dict[str, Counter] = {
            field: counter(f"tempest_ws_history_{field}", doc)
            for field, doc in _HISTORY_COUNTERS.items()
        }
        for reason in sorted(set(REJECTION_REASONS.values())):
            self.rejections.labels(reason=reason)  # exposed at 0 before the first one
        self._seen: dict[str, int] = {}
        self._remove_observer = add_event_observer(self.observe)

    def _factories(self, prom: Any) -> tuple[Any, Any]:
        registry = self.registry

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            # prometheus_client appends ``_total`` to a counter's name when exposing it.
            metric: Counter = prom.Counter(name, doc, labels, registry=registry)
            return metric

        def gauge(name: str, doc: str, mode: str) -> Gauge:
            metric: Gauge = prom.Gauge(name, doc, registry=registry, multiprocess_mode=mode)
            return metric

        return counter, gauge

    # -- events ------------------------------------------------------------------------

    def observe(self, event: str, fields: Mapping[str, object]) -> None:
        """Count one event (the observer registered by ``__init__``)."""
        simple = _SIMPLE_EVENTS.get(event)
        if simple is not None:
            metric: Counter = getattr(self, simple)
            metric.inc()
        elif event == "frame_in":
            self.messages_in.inc()
            self.bytes_in.inc(_int(fields.get("bytes")))
        elif event == "frame_out":
            self.messages_out.inc()
            self.bytes_out.inc(_int(fields.get("bytes")))
        elif event == "connection_closed":
            self.closed.labels(code=str(_int(fields.get("code")))).inc()
        reason = REJECTION_REASONS.get(event)
        if reason is not None:
            self.rejections.labels(reason=reason).inc()
        if event not in _TRAFFIC_EVENTS:
            self.security_events.labels(event=event).inc()

    def close(self) -> None:
        """Stop observing events (the metrics stay registered). Idempotent."""
        self._remove_observer()

    def __enter__(self) -> WebSocketMetrics:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- hub numbers -------------------------------------------------------------------

    def sync(self) -> None:
        """Copy the hub's current numbers into the metrics (gauges set, counters advanced
        by what the hub counted since the last sync). Cheap: no I/O, no iteration over
        connections. A hub counter that went backwards restarts the baseline."""
        stats = self.hub.stats()
        cluster = self.hub.cluster_stats()
        history = self.hub.history_stats()
        self.connections_open.set(stats.connections)
        self.users_connected.set(stats.users)
        self.subscriptions.set(stats.subscriptions)
        self.backplane_connected.set(1 if cluster.connected else 0)
        self._advance("frames_queued", stats.frames_queued, self.frames_queued)
        self._advance("slow", stats.slow_consumers_closed, self.slow_consumers)
        self._advance("evicted", stats.evicted_over_user_cap, self.evictions)
        self._advance("capacity", stats.rejected_at_capacity, self.rejections.labels("limit"))
        self._advance("received", cluster.packets_received, self.received)
        self._advance("publish_errors", cluster.publish_errors, self.publish_errors)
        server = self.hub.server_guard.stats()
        self._advance("unsafe_server", server.unsafe_connections, self.unsafe_server)
        self._advance("fragment_limit", server.fragment_limit_closes, self.fragment_limit)
        self.history_topics_followed.set(history.topics_followed)
        for field, metric in self.history.items():
            self._advance(f"history.{field}", getattr(history, field), metric)

    def _advance(self, key: str, value: int, metric: Counter) -> None:
        delta = value - self._seen.get(key, 0)
        self._seen[key] = value
        if delta > 0:
            metric.inc(delta)

    def render(self) -> tuple[bytes, str]:
        """`sync()`, then the text exposition and its content type.

        In multiprocess mode the output merges every worker's files (and only those,
        so nothing is counted twice); otherwise it is ``registry``'s content.
        """
        prom = _prometheus()
        self.sync()
        if multiprocess_mode():
            from prometheus_client import multiprocess

            merged = prom.CollectorRegistry()
            multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
            return prom.generate_latest(merged), prom.CONTENT_TYPE_LATEST
        return prom.generate_latest(self.registry), prom.CONTENT_TYPE_LATEST

    @contextlib.asynccontextmanager
    async def sampling(self, interval: float = 5.0) -> AsyncIterator[None]:
        """Run `sync()` every ``interval`` seconds while the block runs.

        Needed in multiprocess mode only, where a scrape reaches one worker: the others
        publish their hub numbers this way. The task is cancelled and awaited on exit.

        Raises:
            ConfigurationError: ``interval`` is not positive.
        """
        if interval <= 0:
            raise ConfigurationError("sampling interval must be positive")

        async def loop() -> None:
            while True:
                try:
                    self.sync()
                except Exception:  # the task boundary: keep sampling after a bug
                    logger.exception("metrics sync failed")
                await asyncio.sleep(interval)

        task = asyncio.create_task(loop(), name="tempest_ws metrics sampling")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _int(value: object) -> int:
    return value if isinstance(value, int) else 0


def add_metrics_route(
    app: FastAPI | APIRouter,
    metrics: WebSocketMetrics | WebSocketHub,
    *,
    path: str = "/metrics",
) -> WebSocketMetrics:
    """Serve ``GET path`` (``/metrics``) in the Prometheus text format; return the metrics.

    Given a hub, builds its `WebSocketMetrics` (private registry). The route is
    left out of the OpenAPI schema. Protect it like any internal endpoint: it is not
    authenticated.

    Raises:
        MissingDependencyError: prometheus-client is not installed.
    """
    if not isinstance(metrics, WebSocketMetrics):
        metrics = WebSocketMetrics(metrics)
    exported = metrics

    async def scrape() -> Response:  # async: stats are read on the event loop's thread
        body, content_type = exported.render()
        return Response(body, media_type=content_type)

    app.add_api_route(path, scrape, methods=["GET"], include_in_schema=False)
    return metrics
