"""WebSocketSettings: parsing, bounds, and the environment."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tempest_ws import WebSocketSettings
from tests.helpers.support import make_settings


def test_defaults() -> None:
    settings = WebSocketSettings(_env_file=None)  # type: ignore[call-arg]
    assert settings.WS_HEARTBEAT_SECONDS == 30
    assert settings.WS_HEARTBEAT_TIMEOUT_SECONDS == 60
    assert settings.WS_MAX_MESSAGE_BYTES == 65536
    assert settings.WS_MAX_CONNECTIONS_PER_USER == 5
    assert settings.WS_MAX_CONNECTIONS == 10_000
    assert settings.WS_ALLOW_QUERY_TOKEN is True
    assert settings.WS_ALLOWED_ORIGINS == []


@pytest.mark.parametrize(
    "raw",
    ['["https://a.example", "https://b.example"]', "https://a.example, https://b.example"],
)
def test_origins_from_json_or_comma_list(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("WS_ALLOWED_ORIGINS", raw)
    settings = WebSocketSettings(_env_file=None)  # type: ignore[call-arg]
    assert settings.WS_ALLOWED_ORIGINS == ["https://a.example", "https://b.example"]


def test_env_file_is_read(
    tmp_path: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = tmp_path / ".env"  # type: ignore[operator]
    env.write_text("WS_MAX_CONNECTIONS_PER_USER=2\nWS_JWT_AUDIENCE=\n")
    settings = WebSocketSettings(_env_file=env)  # type: ignore[call-arg]
    assert settings.WS_MAX_CONNECTIONS_PER_USER == 2
    assert settings.WS_JWT_AUDIENCE is None


@pytest.mark.parametrize(
    "bad",
    [
        {"WS_HEARTBEAT_SECONDS": 0},
        {"WS_MAX_MESSAGE_BYTES": 1},
        {"WS_MAX_CONNECTIONS_PER_USER": 0},
        {"WS_SEND_QUEUE_SIZE": 0},
        {"WS_HEARTBEAT_SECONDS": 10, "WS_HEARTBEAT_TIMEOUT_SECONDS": 10},
    ],
)
def test_bounds(bad: dict[str, float]) -> None:
    with pytest.raises(ValidationError):
        make_settings(**bad)


def test_mixes_into_an_application_settings_class() -> None:
    class AppSettings(WebSocketSettings):
        DATABASE_URL: str = "sqlite://"

    settings = AppSettings(_env_file=None, WS_MAX_CONNECTIONS=7)  # type: ignore[call-arg]
    assert settings.WS_MAX_CONNECTIONS == 7
    assert settings.DATABASE_URL == "sqlite://"
