"""``WebSocketSettings``: every ``WS_*`` environment variable, validated, with defaults.

Field names are the variable names themselves, so the class mixes into an application's
own pydantic-settings class (``class Settings(WebSocketSettings, AppSettings)``) and
``.env`` files work as usual. ``.env.example`` lists every variable; a test keeps it in
sync with this class.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Annotated, Any, Self

from pydantic import BeforeValidator, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["WebSocketSettings"]


def _split_list(value: Any) -> Any:
    """Accept a JSON list or a comma-separated string for list-valued variables."""
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return []
        if text.startswith("["):
            return json.loads(text)
        return [item.strip() for item in text.split(",") if item.strip()]
    return value


class WebSocketSettings(BaseSettings):
    """Configuration of the router and the hub, read from ``WS_*`` variables and ``.env``.

    Build it explicitly in tests (``WebSocketSettings(WS_HEARTBEAT_SECONDS=0.2)``); in an
    application let it read the environment.
    """

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", validate_default=True
    )

    WS_ALLOWED_ORIGINS: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Browser origins allowed to connect (JSON list or comma separated). "
        "Empty: no check. Entries are 'scheme://host[:port]', 'https://*.example.com' "
        "(one or more DNS labels) or '*'.",
    )
    WS_REQUIRE_ORIGIN: bool = Field(
        default=False,
        description="Reject handshakes without an Origin header when an allow-list is set "
        "(non-browser clients send none).",
    )
    WS_ALLOW_QUERY_TOKEN: bool = Field(
        default=True,
        description="Accept '?token=' when neither the bearer subprotocol nor an "
        "Authorization header carries one.",
    )
    WS_HEARTBEAT_SECONDS: float = Field(
        default=30.0, gt=0, le=3600, description="Seconds between ping envelopes."
    )
    WS_HEARTBEAT_TIMEOUT_SECONDS: float = Field(
        default=60.0,
        gt=0,
        le=7200,
        description="Silence (no inbound frame of any kind) after which the server closes 4408.",
    )
    WS_MAX_MESSAGE_BYTES: int = Field(
        default=65536,
        ge=64,
        le=64 * 1024 * 1024,
        description="Largest inbound frame in bytes; larger frames close 1009.",
    )
    WS_MAX_FRAGMENTS_PER_MESSAGE: int = Field(
        default=256,
        ge=1,
        le=65536,
        description="Continuation frames one inbound message may be split into; past it "
        "the connection is closed 1009 'too many fragments' (enforced under uvicorn's "
        "websockets-sansio protocol, the default).",
    )
    WS_MAX_CONNECTIONS_PER_USER: int = Field(
        default=5,
        ge=1,
        le=10_000,
        description="Connections one user may hold; the oldest is closed 4429 past it.",
    )
    WS_MAX_CONNECTIONS: int = Field(
        default=10_000,
        ge=1,
        le=10_000_000,
        description="Connections the hub holds in this process; new ones are closed 1013 past it.",
    )
    WS_MAX_TOPICS_PER_CONNECTION: int = Field(
        default=256,
        ge=1,
        le=1_000_000,
        description="Topics one connection may be subscribed to; a subscribe past it is "
        "refused (error envelope topic_limit, TopicLimitError from hub.subscribe).",
    )
    WS_SEND_QUEUE_SIZE: int = Field(
        default=1024,
        ge=1,
        le=1_000_000,
        description="Frames queued per connection before it counts as a slow consumer "
        "(closed 1013); WS_SEND_QUEUE_BYTES bounds their bytes.",
    )
    WS_SEND_QUEUE_BYTES: int = Field(
        default=1024 * 1024,
        ge=1024,
        le=1024 * 1024 * 1024,
        description="Bytes of frames (as sent on the wire) one connection may have queued; "
        "one more frame makes it a slow consumer (closed 1013). A single larger frame is "
        "still sent when nothing is queued before it.",
    )
    WS_SLOW_CONSUMER_TIMEOUT_SECONDS: float = Field(
        default=5.0,
        gt=0,
        le=3600,
        description="Seconds a connection's queued frames may go without any of them moving "
        "to the socket; then it is a slow consumer (closed 1013).",
    )
    WS_PRODUCER_WAIT_SECONDS: float = Field(
        default=2.0,
        ge=0,
        le=60,
        description="Longest one hub delivery waits for queues above half their budget to "
        "drain to three eighths, so fast readers keep up with a burst; a connection holds "
        "deliveries at most this long each time its queue runs deep, a stalled one not at "
        "all. 0: deliveries never wait.",
    )
    WS_CLOSE_TIMEOUT_SECONDS: float = Field(
        default=2.0,
        gt=0,
        le=60,
        description="Time allowed to write a close frame (and to flush a normal close) "
        "before the transport is aborted.",
    )
    WS_MAX_JSON_DEPTH: int = Field(
        default=32,
        ge=2,
        le=200,
        description="Deepest nesting of objects and arrays in an inbound frame (the envelope "
        "is level 1); deeper frames get a json_too_deep error envelope.",
    )
    WS_MAX_CONCURRENT_HANDLERS: int = Field(
        default=8,
        ge=1,
        le=1024,
        description="Event handlers registered with concurrent=True that may run at once for "
        "one connection; past it the connection's next message waits for one to finish.",
    )
    WS_ACCEPT_BINARY: bool = Field(
        default=False,
        description="Pass binary frames to the handler; when false they get an error envelope.",
    )
    WS_JWT_SECRET: SecretStr | None = Field(
        default=None, description="HS256/384/512 secret for jwt_bearer_resolver (>= 32 bytes)."
    )
    WS_JWT_PUBLIC_KEY: str | None = Field(
        default=None, description="PEM public key for RS*/PS*/ES*/EdDSA tokens."
    )
    WS_JWT_ALGORITHMS: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["HS256"],
        description="Algorithms tokens may use (JSON list or comma separated). Never 'none'.",
    )
    WS_JWT_AUDIENCE: str | None = Field(default=None, description="Required 'aud' claim, if set.")
    WS_JWT_ISSUER: str | None = Field(default=None, description="Required 'iss' claim, if set.")
    WS_JWT_LEEWAY_SECONDS: float = Field(
        default=0.0, ge=0, le=300, description="Clock skew allowed on 'exp', 'nbf' and 'iat'."
    )
    WS_REDIS_URL: SecretStr | None = Field(
        default=None,
        description="Redis URL (redis://, rediss://, unix://) of the backplane that connects "
        "the hubs of several processes. Empty: one process, in-memory backplane.",
    )
    WS_REDIS_CLUSTER: bool = Field(
        default=False,
        description="WS_REDIS_URL names a node of a Redis Cluster: use sharded pub/sub "
        "(SSUBSCRIBE/SPUBLISH) and cluster routing.",
    )
    WS_REDIS_CHANNEL_PREFIX: str = Field(
        default="tempest_ws",
        min_length=1,
        max_length=64,
        pattern=r"^[^\s{}]+$",
        description="Prefix of every Redis channel and key the backplane uses; deployments "
        "sharing one Redis need different prefixes.",
    )
    WS_REDIS_TIMEOUT_SECONDS: float = Field(
        default=2.0,
        gt=0,
        le=60,
        description="Bound on connecting to Redis and on each command; a publish that "
        "takes longer raises BackplaneError.",
    )
    WS_REDIS_HEALTH_CHECK_SECONDS: float = Field(
        default=5.0,
        gt=0,
        le=300,
        description="Silence on the pub/sub link after which it is probed with PING; no "
        "answer within WS_REDIS_TIMEOUT_SECONDS means a half-open link: reconnect.",
    )
    WS_REDIS_RECONNECT_MAX_SECONDS: float = Field(
        default=5.0,
        gt=0,
        le=300,
        description="Cap of the exponential backoff (with jitter) between reconnection "
        "attempts to Redis.",
    )
    WS_REDIS_PRESENCE_TTL_SECONDS: float = Field(
        default=30.0,
        ge=1,
        le=3600,
        description="A node that has not refreshed its presence for this long is dead: its "
        "connections stop counting as online and toward the per-user cap.",
    )
    WS_REDIS_MAX_PENDING_PUBLISHES: int = Field(
        default=10_000,
        ge=1,
        le=10_000_000,
        description="Publishes waiting for Redis before a new one raises BackplaneError "
        "at once instead of queueing.",
    )

    WS_RATE_LIMIT_MESSAGES: int = Field(
        default=1200,
        ge=0,
        le=10_000_000,
        description="Inbound frames (ping and pong envelopes included) one connection may "
        "send per WS_RATE_LIMIT_WINDOW_SECONDS, as a token bucket that refills "
        "continuously; past it the connection is closed 4429 'rate_limited'. 0: no limit.",
    )
    WS_RATE_LIMIT_WINDOW_SECONDS: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="The window of WS_RATE_LIMIT_MESSAGES: the bucket holds that many "
        "frames and refills them over this many seconds.",
    )
    WS_MAX_CONNECTIONS_PER_IP: int = Field(
        default=0,
        ge=0,
        le=10_000_000,
        description="Open connections one client address may hold in this process; past "
        "it the handshake gets HTTP 429 before accept. 0: no cap.",
    )
    WS_MAX_PENDING_HANDSHAKES: int = Field(
        default=512,
        ge=0,
        le=1_000_000,
        description="Handshakes one router works on at once in this process; past it a new "
        "one gets HTTP 503 with Retry-After before accept, so those in progress finish "
        "before their clients time out. 0: no bound.",
    )
    WS_LISTEN_BACKLOG: int = Field(
        default=256,
        ge=1,
        le=65_535,
        description="Length of the server's listen queue (uvicorn's backlog, applied by "
        "uvicorn_options and tempest-ws run): connections the kernel holds before the "
        "worker accepts them. About what one worker completes in a second or two, so a "
        "reconnect storm's attempts are not queued past the clients' open timeout.",
    )
    WS_TRUSTED_PROXIES: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Addresses or CIDR networks of reverse proxies whose X-Forwarded-For "
        "header names the client (JSON list or comma separated; '*' trusts every peer). "
        "Empty: the header is ignored and the TCP peer is the client.",
    )
    WS_ENFORCE_TOKEN_EXPIRY: bool = Field(
        default=True,
        description="Close a connection 4401 when the 'exp' of its JWT (plus "
        "WS_JWT_LEEWAY_SECONDS) passes, unless the client sent an 'auth.refresh' envelope "
        "with a new token for the same subject first. Tokens that are not JWTs never expire.",
    )
    WS_DRAIN_TIMEOUT_SECONDS: float = Field(
        default=10.0,
        gt=0,
        le=600,
        description="At shutdown with tempest_ws.shutdown, time allowed to close every "
        "connection 1001 and flush its queued frames before the rest are aborted.",
    )

    WS_HISTORY_TOPICS: Annotated[list[str], NoDecode, BeforeValidator(_split_list)] = Field(
        default_factory=list,
        description="Topic patterns that keep message history for recovery (JSON list or "
        "comma separated; '*' matches any run of characters, e.g. 'chat:*'). Empty: no "
        "topic keeps history.",
    )
    WS_HISTORY_MAX_MESSAGES: int = Field(
        default=1000,
        ge=1,
        le=1_000_000,
        description="Messages kept per history topic (Redis trims approximately: a few "
        "more may stay).",
    )
    WS_HISTORY_MAX_AGE_SECONDS: float = Field(
        default=300.0,
        gt=0,
        le=30 * 86_400,
        description="Seconds a history message is kept; older ones are never replayed.",
    )
    WS_HISTORY_META_TTL_SECONDS: float = Field(
        default=86_400.0,
        gt=0,
        le=365 * 86_400,
        description="Seconds a topic's offset and epoch outlive its last message (at least "
        "WS_HISTORY_MAX_AGE_SECONDS); a topic quiet for longer starts a new epoch.",
    )
    WS_HISTORY_RECOVERY_LIMIT: int = Field(
        default=1000,
        ge=1,
        le=100_000,
        description="Most messages replayed to one resubscribing client; a client that "
        "missed more is answered recovered=false and reloads its state.",
    )
    WS_HISTORY_GAP_TIMEOUT_SECONDS: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="Seconds a node holds later messages of a history topic behind a "
        "missing one before it fetches the missing one from the history (or gives it up "
        "and tells the topic's clients recovered=false).",
    )

    @field_validator("WS_ALLOWED_ORIGINS", "WS_JWT_ALGORITHMS", mode="before")
    @classmethod
    def _parse_list(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator(
        "WS_JWT_SECRET",
        "WS_JWT_PUBLIC_KEY",
        "WS_JWT_AUDIENCE",
        "WS_JWT_ISSUER",
        "WS_REDIS_URL",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        # "WS_JWT_AUDIENCE=" in a copied .env.example means "not configured".
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("WS_TRUSTED_PROXIES", mode="before")
    @classmethod
    def _parse_trusted_proxies(cls, value: Any) -> Any:
        value = _split_list(value)
        if isinstance(value, list):
            for entry in value:
                text = str(entry).strip()
                if text != "*":
                    ipaddress.ip_network(text, strict=False)  # ValueError names the entry
        return value

    @model_validator(mode="after")
    def _check_heartbeat(self) -> Self:
        if self.WS_HEARTBEAT_TIMEOUT_SECONDS <= self.WS_HEARTBEAT_SECONDS:
            raise ValueError(
                "WS_HEARTBEAT_TIMEOUT_SECONDS must be greater than WS_HEARTBEAT_SECONDS, "
                "or a client answering every ping could still be timed out"
            )
        return self
