"""The ``WS_REDIS_*`` settings both Redis classes share, read in one place.

``RedisBackplane.from_settings`` and ``RedisHistory.from_settings`` connect to the same
Redis the same way; `redis_settings()` maps those variables once, so a new shared
variable (or a changed default) reaches both. No redis import here.
"""

from __future__ import annotations

from typing import NamedTuple

from tempest_ws.exceptions import ConfigurationError
from tempest_ws.settings import WebSocketSettings

__all__ = ["RedisSettings", "redis_settings"]


class RedisSettings(NamedTuple):
    """The connection settings both Redis classes take."""

    url: str
    cluster: bool
    prefix: str
    timeout: float
    health_check_interval: float
    max_pending: int


def redis_settings(settings: WebSocketSettings) -> RedisSettings:
    """``WS_REDIS_URL`` (unwrapped), ``_CLUSTER``, ``_CHANNEL_PREFIX``,
    ``_TIMEOUT_SECONDS``, ``_HEALTH_CHECK_SECONDS`` and ``_MAX_PENDING_PUBLISHES``.

    Raises:
        ConfigurationError: ``WS_REDIS_URL`` is not set.
    """
    if settings.WS_REDIS_URL is None:
        raise ConfigurationError("WS_REDIS_URL is not set")
    return RedisSettings(
        url=settings.WS_REDIS_URL.get_secret_value(),
        cluster=settings.WS_REDIS_CLUSTER,
        prefix=settings.WS_REDIS_CHANNEL_PREFIX,
        timeout=settings.WS_REDIS_TIMEOUT_SECONDS,
        health_check_interval=settings.WS_REDIS_HEALTH_CHECK_SECONDS,
        max_pending=settings.WS_REDIS_MAX_PENDING_PUBLISHES,
    )
